"""A guide: a frozen source model whose per-word tag probabilities a new model reads as part
of its input (`adapt --labels stack`). The new model learns the target's tags afresh, at the
full rate, from its own features and from what the source says about each word; where the
source's types carry (CoNLL's person on a politics text) it learns to follow them, where
they do not it learns to ignore them. This is "stacking", the source's predictions as
features (Daumé's PRED baseline, 2007; label embeddings of the source's tags in later
cross-domain NER work), with the source's marginals in place of its hard tags.

The guide is a whole tagger, saved as a bundle of its own inside the new model's
(bundle.py); it never trains.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import Tensor

# Features kept for sentences seen before (training reads each once an epoch): at most this
# many numbers, 200 MB, the oldest dropped first
CACHE_NUMBERS = 50_000_000


class Guide:
    """Per-word tag probabilities (marginals under a CRF) of a frozen tagger, and with `states`
    its encoder's output beside them (what the source knows of each word, not only its verdict)."""

    def __init__(self, tagger: Any, states: bool = False):  # a Tagger (taggers/tagger.py imports this module)
        self.tagger = tagger
        self.states = states
        self.written: str | None = None  # the weights hash of its last saved bundle (bundle.py writes it once)
        self.tagger.network.eval()
        for parameter in self.tagger.network.parameters():
            parameter.requires_grad_(False)
        self._cache: OrderedDict[tuple[str, ...], Tensor] = OrderedDict()
        self._cached_numbers = 0
        self._lock = threading.Lock()  # a served model predicts from several threads

    @property
    def labels(self) -> list[str]:
        return self.tagger.labels

    @property
    def state_size(self) -> int:
        """The width of the encoder states given beside the probabilities (0: none)."""
        return self.tagger.encoder.output_dim if self.states else 0

    @property
    def size(self) -> int:
        return len(self.labels) + self.state_size

    def features(self, sentences: Sequence[list[str]]) -> Tensor:
        """(batch, longest sentence, size) on the CPU; zeros past each sentence's end."""
        keys = [tuple(s) for s in sentences]
        with self._lock:
            known = {key: self._cache[key] for key in keys if key in self._cache}
        missing = list(dict.fromkeys(key for key in keys if key not in known))
        if missing:
            fresh = self._marginals([list(key) for key in missing])
            known.update(fresh)
            with self._lock:
                for key, features in fresh.items():
                    if key not in self._cache:
                        self._cache[key] = features
                        self._cached_numbers += features.numel()
                while self._cached_numbers > CACHE_NUMBERS:
                    self._cached_numbers -= self._cache.popitem(last=False)[1].numel()
        out = torch.zeros(len(keys), max(len(key) for key in keys), self.size)
        for b, key in enumerate(keys):
            out[b, : len(key)] = known[key]
        return out

    def _marginals(self, sentences: list[list[str]]) -> dict[tuple[str, ...], Tensor]:
        tagger = self.tagger
        with torch.no_grad():
            batch = tagger.featurize(sentences)
            states = tagger.encoder(batch).float()  # (batch, words, output_dim)
            emissions = tagger.head(states).float()
            features = tagger.head.decode(emissions, batch.mask, True).probabilities
            if self.states:
                features = torch.cat([features, states], dim=-1)
        features = features.cpu()
        return {tuple(s): features[b, : len(s)].clone() for b, s in enumerate(sentences)}

    def to(self, device: torch.device) -> Guide:
        self.tagger.to(device)
        return self
