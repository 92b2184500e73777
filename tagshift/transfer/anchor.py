"""An L2 pull of the adapted encoder's weights towards the source's (L2-SP, Li et al. 2018).

Training the encoder at a tenth of the head's rate keeps it near the source by slowing every
step; the anchor instead lets it move at the head's rate and charges each weight for how far
it has gone from where the source left it: weight / 2 * sum ||w - w_source||^2 over the
encoder's trainable parameters (frozen word vectors cannot move and stay out). Added to
each batch's loss, so it works with any optimiser and head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tagshift.taggers.tagger import Tagger

DEFAULT_ANCHOR = 0.01


@dataclass
class Anchor:
    """The extra loss term of `fit` (its batch arguments unused): the pull towards `start`."""

    parameters: list[nn.Parameter]
    start: list[Tensor]  # each parameter's value when the anchor was made (the source's, after surgery)
    weight: float = DEFAULT_ANCHOR

    @classmethod
    def at(cls, tagger: Tagger, weight: float) -> Anchor:
        """An anchor on `tagger`'s encoder as it is now (call after the head's and the
        vocabulary's surgery, so that new rows are pulled towards where they started)."""
        parameters = [p for group in tagger.encoder.layer_groups() for p in group]
        return cls(parameters, [p.detach().clone() for p in parameters], weight)

    def __call__(self, indices: list[int], emissions: Tensor, mask: Tensor) -> Tensor:
        distance = sum(((p - s.to(p.device)) ** 2).sum() for p, s in zip(self.parameters, self.start))
        return self.weight / 2 * torch.as_tensor(distance, device=emissions.device)
