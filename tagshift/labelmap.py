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
from typing import Any, Iterable

from tagshift.errors import LabelMapError
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
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            line = re.search(r"line (\d+)", str(err))
            place = f"{path}:{line.group(1)}" if line else str(path)
            raise LabelMapError(f"{place}: invalid TOML: {err}") from None
        return cls.from_dict(data, source=str(path), text=text)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "label map", text: str = "") -> LabelMap:
        """Build and validate a map from the parsed TOML tables."""
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise LabelMapError(
                f"{source}: unknown section(s) {sorted(unknown)}; a label map has [rename], [merge] and [drop]"
            )
        rename = data.get("rename", {})
        merge = data.get("merge", {})
        drop = data.get("drop", {})
        if not all(isinstance(v, str) and v for v in rename.values()):
            raise LabelMapError(f'{source}: [rename] entries are old = "new", with a non-empty new label')
        if not all(isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in merge.values()):
            raise LabelMapError(f'{source}: [merge] entries are new = ["old", ...]')
        if set(drop) - {"labels"} or not isinstance(drop.get("labels", []), list):
            raise LabelMapError(f'{source}: [drop] holds one entry, labels = ["old", ...]')
        label_map = cls(
            rename=dict(rename),
            merge={new: tuple(olds) for new, olds in merge.items()},
            drop=tuple(drop.get("labels", [])),
            source=source,
            text=text,
        )
        seen = Counter(label_map.named_labels())
        twice = sorted(label for label, n in seen.items() if n > 1)
        if twice:
            raise LabelMapError(f"{source}: {', '.join(twice)} named by more than one rule; name each old label once")
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
                raise LabelMapError(
                    f"{place}: label '{label}' is not in {what}; its labels are: {', '.join(sorted(known)) or '(none)'}"
                )

    def _line_of(self, label: str) -> int | None:
        """The line of the TOML text where the map names `label` as an old label."""
        section = "rename" if label in self.rename else "drop" if label in self.drop else "merge"
        quoted = re.compile(rf"[\"']{re.escape(label)}[\"']")
        as_key = re.compile(rf"^\s*[\"']?{re.escape(label)}[\"']?\s*=")
        current = None
        for number, line in enumerate(self.text.splitlines(), start=1):
            code = line.split("#", 1)[0]
            header = re.match(r"^\s*\[([^\]]+)\]", code)
            if header:
                current = header.group(1).strip()
                continue
            if current != section:
                continue
            if section == "rename" and as_key.search(code):
                return number
            if section != "rename" and quoted.search(code.split("=", 1)[-1]):
                return number
        return None


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
