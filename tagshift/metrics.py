"""Entity-level scores: exact-match precision, recall and F1, per type, micro and macro.

Entities are compared sentence by sentence: an entity is correct when its sentence, first
token, last token and type all match a gold entity. Sentences are never joined into one
sequence. Two modes read entities from tags, and every result names its mode:

- `conlleval`: chunks read with conlleval's rules (as the CoNLL script and seqeval's default);
- `strict`: only entities whose tags are valid in the scheme count (as seqeval's strict mode;
  for IOB2, IOBES and BILOU the two agree on every sequence. For IOB1 seqeval reads
  `O B-X I-X` as an entity over `I-X` alone; tagshift counts no entity there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tagshift.errors import TagshiftError
from tagshift.schemes import Span, chunks, detect_scheme, get_scheme, strict_chunks

MODES = ("conlleval", "strict")


@dataclass
class PRF:
    """An addable counter of entity matches.

    >>> total = PRF(correct=3, predicted=4, support=6) + PRF(correct=1, predicted=1, support=2)
    >>> total, round(total.precision, 3), round(total.recall, 3), round(total.f1, 3)
    (PRF(correct=4, predicted=5, support=8), 0.8, 0.5, 0.615)
    """

    correct: int = 0
    predicted: int = 0
    support: int = 0  # gold entities

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.correct + other.correct, self.predicted + other.predicted, self.support + other.support)

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.support if self.support else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "predicted": self.predicted,
            "correct": self.correct,
        }


@dataclass(frozen=True)
class Averages:
    precision: float
    recall: float
    f1: float

    def to_json(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class Scores:
    """Per-type counters under one mode; micro and macro follow from them."""

    mode: str
    per_type: dict[str, PRF] = field(default_factory=dict)
    schemes: str | None = None  # strict mode: how gold and predictions were read

    @property
    def micro(self) -> PRF:
        return sum(self.per_type.values(), PRF())

    @property
    def macro(self) -> Averages:
        """Unweighted mean over every type in gold or predictions (a type only predicted scores 0)."""
        rows = list(self.per_type.values())
        if not rows:
            return Averages(0.0, 0.0, 0.0)
        n = len(rows)
        return Averages(
            sum(r.precision for r in rows) / n, sum(r.recall for r in rows) / n, sum(r.f1 for r in rows) / n
        )

    def restrict(self, types: Iterable[str]) -> Scores:
        """The scores of some types only (those that occur)."""
        return Scores(self.mode, {t: self.per_type[t] for t in types if t in self.per_type}, self.schemes)

    def to_json(self) -> dict[str, Any]:
        micro = self.micro
        return {
            "mode": self.mode,
            **({"schemes": self.schemes} if self.schemes else {}),
            "micro": {"precision": micro.precision, "recall": micro.recall, "f1": micro.f1},
            "macro": self.macro.to_json(),
            "per_type": {t: prf.to_json() for t, prf in self.per_type.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scores:
        """Scores back from `to_json` (the counts carry everything).

        >>> s = score_tags([["B-X", "O"]], [["B-X", "B-Y"]])
        >>> Scores.from_json(s.to_json()) == s
        True
        """
        per_type = {
            t: PRF(row["correct"], row["predicted"], row["support"]) for t, row in data["per_type"].items()
        }
        return cls(data["mode"], per_type, data.get("schemes"))

    def render(self) -> str:
        """A table in percent."""
        width = max([len(t) for t in self.per_type] + [5])
        head = f"{'type':<{width}}  {'prec':>6}  {'rec':>6}  {'f1':>6}  {'support':>7}  {'pred':>7}  {'correct':>7}"
        how = f"; {self.schemes}" if self.schemes else ""
        lines = [f"entity-level scores, mode: {self.mode} (exact match, per sentence{how})", head, "-" * len(head)]
        def row(label: str, p: float, r: float, f: float, counts: PRF | None) -> str:
            text = f"{label:<{width}}  {100 * p:6.2f}  {100 * r:6.2f}  {100 * f:6.2f}"
            if counts is not None:
                text += f"  {counts.support:>7}  {counts.predicted:>7}  {counts.correct:>7}"
            return text

        for label, prf in self.per_type.items():
            lines.append(row(label, prf.precision, prf.recall, prf.f1, prf))
        lines.append("-" * len(head))
        micro, macro = self.micro, self.macro
        lines.append(row("micro", micro.precision, micro.recall, micro.f1, micro))
        lines.append(row("macro", macro.precision, macro.recall, macro.f1, None))
        return "\n".join(lines)


def score_spans(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]], mode: str) -> Scores:
    """Score entity sets, one set per sentence.

    >>> gold = [[Span(0, 2, "PER")], [Span(1, 2, "LOC")]]
    >>> pred = [[Span(0, 2, "PER")], [Span(1, 2, "PER")]]
    >>> scores = score_spans(gold, pred, "conlleval")
    >>> scores.per_type["PER"], scores.per_type["LOC"], round(scores.micro.f1, 2)
    (PRF(correct=1, predicted=2, support=1), PRF(correct=0, predicted=0, support=1), 0.5)
    """
    if len(gold) != len(pred):
        raise TagshiftError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    counts: dict[str, PRF] = {}
    for gold_spans, pred_spans in zip(gold, pred):
        gold_set, pred_set = set(gold_spans), set(pred_spans)
        for span in gold_set:
            counts.setdefault(span.label, PRF()).support += 1
        for span in pred_set:
            prf = counts.setdefault(span.label, PRF())
            prf.predicted += 1
            prf.correct += span in gold_set
    return Scores(mode, dict(sorted(counts.items())))


def read_entities(tags: Sequence[str], mode: str, scheme: str | None = None) -> list[Span]:
    """Entities of one tag sequence under `mode` (`strict` needs the scheme)."""
    if mode == "conlleval":
        return chunks(tags)
    if mode == "strict":
        if scheme is None:
            raise TagshiftError("strict mode needs the tag scheme")
        return strict_chunks(tags, get_scheme(scheme))
    raise TagshiftError(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")


def score_tags(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    mode: str = "conlleval",
    scheme: str | None = None,
    pred_scheme: str | None = None,
) -> Scores:
    """Score tag sequences sentence by sentence.

    Strict mode reads gold in `scheme` (default: detected from gold) and predictions in
    `pred_scheme` (default: the same, as seqeval does).

    >>> score_tags([["B-X", "I-X"]], [["I-X", "I-X"]], "conlleval").micro.f1
    1.0
    >>> score_tags([["B-X", "I-X"]], [["I-X", "I-X"]], "strict").micro.f1
    0.0
    """
    if mode != "strict":
        return score_spans([read_entities(t, mode) for t in gold], [read_entities(t, mode) for t in pred], mode)
    scheme = scheme or detect_scheme(gold).scheme
    pred_scheme = pred_scheme or scheme
    scores = score_spans(
        [read_entities(t, mode, scheme) for t in gold], [read_entities(t, mode, pred_scheme) for t in pred], mode
    )
    return Scores(mode, scores.per_type, f"gold read as {scheme}, predictions as {pred_scheme}")


@dataclass(frozen=True)
class Comparison:
    """A system's scores beside a baseline's, per type and per group of types (old / new)."""

    system: Scores
    baseline: Scores
    groups: dict[str, list[str]]

    @property
    def types(self) -> list[str]:
        return sorted(set(self.system.per_type) | set(self.baseline.per_type))

    def group_rows(self) -> dict[str, dict[str, float]]:
        rows = {}
        for name, types in {**self.groups, "all": self.types}.items():
            system, baseline = self.system.restrict(types), self.baseline.restrict(types)
            rows[name] = {
                "baseline_micro_f1": baseline.micro.f1,
                "system_micro_f1": system.micro.f1,
                "delta_micro_f1": system.micro.f1 - baseline.micro.f1,
                "baseline_macro_f1": baseline.macro.f1,
                "system_macro_f1": system.macro.f1,
                "delta_macro_f1": system.macro.f1 - baseline.macro.f1,
            }
        return rows

    def group_of(self, label: str) -> str:
        return next((name for name, types in self.groups.items() if label in types), "")

    def to_json(self) -> dict[str, Any]:
        empty = PRF()
        return {
            "mode": self.system.mode,
            "per_type": {
                t: {
                    "group": self.group_of(t),
                    "baseline_f1": self.baseline.per_type.get(t, empty).f1,
                    "system_f1": self.system.per_type.get(t, empty).f1,
                    "delta_f1": self.system.per_type.get(t, empty).f1 - self.baseline.per_type.get(t, empty).f1,
                    "support": max(self.system.per_type.get(t, empty).support, self.baseline.per_type.get(t, empty).support),
                }
                for t in self.types
            },
            "groups": self.group_rows(),
            "system": self.system.to_json(),
            "baseline": self.baseline.to_json(),
        }

    def render(self) -> str:
        data = self.to_json()
        width = max([len(t) for t in self.types] + [11])
        head = f"{'type':<{width}}  {'group':<6}  {'baseline':>8}  {'system':>8}  {'delta':>7}  {'support':>7}"
        lines = [f"entity-level F1, mode: {self.system.mode}, system vs baseline", head, "-" * len(head)]
        for label, row in data["per_type"].items():
            lines.append(
                f"{label:<{width}}  {row['group']:<6}  {100 * row['baseline_f1']:8.2f}  "
                f"{100 * row['system_f1']:8.2f}  {100 * row['delta_f1']:+7.2f}  {row['support']:>7}"
            )
        lines.append("-" * len(head))
        for name, row in data["groups"].items():
            for avg in ("micro", "macro"):
                lines.append(
                    f"{name + ' ' + avg:<{width}}  {'':<6}  {100 * row[f'baseline_{avg}_f1']:8.2f}  "
                    f"{100 * row[f'system_{avg}_f1']:8.2f}  {100 * row[f'delta_{avg}_f1']:+7.2f}"
                )
        return "\n".join(lines)


def compare(system: Scores, baseline: Scores, groups: dict[str, list[str]] | None = None) -> Comparison:
    """Put two score sets side by side; both must use the same mode."""
    if system.mode != baseline.mode:
        raise TagshiftError(f"cannot compare {system.mode} scores with {baseline.mode} scores")
    return Comparison(system, baseline, dict(groups or {}))
