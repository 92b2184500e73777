"""The label plan: how a source model's entity types meet a target corpus's.

Before any weight moves, `make_plan` compares the two sets (with an optional label map and
`--drop`) and decides, type by type and tag by tag, what the adapted model will hold and
where each of its output rows comes from. Adapt prints the plan; surgery executes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.labelmap import LabelMap
from tagshift.schemes import check_model_scheme, chunks, get_scheme, label_set, split_tag

OPERATIONS = ("extend", "map", "replace", "stack")
# operations whose model holds the target types only, its head fresh
FRESH = ("replace", "stack")


@dataclass(frozen=True)
class LabelPlan:
    """What the adapted model holds, and where each of its labels comes from."""

    operation: str
    source_types: list[str]
    target_types: list[str]  # the types the target data annotates
    kept: list[str]  # source types kept under their own name
    renamed: dict[str, str]  # source type -> its new name
    merged: dict[str, list[str]]  # new type -> the source types merged into it
    dropped: list[str]  # source types the adapted model will not predict
    new: list[str]  # target types the source does not know
    unannotated: list[str]  # types of the adapted model that the target data never marks
    source_scheme: str
    scheme: str
    labels: list[str]  # the adapted model's labels
    origin: dict[str, list[str]] = field(default_factory=dict)  # label -> source labels its row comes from
    target_of: dict[str, str] = field(default_factory=dict)  # source type -> its adapted-model type, if kept

    @property
    def types(self) -> list[str]:
        return sorted({split_tag(label)[1] for label in self.labels} - {""})

    @property
    def old_types(self) -> list[str]:
        """Types of the adapted model that come from the source (under their target names)."""
        return sorted(set(self.types) - set(self.new))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        def names(items: list[str]) -> str:
            return ", ".join(items) or "none"

        lines = [
            f"label plan: {self.operation} ({len(self.labels)} labels in {self.scheme}"
            + (f", converted from the source's {self.source_scheme}" if self.scheme != self.source_scheme else "")
            + ")",
            f"  source types ({len(self.source_types)}): {names(self.source_types)}",
            f"  target data annotates ({len(self.target_types)}): {names(self.target_types)}",
            f"  kept: {names(self.kept)}",
        ]
        if self.renamed:
            lines.append("  renamed: " + ", ".join(f"{a} -> {b}" for a, b in sorted(self.renamed.items())))
        if self.merged:
            lines.append("  merged: " + ", ".join(f"{'+'.join(olds)} -> {new}" for new, olds in sorted(self.merged.items())))
        lines.append(f"  new: {names(self.new)}")
        relearned = [t for t in self.dropped if t in self.target_types]
        lines.append(f"  dropped: {names(self.dropped)}"
                     + (f" ({', '.join(relearned)} annotated in the target data: learned afresh)" if relearned else ""))
        if self.operation == "replace":
            lines.append("  every row of the head is fresh; the encoder is the source's")
        if self.operation == "stack":
            lines.append("  a new model, as training on the target alone builds it, that reads the source's tag "
                         "probabilities of each word as input (the source stays frozen inside it)")
        if self.unannotated:
            lines.append(
                f"  not annotated in the target data: {names(self.unannotated)} "
                "(kept from the source; --pseudo-label, --partial or --distill keep them from being forgotten)"
            )
        return "\n".join(lines)


def _counterpart(label: str, source_labels: set[str], source_scheme: str, scheme: str) -> str | None:
    """The source label whose row best starts `label` when the schemes differ: the same tag,
    else the single-token tag from a begin tag and the last tag from an inside tag (IOBES E-X
    from IOB2 I-X, S-X from B-X)."""
    if label in source_labels:
        return label
    prefix, entity_type = split_tag(label)
    ours, theirs = get_scheme(scheme), get_scheme(source_scheme)
    # Each role of our prefix, and the source's prefixes for it, best first.
    roles = {
        ours.single: (theirs.single, theirs.begin),
        ours.last: (theirs.last, theirs.inside),
        ours.begin: (theirs.begin, theirs.single),
        ours.inside: (theirs.inside,),
        ours.begin_after_same: (theirs.begin_after_same, theirs.begin),
    }
    for stand_in in roles.get(prefix, ()):
        if stand_in and f"{stand_in}-{entity_type}" in source_labels:
            return f"{stand_in}-{entity_type}"
    return None


def annotated_types(corpus: Corpus) -> set[str]:
    """The entity types a corpus's tags mark."""
    return {span.label for s in corpus.sentences for span in chunks(s.tags)}


def make_plan(
    source_labels: list[str],
    source_scheme: str,
    target_types: set[str] | list[str],
    label_map: LabelMap | None = None,
    drop: tuple[str, ...] | list[str] = (),
    operation: str | None = None,
    scheme: str | None = None,
) -> LabelPlan:
    """Compare the source's labels with the target data's types and plan the adapted model.

    `label_map` renames, merges or drops source types; `drop` drops more. `extend` (the
    default) keeps every source type the map does not drop and adds the new ones, copying
    rows (a merged type's row is the mean of its sources'); `map` starts from the same
    function but keeps the source's output layer and learns a mapping layer over its label
    scores; `replace` gives the target types only, with a fresh head; `stack` the target types
    only, in a new model that reads the source's tag probabilities.
    """
    operation = operation or "extend"
    if operation not in OPERATIONS:
        raise TagshiftError(f"--labels {operation}: choose one of {', '.join(OPERATIONS)}")
    scheme = scheme or source_scheme
    check_model_scheme(scheme)
    source_types = sorted({split_tag(label)[1] for label in source_labels} - {""})
    target_types = sorted(set(target_types))
    if label_map is not None:
        label_map.check(source_types, "the source model")
    unknown_drops = sorted(set(drop) - set(source_types))
    if unknown_drops:
        raise TagshiftError(
            f"--drop {', '.join(unknown_drops)}: not a type of the source model; its types are {', '.join(source_types)}"
        )

    def mapped(entity_type: str) -> str | None:
        if entity_type in drop:
            return None
        return label_map.target(entity_type) if label_map is not None else entity_type

    sources_of: dict[str, list[str]] = {}
    for entity_type in source_types:
        if mapped(entity_type) is not None:
            sources_of.setdefault(mapped(entity_type), []).append(entity_type)
    dropped = [t for t in source_types if mapped(t) is None]
    if operation in FRESH:
        model_types = target_types
        dropped = sorted(set(dropped) | {t for t in source_types if mapped(t) not in target_types})
    else:
        model_types = sorted(set(sources_of) | set(target_types))
    if not model_types:
        raise TagshiftError("the adapted model would have no entity types: the target data annotates none and every source type is dropped")
    renamed = {olds[0]: new for new, olds in sources_of.items() if len(olds) == 1 and olds[0] != new and new in model_types}
    merged = {new: olds for new, olds in sources_of.items() if len(olds) > 1 and new in model_types}
    labels = label_set(model_types, scheme)
    origin: dict[str, list[str]] = {}
    if operation not in FRESH:
        present = set(source_labels)
        for label in labels:
            prefix, entity_type = split_tag(label)
            if prefix == "O":
                origin[label] = ["O"]
                continue
            rows = [
                _counterpart(f"{prefix}-{old}", present, source_scheme, scheme)
                for old in sources_of.get(entity_type, [])
            ]
            if any(rows):
                origin[label] = [r for r in rows if r]
    return LabelPlan(
        operation=operation,
        source_types=source_types,
        target_types=target_types,
        kept=[] if operation in FRESH else [t for t in source_types if mapped(t) == t and t in model_types],
        renamed=renamed,
        merged=merged,
        dropped=dropped,
        new=[t for t in model_types if t not in sources_of],
        unannotated=[t for t in model_types if t not in target_types],
        source_scheme=source_scheme,
        scheme=scheme,
        labels=labels,
        origin=origin,
        target_of={t: mapped(t) for t in source_types if mapped(t) in model_types},  # type: ignore[misc]
    )
