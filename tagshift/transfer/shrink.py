"""Shrink the source's encoder towards where a new one starts, before adapting (after "shrink
and perturb", Ash and Adams 2020): a network trained on one task and warm-started on another
tends to generalise worse than one trained afresh, and moving its weights part of the way
back restores some of that. Each trainable encoder weight becomes

    keep * source + (1 - keep) * start

where `start` is the encoder's `starting_point`: a BiLSTM-CRF's layers at a new random
initialisation (drawn with the run's seed), a transformer's pretrained weights (what training
on the target alone starts from; for it this interpolates between the source's fine-tuned
encoder and the pretrained one). `keep` = 1 is plain adapt, 0 the encoder training on the
target alone starts with. Frozen weights (word vectors) and the head are left as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from tagshift.errors import TagshiftError
from tagshift.taggers.tagger import Tagger


@dataclass
class ShrinkReport:
    keep: float
    tensors: int  # encoder weights moved towards the starting point
    values: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shrink_encoder(tagger: Tagger, keep: float, seed: int = 0) -> ShrinkReport:
    """Move `tagger`'s trainable encoder weights to keep * theirs + (1 - keep) * the encoder's
    starting point's, in place."""
    if not 0 <= keep <= 1:
        raise TagshiftError(f"shrink: keep = {keep} should lie in [0, 1]: the share of the source's encoder weights kept")
    encoder = tagger.network.encoder
    try:
        start = dict(encoder.starting_point(seed).named_parameters())
    except OSError as err:  # a transformer's pretrained encoder that is not on this machine
        raise TagshiftError(f"shrink needs the encoder the source started from, which does not load here: "
                            f"{str(err).splitlines()[0]}") from None
    tensors = values = 0
    with torch.no_grad():
        for name, weight in encoder.named_parameters():
            if not weight.requires_grad:
                continue
            if name not in start or start[name].shape != weight.shape:
                raise TagshiftError(f"shrink: the source's encoder weight {name} has no counterpart of its shape "
                                    "where the encoder starts")
            weight.mul_(keep).add_(start[name].to(weight.device, weight.dtype), alpha=1 - keep)
            tensors += 1
            values += weight.numel()
    return ShrinkReport(keep, tensors, values)
