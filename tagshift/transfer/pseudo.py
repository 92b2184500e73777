"""Pseudo-labelling: the source model writes its old types into target data that leaves them O.

Target data often annotates only what is new; every old-type entity in it reads as O and
would teach the model to forget. Before training, the source tags the target sentences;
where it finds an entity of a type the target data does not annotate, over tokens the gold
leaves O, with confidence at least the threshold, that entity is written in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tagshift.corpus import Corpus
from tagshift.schemes import SCHEMES, Span, chunks, encode
from tagshift.taggers.tagger import Tagged

DEFAULT_THRESHOLD = 0.5  # on CoNLL, 0.9 left too many old entities O (tests/test_transfer_conll.py)


@dataclass
class PseudoLabelReport:
    """What pseudo-labelling wrote in, per (adapted-model) type, and what it left out."""

    threshold: float
    entities: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    below_threshold: Counter[str] = field(default_factory=Counter)
    overlapping_gold: Counter[str] = field(default_factory=Counter)
    sentences: int = 0  # sentences that gained at least one entity

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "entities": dict(sorted(self.entities.items())),
            "tokens": dict(sorted(self.tokens.items())),
            "below_threshold": dict(sorted(self.below_threshold.items())),
            "overlapping_gold": dict(sorted(self.overlapping_gold.items())),
            "sentences": self.sentences,
        }

    def render(self) -> str:
        total = sum(self.entities.values())
        lines = [f"pseudo-labels (confidence >= {self.threshold}): {total} entities, "
                 f"{sum(self.tokens.values())} tokens in {self.sentences} sentences"]
        for entity_type in sorted(set(self.entities) | set(self.below_threshold) | set(self.overlapping_gold)):
            lines.append(
                f"  {entity_type}: {self.entities[entity_type]} entities ({self.tokens[entity_type]} tokens); "
                f"left out: {self.below_threshold[entity_type]} below the threshold, "
                f"{self.overlapping_gold[entity_type]} overlapping gold entities"
            )
        return "\n".join(lines)


def pseudo_label(
    corpus: Corpus,
    predicted: list[Tagged],
    fill: dict[str, str],
    threshold: float = DEFAULT_THRESHOLD,
    scheme: str = "iob2",
) -> tuple[Corpus, PseudoLabelReport]:
    """`corpus` with the source's confident entities (`predicted`, with confidences, one per
    sentence) of the types in `fill` (source type -> the name the adapted model gives it)
    written over tokens the gold leaves O; tags come back in `scheme`."""
    report = PseudoLabelReport(threshold)
    sentences = []
    for sentence, tagged in zip(corpus.sentences, predicted):
        gold = chunks(sentence.tags)
        outside = [True] * len(sentence)
        for span in gold:
            outside[span.start : span.end] = [False] * (span.end - span.start)
        added = []
        for entity in tagged.entities:
            if entity.label not in fill:
                continue
            name = fill[entity.label]
            if not all(outside[entity.start : entity.end]):
                report.overlapping_gold[name] += 1
            elif entity.confidence is not None and entity.confidence < threshold:
                report.below_threshold[name] += 1
            else:
                added.append(Span(entity.start, entity.end, name))
                report.entities[name] += 1
                report.tokens[name] += entity.end - entity.start
        report.sentences += bool(added)
        sentences.append(sentence.with_tags(encode(gold + added, len(sentence), SCHEMES[scheme])))
    return corpus.with_sentences(sentences), report
