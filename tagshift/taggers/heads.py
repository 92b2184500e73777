"""Heads: from word features (batch, words, hidden) to tag scores, a loss and decoded tags.

Two classes with one interface, not one class with a `use_crf` flag. Both hold the output
layer as `linear` (one row per tag, in label order) so the transfer layer can copy, extend
or drop rows; the CRF head adds the `crf` whose matrices are indexed by the same labels.

Gold tags come as indices (batch, words), -100 where a word has no label, or as a boolean
(batch, words, tags) set of allowed tags for partially labelled words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from tagshift.crf import (
    CRF, Constraints, forbid, scheme_constraints, sentence_neg_log_likelihood, unconstrained, viterbi,
)
from tagshift.errors import TagshiftError
from tagshift.schemes import SCHEMES

IGNORE = -100


@dataclass(frozen=True)
class Decoded:
    """Best tag path per sentence and, per word, the probability of each tag."""

    paths: list[list[int]]
    probabilities: Tensor | None  # (batch, words, tags); None when not asked for


def _allowed(gold: Tensor, num_tags: int) -> Tensor:
    """Gold as a (batch, words, tags) boolean set; unlabelled words allow every tag."""
    if gold.dim() == 3:
        return gold
    allowed = nn.functional.one_hot(gold.clamp(min=0), num_tags).bool()
    return allowed | (gold == IGNORE).unsqueeze(2)


class LinearHead(nn.Module):
    """What both heads share: dropout, then one linear row of scores per tag."""

    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_tags)

    @property
    def num_tags(self) -> int:
        return self.linear.out_features

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.dropout(features))  # (batch, words, tags)


class SoftmaxHead(LinearHead):
    """A linear layer and a per-word softmax. Decoding still respects the scheme: it finds
    the most probable sequence among the valid ones (the scores stay the softmax's)."""

    def __init__(self, hidden: int, num_tags: int, constraints: Constraints | None = None, dropout: float = 0.0):
        super().__init__(hidden, num_tags, dropout)
        # Rebuilt from labels and scheme, so not saved: the weights stay a plain HF head.
        scores = forbid(constraints or unconstrained(num_tags))
        for name, value in zip(("start_scores", "transition_scores", "end_scores"), scores):
            self.register_buffer(name, value, persistent=False)

    def loss(self, emissions: Tensor, gold: Tensor, mask: Tensor) -> Tensor:
        """-log p(gold), per labelled word. Tags given one per word score each word alone.
        Sets of tags (partial labels) are scored as decoding reads the head: over the
        scheme-valid paths, each weighted by its words' probabilities, -log of the share
        of those paths that go through the sets (a CRF whose transitions only forbid).
        Scored word by word instead, an O word's set credits an I-PER there although no
        decoded path can use it, and on class-incremental CoNLL a transformer learnt to
        put nearly all of every O word's mass on I-PER (docs/benchmarks.md)."""
        allowed = _allowed(gold, self.num_tags) | ~mask.unsqueeze(2)  # padding allows all: no inf
        labelled = mask & ~allowed.all(dim=-1)
        if gold.dim() == 2:
            log_probs = emissions.log_softmax(dim=-1)
            word_loss = -torch.logsumexp(log_probs.masked_fill(~allowed, float("-inf")), dim=-1)
            return torch.where(labelled, word_loss, 0.0).sum() / labelled.sum().clamp(min=1)
        log_probs = emissions.float().log_softmax(dim=-1)  # the forward sums lose too much in bf16
        scores = (self.start_scores, self.transition_scores, self.end_scores)
        return sentence_neg_log_likelihood(log_probs, mask, *scores, allowed).sum() / labelled.sum().clamp(min=1)

    def decode(self, emissions: Tensor, mask: Tensor, probabilities: bool = True) -> Decoded:
        log_probs = emissions.log_softmax(dim=-1)
        paths = viterbi(log_probs, mask, self.start_scores, self.transition_scores, self.end_scores)
        return Decoded(paths, log_probs.exp() * mask.unsqueeze(2) if probabilities else None)


class CRFHead(LinearHead):
    """A linear layer giving emission scores, and a linear-chain CRF over them."""

    def __init__(self, hidden: int, num_tags: int, constraints: Constraints | None = None, dropout: float = 0.0):
        super().__init__(hidden, num_tags, dropout)
        self.crf = CRF(num_tags, constraints)

    def loss(self, emissions: Tensor, gold: Tensor, mask: Tensor) -> Tensor:
        """Mean over sentences of -log p(gold path); unlabelled words sum over their tags."""
        return self.crf.neg_log_likelihood(emissions, _allowed(gold, self.num_tags), mask)

    def decode(self, emissions: Tensor, mask: Tensor, probabilities: bool = True) -> Decoded:
        """Viterbi paths; with `probabilities`, also the marginals (a forward-backward pass,
        which costs about as much again)."""
        marginals = self.crf.marginals(emissions, mask) if probabilities else None
        return Decoded(self.crf.viterbi(emissions, mask), marginals)


class MappingHead(nn.Module):
    """A head for new labels read through the source's: the source's output layer gives its
    label scores, a linear `mapping` turns them into the target labels' scores (plus a
    `direct` path from the features, zero at first, so labels without a source counterpart
    can learn from the features too), and the target head (`inner`, CRF or softmax)
    takes it from there. Folding multiplies it out into a plain head of the `inner` kind.
    """

    def __init__(self, inner: SoftmaxHead | CRFHead, source_labels: list[str]):
        super().__init__()
        hidden = inner.linear.in_features
        self.inner = inner
        self.source_labels = list(source_labels)
        self.source = nn.Linear(hidden, len(source_labels))  # (hidden -> source labels)
        self.mapping = nn.Linear(len(source_labels), inner.num_tags)  # source labels -> target labels
        self.direct = nn.Linear(hidden, inner.num_tags, bias=False)
        nn.init.zeros_(self.direct.weight)

    @property
    def num_tags(self) -> int:
        return self.inner.num_tags

    def forward(self, features: Tensor) -> Tensor:
        features = self.inner.dropout(features)
        return self.mapping(self.source(features)) + self.direct(features)  # (batch, words, tags)

    def loss(self, emissions: Tensor, gold: Tensor, mask: Tensor) -> Tensor:
        return self.inner.loss(emissions, gold, mask)

    def decode(self, emissions: Tensor, mask: Tensor, probabilities: bool = True) -> Decoded:
        return self.inner.decode(emissions, mask, probabilities)

    def fold(self) -> SoftmaxHead | CRFHead:
        """The same function as a plain head: one linear layer (M W + D, M b + c)."""
        with torch.no_grad():
            self.inner.linear.weight.copy_(self.mapping.weight @ self.source.weight + self.direct.weight)
            self.inner.linear.bias.copy_(self.mapping.weight @ self.source.bias + self.mapping.bias)
        return self.inner


Head = SoftmaxHead | CRFHead


class HeadKind(str, Enum):
    """The heads a model can have; a bundle's config names the class (`HEAD_CLASSES`)."""

    crf = "crf"
    softmax = "softmax"


HEAD_CLASSES: dict[HeadKind, type[Head]] = {HeadKind.crf: CRFHead, HeadKind.softmax: SoftmaxHead}


def head_kind_named(name: str) -> HeadKind:
    """The head kind called `name` (crf, softmax), or an error that lists the kinds.

    >>> head_kind_named("crf")
    <HeadKind.crf: 'crf'>
    """
    try:
        return HeadKind(name)
    except ValueError:
        raise TagshiftError(f"unknown head '{name}'; choose one of {', '.join(k.value for k in HeadKind)}") from None


def head_kind_of_class(class_name: str) -> HeadKind:
    """The kind of a head saved under its class name (a bundle's config.json)."""
    for kind, head_class in HEAD_CLASSES.items():
        if head_class.__name__ == class_name:
            return kind
    known = ", ".join(c.__name__ for c in HEAD_CLASSES.values())
    raise TagshiftError(f"unknown head class '{class_name}'; this tagshift knows {known}")


def head_kind(head: Head | MappingHead) -> HeadKind:
    """The kind of a head (a mapping head's: the kind it folds into)."""
    inner = head.inner if isinstance(head, MappingHead) else head
    return next(kind for kind, head_class in HEAD_CLASSES.items() if isinstance(inner, head_class))


def make_head(kind: str, hidden: int, labels: list[str], scheme: str, dropout: float = 0.0) -> Head:
    """A head of `kind` for `labels`, constrained to `scheme`'s valid sequences."""
    head_class = HEAD_CLASSES[head_kind_named(kind)]
    return head_class(hidden, len(labels), scheme_constraints(labels, SCHEMES[scheme]), dropout)
