"""Patterns in spaCy's EntityRuler JSONL format, written from a terms list and matched over
tokens by tagshift itself (so weak labelling needs no spaCy), loadable in spaCy too:

    {"label": "Disease", "pattern": [{"ORTH": "breast"}, {"ORTH": "cancer"}], "id": "breast cancer"}

Token patterns whose tokens give one of ORTH, TEXT (the same) or LOWER, and phrase patterns
(`"pattern": "breast cancer"`, matched exactly, as the EntityRuler's phrase matcher does on
ORTH) are read; any other attribute or operator is refused with its line, since tagshift's
matcher would silently ignore it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tagshift.errors import TagshiftError, quoted, where
from tagshift.schemes import Span
from tagshift.rawtext import text_lines
from tagshift.tokenize import tokenize

ATTRIBUTES = ("ORTH", "TEXT", "LOWER")
Case = Literal["variants", "lower", "exact"]


@dataclass(frozen=True)
class Pattern:
    label: str
    tokens: tuple[str, ...]  # lower-cased where `lower`
    lower: bool
    id: str  # the term it came from (spaCy's ent_id); counts are kept per id
    line: int = 0

    @property
    def key(self) -> str:
        return self.id or " ".join(self.tokens)


def case_variants(tokens: list[str]) -> list[list[str]]:
    """The term as written, lower-cased, opening a sentence, Title-cased and upper-cased,
    without repeats.

    >>> case_variants(["breast", "cancer"])
    [['breast', 'cancer'], ['Breast', 'cancer'], ['Breast', 'Cancer'], ['BREAST', 'CANCER']]
    """
    lower = [t.lower() for t in tokens]
    variants = [tokens, lower, [lower[0][:1].upper() + lower[0][1:], *lower[1:]],
                [t[:1].upper() + t[1:] for t in tokens], [t.upper() for t in tokens]]
    unique: dict[tuple[str, ...], list[str]] = {}
    for variant in variants:
        unique.setdefault(tuple(variant), variant)
    return list(unique.values())


def term_patterns(terms: list[str], label: str, case: Case = "variants") -> list[dict]:
    """EntityRuler records for `terms`: with `variants`, one ORTH pattern per case variant
    (as written, lower, sentence-initial, Title, UPPER);
    `lower`, one LOWER pattern a term (every casing); `exact`, the term as written."""
    if not label.strip() or any(c.isspace() for c in label):
        raise TagshiftError(f"label {quoted(label)}: give a type name without spaces")
    records = []
    for term in terms:
        tokens = [t for t, _, _ in tokenize(term)]
        if case == "lower":
            records.append({"label": label, "pattern": [{"LOWER": t.lower()} for t in tokens], "id": term})
            continue
        for variant in case_variants(tokens) if case == "variants" else [tokens]:
            records.append({"label": label, "pattern": [{"ORTH": t} for t in variant], "id": term})
    return records


def read_patterns(path: Path) -> list[Pattern]:
    """The patterns of an EntityRuler JSONL file, or an error naming the line that tagshift
    cannot match as spaCy would."""
    patterns = []
    for number, line in text_lines(path):
        if line.strip():
            patterns.append(_pattern(json_record(path, number, line), path, number))
    if not patterns:
        raise TagshiftError(f"{path}: no patterns (one JSON record a line: {{\"label\": ..., \"pattern\": ...}})")
    return patterns


def json_record(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise TagshiftError(f"{where(path, number)}not JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise TagshiftError(f"{where(path, number)}expected a JSON object")
    return record


def _pattern(record: dict, path: Path, number: int) -> Pattern:
    label, pattern = record.get("label"), record.get("pattern")
    if not isinstance(label, str) or not label:
        raise TagshiftError(f"{where(path, number)}no \"label\" string")
    given_id = record.get("id")
    if isinstance(pattern, str):
        tokens = tuple(t for t, _, _ in tokenize(pattern))
        if not tokens:
            raise TagshiftError(f"{where(path, number)}an empty phrase pattern")
        return Pattern(label, tokens, False, str(given_id or pattern), number)
    if not isinstance(pattern, list) or not pattern:
        raise TagshiftError(f"{where(path, number)}\"pattern\" must be a phrase string or a list of token objects")
    keys = set()
    tokens = []
    for token in pattern:
        if not isinstance(token, dict) or len(token) != 1:
            raise TagshiftError(f"{where(path, number)}each token of a pattern must be an object with one attribute")
        (key, value), = token.items()
        if key not in ATTRIBUTES or not isinstance(value, str):
            raise TagshiftError(f"{where(path, number)}token {quoted(token)}: tagshift matches ORTH, TEXT or LOWER "
                                "with a string value only; match other attributes with spaCy's EntityRuler")
        keys.add("LOWER" if key == "LOWER" else "ORTH")
        tokens.append(value.lower() if key == "LOWER" else value)
    if len(keys) > 1:
        raise TagshiftError(f"{where(path, number)}a pattern mixing LOWER with ORTH/TEXT tokens; give one kind")
    return Pattern(label, tuple(tokens), keys == {"LOWER"}, str(given_id or " ".join(tokens)), number)


class Matcher:
    """Every pattern over a sentence's tokens; overlapping matches resolved as spaCy's
    EntityRuler does: the longest, then the earliest, then the first pattern in the file."""

    def __init__(self, patterns: list[Pattern]):
        self.patterns = patterns
        self.first: dict[tuple[bool, str], list[Pattern]] = {}
        for pattern in patterns:
            self.first.setdefault((pattern.lower, pattern.tokens[0]), []).append(pattern)

    @property
    def labels(self) -> list[str]:
        return sorted({p.label for p in self.patterns})

    def matches(self, tokens: list[str]) -> tuple[list[tuple[Span, Pattern]], list[tuple[Pattern, Pattern]]]:
        """The kept matches in order, and (kept, dropped) pairs of overlapping ones."""
        lower = [t.lower() for t in tokens]
        found: list[tuple[Span, Pattern]] = []
        for start in range(len(tokens)):
            for pattern in self.first.get((False, tokens[start]), []) + self.first.get((True, lower[start]), []):
                end = start + len(pattern.tokens)
                words = lower[start:end] if pattern.lower else tokens[start:end]
                if tuple(words) == pattern.tokens:
                    found.append((Span(start, end, pattern.label), pattern))
        found.sort(key=lambda m: (-(m[0].end - m[0].start), m[0].start, m[1].line))
        kept: list[tuple[Span, Pattern]] = []
        dropped: list[tuple[Pattern, Pattern]] = []
        for span, pattern in found:
            clash = next((k for k in kept if k[0].start < span.end and span.start < k[0].end), None)
            if clash is None:
                kept.append((span, pattern))
            elif clash[1].key != pattern.key:  # the same term in another case is no conflict
                dropped.append((clash[1], pattern))
        kept.sort(key=lambda m: m[0].start)
        return kept, dropped
