"""`tagshift labels suggest`: propose a source -> target type map from what the source
predicts on the target corpus.

Every entity the source predicts is set against the gold entities it touches: the same
span counts as an exact match, any shared token as an overlap. A source type whose
predictions mostly land on one target type is proposed to become it (a rename; several
source types on one target type, a merge). The proposal is written in the label-map TOML
that `adapt --map` and `convert --map` read, with the evidence as comments, for the user
to check and edit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tagshift.corpus import Corpus
from tagshift.labelmap import LabelMap
from tagshift.schemes import chunks
from tagshift.taggers.tagger import Tagged, Tagger

DEFAULT_MIN_SHARE = 0.3  # smallest share of a source type's predictions on one target type


@dataclass
class Evidence:
    """How the source's predicted types meet the target's gold types."""

    predicted: Counter[str] = field(default_factory=Counter)  # source type -> predicted entities
    gold: Counter[str] = field(default_factory=Counter)  # target type -> gold entities
    exact: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, target) -> same span
    overlap: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, target) -> sharing tokens
    touching: Counter[str] = field(default_factory=Counter)  # source type -> predicted entities touching any gold

    def landed(self) -> float:
        """The share of the source's predicted entities that touch a gold entity (0 if it predicts none)."""
        total = sum(self.predicted.values())
        return sum(self.touching.values()) / total if total else 0.0

    def found(self) -> float:
        """The share of the target's gold entities the source predicts with their exact span,
        whatever the type (0 if the target has none): how much of the task it already does."""
        total = sum(self.gold.values())
        return sum(self.exact.values()) / total if total else 0.0

    def matches(self, source_type: str) -> list[tuple[str, int, int]]:
        """(target type, exact, overlapping) for one source type, most matches first."""
        targets = {t for s, t in self.overlap if s == source_type}
        rows = [(t, self.exact[source_type, t], self.overlap[source_type, t]) for t in targets]
        return sorted(rows, key=lambda row: (-row[2], -row[1], row[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "predicted": dict(self.predicted),
            "gold": dict(self.gold),
            "matches": {s: [{"target": t, "exact": e, "overlapping": o} for t, e, o in self.matches(s)]
                        for s in sorted(self.predicted)},
        }


@dataclass
class Suggestion:
    """A proposed map (source type -> target type) and the evidence behind it."""

    mapping: dict[str, str]
    evidence: Evidence
    min_share: float

    def to_json(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "min_share": self.min_share, "evidence": self.evidence.to_json()}

    def label_map(self) -> LabelMap:
        """The proposal as renames and merges (what `to_toml` writes, without the evidence)."""
        by_target: dict[str, list[str]] = {}
        for old, new in sorted(self.mapping.items()):
            by_target.setdefault(new, []).append(old)
        return LabelMap(rename={olds[0]: new for new, olds in by_target.items() if len(olds) == 1 and olds[0] != new},
                        merge={new: tuple(olds) for new, olds in by_target.items() if len(olds) > 1},
                        source="the suggested map")

    def _why(self, source_type: str) -> str:
        rows = self.evidence.matches(source_type)
        total = self.evidence.predicted[source_type]
        parts = [f"{t}: {o} overlapping ({e} exact)" for t, e, o in rows[:3]]
        return f"{source_type}: {total} predicted; " + ("; ".join(parts) or "none on a gold entity")

    def to_toml(self, header: str = "") -> str:
        """The proposal as a label map, each rule with its evidence in a comment."""
        lines = [f"# {line}" for line in header.splitlines()] if header else []
        lines += [
            "# Proposed by `tagshift labels suggest`: the source model's predictions on the target corpus,",
            "# set against its gold entities (counts: predicted entities sharing tokens with a gold",
            f"# entity of that type; exact = the same span). A rule needs {self.min_share:.0%} of a type's predictions.",
            "# Check it, edit it, and pass it to `tagshift adapt --map`.",
        ]
        as_map = self.label_map()
        renames, merges = as_map.rename, as_map.merge
        if renames:
            lines += ["", "[rename]"]
            for old, new in sorted(renames.items()):
                lines += [f"# {self._why(old)}", f"{_key(old)} = {_string(new)}"]
        if merges:
            lines += ["", "[merge]"]
            for new, olds in sorted(merges.items()):
                lines += [f"# {self._why(old)}" for old in olds]
                lines.append(f"{_key(new)} = [{', '.join(_string(o) for o in olds)}]")
        unmatched = sorted(set(self.evidence.predicted) - set(self.mapping))
        kept = sorted(s for s, t in self.mapping.items() if s == t)
        if kept:
            lines += ["", f"# kept as they are (already the target's names): {', '.join(kept)}"]
        if unmatched:
            lines += ["", "# no target type takes enough of these (left out of the map: the adapted model keeps them;",
                      "# add them to [drop] to drop them):"]
            lines += [f"# {self._why(s)}" for s in unmatched]
        return "\n".join(lines) + "\n"


def _string(name: str) -> str:
    """A TOML basic string (JSON's escaping is TOML's)."""
    return json.dumps(name, ensure_ascii=False)


def _key(name: str) -> str:
    """A TOML key: bare when TOML allows it (ASCII letters, digits, - and _), quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _string(name)


def gather_evidence(source: Tagger, corpus: Corpus, batch_size: int = 64, progress: bool = False,
                    predicted: list[Tagged] | None = None) -> Evidence:
    """`predicted`: the source's predictions on `corpus` where the caller has them already."""
    evidence = Evidence()
    if predicted is None:
        predicted = source.predict([s.tokens for s in corpus.sentences], batch_size, progress, confidence=False)
    for sentence, tagged in zip(corpus.sentences, predicted):
        gold = chunks(sentence.tags)
        evidence.gold.update(span.label for span in gold)
        for entity in tagged.entities:
            evidence.predicted[entity.label] += 1
            touched = {g.label for g in gold if g.start < entity.end and entity.start < g.end}
            evidence.touching[entity.label] += bool(touched)
            for target_type in touched:
                evidence.overlap[entity.label, target_type] += 1
            for g in gold:
                if (g.start, g.end) == (entity.start, entity.end):
                    evidence.exact[entity.label, g.label] += 1
    return evidence


def suggest_map(
    source: Tagger, corpus: Corpus, min_share: float = DEFAULT_MIN_SHARE, batch_size: int = 64, progress: bool = False,
    predicted: list[Tagged] | None = None,
) -> Suggestion:
    """For each source type, the target type most of its predictions overlap, if that is at
    least `min_share` of them. A source type whose name the target also uses keeps it: the
    same name is taken to mean the same type, whatever the source's errors suggest."""
    evidence = gather_evidence(source, corpus, batch_size, progress, predicted)
    mapping = {}
    for source_type, total in evidence.predicted.items():
        rows = evidence.matches(source_type)
        if source_type in evidence.gold:
            mapping[source_type] = source_type
        elif rows and rows[0][2] >= min_share * total:
            mapping[source_type] = rows[0][0]
    return Suggestion(mapping, evidence, min_share)


def related_types(evidence: Evidence, new_types: list[str], source_types: list[str],
                  min_share: float = DEFAULT_MIN_SHARE) -> dict[str, str]:
    """For each of `new_types`, the one of `source_types` that predicts the most of its gold
    entities with their exact span, if that is at least `min_share` of them: where the
    source already finds the new type's entities, under another name (`adapt --init
    related` starts the new type's rows below that type's)."""
    related = {}
    for new_type in new_types:
        gold = evidence.gold[new_type]
        found = sorted(((evidence.exact[s, new_type], s) for s in source_types), key=lambda row: (-row[0], row[1]))
        if gold and found and found[0][0] >= min_share * gold:
            related[new_type] = found[0][1]
    return related
