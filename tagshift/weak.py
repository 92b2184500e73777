"""Weak labels: raw text pre-labelled by patterns and, optionally, a source model's entities
of the other types, written as a silver corpus (JSONL of text and character spans, which
train and adapt read). Where a model's entity overlaps a pattern match the pattern wins (it
is what the person asked for); overlapping pattern matches keep the longest. Every decision
is counted: per pattern, per type, the conflicts, and the patterns that matched nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tagshift.patterns import Matcher
from tagshift.rawtext import RawReport, read_raw

BATCH = 256  # sentences the model tags at once (the reading stays streamed)


@dataclass
class WeakReport:
    raw: RawReport = field(default_factory=RawReport)
    sentences: int = 0
    labelled: int = 0  # sentences with at least one span
    per_pattern: Counter[str] = field(default_factory=Counter)  # "LABEL: term"
    per_type: Counter[str] = field(default_factory=Counter)
    from_model: Counter[str] = field(default_factory=Counter)
    model_same_type: Counter[str] = field(default_factory=Counter)  # the model's entities of the patterns' types, left out
    overlaps: Counter[str] = field(default_factory=Counter)  # "kept > dropped" pattern matches
    conflicts: Counter[str] = field(default_factory=Counter)  # "pattern LABEL > model LABEL"
    uncertain: int = 0
    unmatched: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw.to_json(), "sentences": self.sentences, "labelled": self.labelled,
                "per_pattern": dict(self.per_pattern.most_common()), "per_type": dict(self.per_type.most_common()),
                "from_model": dict(self.from_model.most_common()), "model_same_type": dict(self.model_same_type),
                "overlaps_resolved": dict(self.overlaps.most_common()),
                "conflicts_resolved": dict(self.conflicts.most_common()), "uncertain": self.uncertain,
                "unmatched_patterns": self.unmatched}

    def render(self) -> str:
        lines = [self.raw.render(),
                 f"silver: {self.labelled} of {self.sentences} sentences with entities; per type: "
                 + (", ".join(f"{t} {n}" for t, n in self.per_type.most_common()) or "none")]
        if self.from_model:
            lines.append("from the model: " + ", ".join(f"{t} {n}" for t, n in self.from_model.most_common()))
        if self.model_same_type:
            lines.append("the model's entities of the patterns' types, left out: "
                         + ", ".join(f"{t} {n}" for t, n in self.model_same_type.most_common()))
        if self.per_pattern:
            lines.append("top patterns: " + ", ".join(f"{p} {n}" for p, n in self.per_pattern.most_common(10)))
        if self.overlaps:
            lines.append(f"overlapping matches resolved (longest kept): {sum(self.overlaps.values())}, e.g. "
                         + ", ".join(f"{k} {n}" for k, n in self.overlaps.most_common(3)))
        if self.conflicts:
            lines.append(f"conflicts with the model resolved (pattern kept): {sum(self.conflicts.values())}: "
                         + ", ".join(f"{k} {n}" for k, n in self.conflicts.most_common(5)))
        if self.uncertain:
            lines.append(f"spans marked uncertain: {self.uncertain}")
        if self.unmatched:
            lines.append(f"warning: {len(self.unmatched)} patterns matched nothing: " + ", ".join(self.unmatched[:10])
                         + (" ..." if len(self.unmatched) > 10 else ""))
        return "\n".join(lines)


def weak_label(
    raw: Path,
    matcher: Matcher,
    model: Any = None,
    report: WeakReport | None = None,
    uncertain_below: float | None = None,
    uncertain_patterns: bool = False,
) -> Iterator[dict[str, Any]]:
    """A silver record per sentence of `raw`: its text and spans, each span saying where it
    came from; with `uncertain_below`, the model's entities less confident than that (or
    without a confidence) are marked uncertain, with `uncertain_patterns` every match is."""
    report = report if report is not None else WeakReport()
    sentences = read_raw(raw, report.raw)
    while chunk := list(islice(sentences, BATCH)):
        predicted = model.predict([s.tokens for _, s in chunk], 64) if model is not None else [None] * len(chunk)
        for (location, sentence), tagged in zip(chunk, predicted):
            report.sentences += 1
            spans = _spans(sentence, matcher, tagged, report, uncertain_below, uncertain_patterns)
            report.labelled += bool(spans)
            yield {"text": sentence.text, "spans": spans, "meta": {"source": str(location)}}
    seen = {key.split(": ", 1)[1] for key in report.per_pattern}
    report.unmatched = sorted({p.key for p in matcher.patterns} - seen)


def _spans(sentence: Any, matcher: Matcher, tagged: Any, report: WeakReport, uncertain_below: float | None,
           uncertain_patterns: bool) -> list[dict[str, Any]]:
    kept, dropped = matcher.matches(sentence.tokens)
    for winner, loser in dropped:
        report.overlaps[f"{winner.key} > {loser.key}"] += 1
    chosen: list[tuple[int, int, dict[str, Any]]] = []
    for span, pattern in kept:
        report.per_pattern[f"{pattern.label}: {pattern.key}"] += 1
        report.per_type[span.label] += 1
        chosen.append((span.start, span.end, {"label": span.label, "source": "pattern", "pattern": pattern.key,
                                              **({"uncertain": True} if uncertain_patterns else {})}))
    for entity in tagged.entities if tagged is not None else []:
        if entity.label in matcher.labels:
            report.model_same_type[entity.label] += 1
            continue
        clash = next((c for c in chosen if c[0] < entity.end and entity.start < c[1]), None)
        if clash is not None:
            report.conflicts[f"pattern {clash[2]['label']} > model {entity.label}"] += 1
            continue
        fields: dict[str, Any] = {"label": entity.label, "source": "model"}
        if entity.confidence is not None:
            fields["confidence"] = round(entity.confidence, 4)
        if uncertain_below is not None and (entity.confidence is None or entity.confidence < uncertain_below):
            fields["uncertain"] = True
        chosen.append((entity.start, entity.end, fields))
        report.from_model[entity.label] += 1
        report.per_type[entity.label] += 1
    report.uncertain += sum(bool(fields.get("uncertain")) for _, _, fields in chosen)
    offsets = sentence.offsets
    return [{"start": offsets[start][0], "end": offsets[end - 1][1], **fields}
            for start, end, fields in sorted(chosen, key=lambda c: c[0])]
