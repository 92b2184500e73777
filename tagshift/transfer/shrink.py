"""Shrink the source's encoder towards a fresh one before adapting (shrink and perturb, Ash
and Adams 2020): a network trained on one task and then warm-started on another tends to
generalise worse than one trained afresh, and moving its weights part of the way back to a
new initialisation restores some of that. Here each trainable encoder weight becomes

    keep * source + (1 - keep) * fresh

where `fresh` is the weight a new model of the same shape would start from (the layers' own
initialisation, drawn with the run's seed). `keep` = 1 is plain adapt, 0 a fresh encoder as
training on the target alone builds. Frozen weights (word vectors loaded as they are) and the
head are left as they are: the vectors are the same in both, the head is the surgery's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch

from tagshift.errors import TagshiftError
from tagshift.taggers.tagger import Tagger


@dataclass
class ShrinkReport:
    keep: float
    tensors: int  # encoder weights moved towards a fresh initialisation
    values: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        return (f"encoder shrunk towards a fresh initialisation: {self.tensors} weights ({self.values:,} values) "
                f"at {self.keep:g} of the source's")


def shrink_encoder(tagger: Tagger, keep: float, seed: int = 0) -> ShrinkReport:
    """Move `tagger`'s trainable encoder weights to keep * theirs + (1 - keep) * a fresh
    initialisation's, in place."""
    if not 0 <= keep <= 1:
        raise TagshiftError(f"--shrink {keep} should lie in [0, 1]: the share of the source's encoder weights kept")
    encoder = tagger.network.encoder
    if not hasattr(encoder, "initialised_modules"):
        raise TagshiftError(f"--shrink: a {tagger.backend.name} encoder has no random initialisation to shrink "
                            "towards (it starts from pretrained weights); leave --shrink out")
    fresh = copy.deepcopy(encoder)
    torch.manual_seed(seed)
    for module in fresh.initialised_modules():
        module.reset_parameters()
    moved = {id(p) for m in fresh.initialised_modules() for p in m.parameters(recurse=False) if p.requires_grad}
    tensors = values = 0
    with torch.no_grad():
        for weight, new in zip(encoder.parameters(), fresh.parameters()):
            if id(new) not in moved:
                continue
            weight.mul_(keep).add_(new.to(weight.dtype), alpha=1 - keep)
            tensors += 1
            values += weight.numel()
    return ShrinkReport(keep, tensors, values)
