"""Declarative label maps (TOML): rename, merge (many to one) and drop (to O) entity types.

```toml
[rename]            # old = "new"
person = "PER"
[merge]             # new = [old, ...]
LOC = ["GPE", "LOC", "FAC"]
[drop]              # these types become O
labels = ["MISC"]
```

A map works on entity types, not tags, so it is independent of the tag scheme.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NoReturn

from tagshift.errors import LabelMapError, quoted
from tagshift.schemes import Span

_SECTIONS = ("rename", "merge", "drop")


@dataclass(frozen=True)
class LabelMap:
    """Which entity types become which; types the map does not name stay as they are."""

    rename: dict[str, str] = field(default_factory=dict)
    merge: dict[str, tuple[str, ...]] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    source: str = "label map"  # where it came from, for messages
    text: str = ""  # its TOML text, to point at lines in messages

    @classmethod
    def from_toml(cls, path: str | Path) -> LabelMap:
        path = Path(path)
        if not path.is_file():
            raise LabelMapError(f"{path}: no such label map file")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")  # a BOM, as some Windows editors write it, is not a TOML error
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise LabelMapError(
                f"{path}:{line}: byte 0x{raw[err.start]:02x} is not valid UTF-8; "
                "TOML files are UTF-8, re-encode the map"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            line = re.search(r"line (\d+)", str(err))
            place = f"{path}:{line.group(1)}" if line else str(path)
            raise LabelMapError(f"{place}: invalid TOML: {err}") from None
        return cls.from_dict(data, source=str(path), text=text)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "label map", text: str = "") -> LabelMap:
        """Build and validate a map from the parsed TOML tables; `text`, the TOML itself, lets
        messages name the line of a bad entry."""

        def fail(table: str | None, key: str, problem: str) -> NoReturn:
            line = _key_line(text, table, key) if table is None else _entry_line(text, table, key)
            raise LabelMapError(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")

        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            known = "a label map has [rename], [merge] and [drop]"
            fail(None, unknown[0], f"unknown section(s) {quoted(unknown)}; {known}")
        for section in _SECTIONS:
            if not isinstance(data.get(section, {}), dict):
                found = _found(data[section])
                fail(None, section, f"{section} is {found}; expected a table, [{section}] on its own line")
        rename, merge, drop = (data.get(section, {}) for section in _SECTIONS)
        for old, new in rename.items():
            if not isinstance(new, str):
                fail("rename", old, f'[rename] {quoted(old)} is {_found(new)}; [rename] entries are old = "new"')
            if _not_a_type(new):
                fail("rename", old, _not_a_type_message(new))
        for new, olds in merge.items():
            if _not_a_type(new):
                fail("merge", new, _not_a_type_message(new))
            if not isinstance(olds, list) or not olds or not all(isinstance(x, str) for x in olds):
                fail("merge", new, f'[merge] {quoted(new)} is {_found(olds)}; [merge] entries are new = ["old", ...]')
        for key, labels in drop.items():
            if key != "labels":
                fail("drop", key, f'[drop] holds one entry, labels = ["old", ...]; found {quoted(key)}')
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                fail("drop", key, f'[drop] labels is {_found(labels)}; expected labels = ["old", ...]')
        label_map = cls(
            rename=dict(rename),
            merge={new: tuple(olds) for new, olds in merge.items()},
            drop=tuple(drop.get("labels", [])),
            source=source,
            text=text,
        )
        for label in label_map.named_labels():
            if _not_a_type(label):  # it could never match, and would break the messages that list labels
                line = label_map._line_of(label)
                place = f"{source}:{line}" if line else source
                raise LabelMapError(f"{place}: {_not_a_type_message(label)}")
        seen = Counter(label_map.named_labels())
        twice = sorted(label for label, n in seen.items() if n > 1)
        if twice:
            more = f" and {len(twice) - _LISTED} more" if len(twice) > _LISTED else ""
            raise LabelMapError(
                f"{source}: {', '.join(twice[:_LISTED])}{more} named by more than one rule; name each old label once"
            )
        return label_map

    def named_labels(self) -> list[str]:
        """Every old label the map names, once per rule that names it."""
        return [*self.rename, *(old for olds in self.merge.values() for old in olds), *self.drop]

    def target(self, label: str) -> str | None:
        """What `label` becomes: a new label, itself, or None when dropped."""
        if label in self.drop:
            return None
        if label in self.rename:
            return self.rename[label]
        for new, olds in self.merge.items():
            if label in olds:
                return new
        return label

    def rule(self, label: str) -> str | None:
        """The rule that touches `label`, as shown in reports."""
        if label in self.drop:
            return f"drop {label}"
        if label in self.rename:
            return f"rename {label} -> {self.rename[label]}"
        for new, olds in self.merge.items():
            if label in olds:
                return f"merge {label} -> {new}"
        return None

    def check(self, labels: Iterable[str], what: str = "the corpus") -> None:
        """Raise if the map names a label that `labels` does not hold, listing the ones it does."""
        known = set(labels)
        for label in self.named_labels():
            if label not in known:
                line = self._line_of(label)
                place = f"{self.source}:{line}" if line else self.source
                listed = ", ".join(sorted(known)[:_LISTED]) or "(none)"
                more = f" and {len(known) - _LISTED} more" if len(known) > _LISTED else ""
                raise LabelMapError(f"{place}: label {quoted(label)} is not in {what}; its labels are: {listed}{more}")

    def _line_of(self, label: str) -> int | None:
        """The line of the TOML text where the map names `label` as an old label."""
        if label in self.rename:
            return _key_line(self.text, "rename", label)
        section = "drop" if label in self.drop else "merge"
        as_string = re.compile(rf"[\"']{re.escape(label)}[\"']")
        current = None
        for number, line in enumerate(self.text.split("\n"), start=1):
            code = line.split("#", 1)[0]
            header = _HEADER.match(code)
            if header:
                current = _key_parts(header.group(1))
                continue
            if current == (section,) and as_string.search(code.split("=", 1)[-1]):
                return number
        return None


_MAX_LABEL = 200  # longer is a pasted line, not an entity type; it would flood every message
_LISTED = 40  # labels listed in a message
_HEADER = re.compile(r"^\s*\[\[?([^\]]*)\]")
_TOML_TYPES = (
    (bool, "a boolean"),  # before int: a bool is an int to Python
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def _toml_type(value: Any) -> str:
    """What a TOML value is, as the TOML spec names it."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)), "a date or time")


def _found(value: Any) -> str:
    """What a map entry holds instead of what it should: `an integer (5)`, `an empty array`,
    `an array holding a table ({'a': 1})`."""
    if value == []:
        return "an empty array"
    if isinstance(value, list):
        bad = next((x for x in value if not isinstance(x, str)), None)
        if bad is not None:
            return f"an array holding {_found(bad)}"
    return f"{_toml_type(value)} ({quoted(value)})"


def _not_a_type(label: str) -> bool:
    """Whether `label` cannot be an entity type: corpora split types on whitespace."""
    return not label or len(label) > _MAX_LABEL or any(ch.isspace() for ch in label)


def _not_a_type_message(label: str) -> str:
    return f"{quoted(label)} is not an entity type: types hold no whitespace and have 1 to {_MAX_LABEL} characters"


def _key_parts(key: str) -> tuple[str, ...]:
    """`a."b.c"` as ('a', 'b.c'): a dotted TOML key as tomllib reads it (quotes, escapes),
    () when it is none."""
    try:
        value: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return ()
    parts = []
    while isinstance(value, dict):
        name, value = next(iter(value.items()))
        parts.append(name)
    return tuple(parts)


def _key_line(text: str, table: str | None, key: str) -> int | None:
    """The line of `text` where `key` is set in `[table]` (None: at the top, before any table),
    or where a `[table.key]` header opens it. tomllib keeps no positions, so the text is scanned."""
    current: tuple[str, ...] = ()
    here = (table,) if table is not None else ()
    for number, line in enumerate(text.split("\n"), start=1):  # TOML counts lines by \n alone
        header = _HEADER.match(line)
        if header:
            current = _key_parts(header.group(1))
            if current[: len(here) + 1] == (*here, key):
                return number
            continue
        assignment = line.split("=", 1)
        if current == here and len(assignment) == 2 and _key_parts(assignment[0])[:1] == (key,):
            return number
    return None


def _entry_line(text: str, table: str, key: str) -> int | None:
    """The line of entry `key` of `[table]`, else of the table itself (an inline table)."""
    return _key_line(text, table, key) or _key_line(text, None, table)


@dataclass
class MapReport:
    """How many entities each rule of a map touched."""

    touched: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        return [f"{rule}: {count} entities" for rule, count in sorted(self.touched.items())]


def map_spans(spans: Iterable[Span], label_map: LabelMap, report: MapReport | None = None) -> list[Span]:
    """Entities with their types mapped; dropped ones removed. Counts go to `report`."""
    mapped = []
    for span in spans:
        rule = label_map.rule(span.label)
        if rule is not None and report is not None:
            report.touched[rule] += 1
        new = label_map.target(span.label)
        if new is not None:
            mapped.append(Span(span.start, span.end, new))
    return mapped
