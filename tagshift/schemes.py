"""Tag schemes: parsing tags, reading entities from tags, writing tags from entities.

Schemes are declared as data (`SCHEMES`): which prefix marks a one-token entity and which
mark the first, middle and last token of a longer one. Everything else is derived from that
table. Entities are read in one of two ways:

- `chunks` reads tags with conlleval's rules, whatever the scheme. It never fails: an
  `I-X` after `O` starts an entity, exactly as the CoNLL script (and seqeval's default mode)
  read it. This is also how invalid sequences are repaired.
- `strict_chunks` keeps only the entities whose tags are valid in one named scheme, as
  seqeval's strict mode does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

from tagshift.errors import SchemeError


class Span(NamedTuple):
    """An entity over tokens `start` (inclusive) to `end` (exclusive)."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Scheme:
    """Prefixes of one tagging scheme. `flat` labels have no prefix (`person`, not `I-person`)."""

    name: str
    single: str  # prefix of a one-token entity
    begin: str  # first token of a longer entity
    inside: str  # tokens between the first and the last
    last: str  # last token of a longer entity
    begin_after_same: str | None = None  # IOB1: `B` only where the previous entity has the same type

    @property
    def prefixes(self) -> frozenset[str]:
        found = {self.single, self.begin, self.inside, self.last}
        if self.begin_after_same:
            found.add(self.begin_after_same)
        return frozenset(found)

    @property
    def separates_adjacent(self) -> bool:
        """False where two adjacent entities of one type read as one (IO, flat)."""
        return self.begin != self.inside or self.begin_after_same is not None


SCHEMES: dict[str, Scheme] = {
    "iob1": Scheme("iob1", single="I", begin="I", inside="I", last="I", begin_after_same="B"),
    "iob2": Scheme("iob2", single="B", begin="B", inside="I", last="I"),
    "iobes": Scheme("iobes", single="S", begin="B", inside="I", last="E"),
    "bilou": Scheme("bilou", single="U", begin="B", inside="I", last="L"),
    "io": Scheme("io", single="I", begin="I", inside="I", last="I"),
    "flat": Scheme("flat", single="", begin="", inside="", last=""),
}

KNOWN_PREFIXES = frozenset("BIESLU")
# conlleval knows B, I, E, S; BILOU's L and U are its E and S; a flat label is an I.
_CONLLEVAL_PREFIX = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S", "": "I", "O": "O"}
_PREFIXED = re.compile(r"^([A-Za-z])-(.*)$")


def get_scheme(name: str) -> Scheme:
    """The scheme called `name` (case-insensitive), or an error listing the known ones."""
    try:
        return SCHEMES[name.lower()]
    except KeyError:
        raise SchemeError(f"unknown tag scheme '{name}'; choose one of {', '.join(SCHEMES)}") from None


@lru_cache(maxsize=65536)
def split_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (prefix, type).

    >>> split_tag("B-PER"), split_tag("O"), split_tag("person"), split_tag("I-creative-work")
    (('B', 'PER'), ('O', ''), ('', 'person'), ('I', 'creative-work'))
    """
    if tag == "O":
        return "O", ""
    if not tag or any(ch.isspace() for ch in tag):
        raise SchemeError(f"'{tag}' is not a tag: tags are 'O', a prefixed type like 'B-PER', or a flat label")
    match = _PREFIXED.match(tag)
    if match is None:
        return "", tag
    prefix, entity_type = match.groups()
    if prefix not in KNOWN_PREFIXES:
        raise SchemeError(
            f"tag '{tag}' has unknown prefix '{prefix}'; known prefixes are B, I, E, S, L, U "
            "(or no prefix for flat labels)"
        )
    if not entity_type:
        raise SchemeError(f"tag '{tag}' has a prefix but no entity type")
    return prefix, entity_type


def tag_type(tag: str) -> str:
    """The entity type of a tag, '' for O."""
    return split_tag(tag)[1]


def _ends(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """conlleval's endOfChunk: does an entity end before this token?"""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix != "O" and prev_type != entity_type


def _starts(prev_prefix: str, prefix: str, prev_type: str, entity_type: str) -> bool:
    """conlleval's startOfChunk: does an entity start at this token?"""
    if prefix in ("B", "S"):
        return True
    if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix != "O" and prev_type != entity_type


def chunks(tags: Sequence[str]) -> list[Span]:
    """Entities read with conlleval's rules, for tags of any scheme.

    >>> chunks(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC"])
    [Span(start=0, end=2, label='PER'), Span(start=3, end=5, label='LOC'), Span(start=5, end=6, label='LOC')]
    """
    spans: list[Span] = []
    prev_prefix, prev_type = "O", ""
    start: int | None = None
    for i, tag in enumerate(tags):
        raw_prefix, entity_type = split_tag(tag)
        prefix = _CONLLEVAL_PREFIX[raw_prefix]
        if start is not None and _ends(prev_prefix, prefix, prev_type, entity_type):
            spans.append(Span(start, i, prev_type))
            start = None
        if _starts(prev_prefix, prefix, prev_type, entity_type):
            start = i
        prev_prefix, prev_type = prefix, entity_type
    if start is not None:
        spans.append(Span(start, len(tags), prev_type))
    return spans


def _is_valid(tags: Sequence[str], span: Span, scheme: Scheme) -> bool:
    """Whether the tags of one conlleval chunk spell a well-formed entity in `scheme`."""
    prefixes = [split_tag(tags[i])[0] for i in range(span.start, span.end)]
    first = prefixes[0]
    if scheme.begin_after_same and first == scheme.begin_after_same:
        previous = tags[span.start - 1] if span.start > 0 else "O"
        first_ok = previous != "O" and tag_type(previous) == span.label
    elif len(prefixes) == 1:
        first_ok = first == scheme.single
    else:
        first_ok = first == scheme.begin
    if len(prefixes) == 1:
        return first_ok
    middle_ok = all(p == scheme.inside for p in prefixes[1:-1])
    return first_ok and middle_ok and prefixes[-1] == scheme.last


def check_prefixes(tags: Sequence[str], scheme: Scheme) -> None:
    """Raise if a tag uses a prefix that `scheme` does not have (`E-X` in IOB2)."""
    allowed = scheme.prefixes
    for tag in tags:
        prefix = split_tag(tag)[0]
        if prefix != "O" and prefix not in allowed:
            shown = "no prefix" if not allowed - {""} else ", ".join(sorted(allowed))
            raise SchemeError(
                f"tag '{tag}' does not belong to the {scheme.name} scheme ({shown}); "
                f"convert with 'tagshift convert --to {scheme.name}'"
            )


def strict_chunks(tags: Sequence[str], scheme: Scheme) -> list[Span]:
    """Only the entities whose tags are valid in `scheme` (seqeval's strict mode).

    >>> strict_chunks(["I-PER", "I-PER", "O", "B-LOC"], SCHEMES["iob2"])
    [Span(start=3, end=4, label='LOC')]
    """
    check_prefixes(tags, scheme)
    return [span for span in chunks(tags) if _is_valid(tags, span, scheme)]


def invalid_chunks(tags: Sequence[str], scheme: Scheme) -> list[Span]:
    """Entities conlleval reads but `scheme` does not allow: the ones a repair rewrites."""
    allowed = scheme.prefixes
    return [
        span
        for span in chunks(tags)
        if any(split_tag(tags[i])[0] not in allowed for i in range(span.start, span.end))
        or not _is_valid(tags, span, scheme)
    ]


def encode(spans: Iterable[Span], length: int, scheme: Scheme) -> list[str]:
    """Tags for non-overlapping `spans` over `length` tokens.

    >>> encode([Span(0, 2, "PER"), Span(2, 3, "PER")], 3, SCHEMES["iobes"])
    ['B-PER', 'E-PER', 'S-PER']
    """
    tags = ["O"] * length
    previous: Span | None = None
    for span in sorted(spans):
        if span.start < 0 or span.end > length or span.start >= span.end:
            raise SchemeError(f"entity {span} does not fit a sentence of {length} tokens")
        if previous is not None and span.start < previous.end:
            raise SchemeError(f"entities {previous} and {span} overlap")

        def tag(prefix: str) -> str:
            return f"{prefix}-{span.label}" if prefix else span.label

        if span.end - span.start == 1:
            tags[span.start] = tag(scheme.single)
        else:
            tags[span.start] = tag(scheme.begin)
            for i in range(span.start + 1, span.end - 1):
                tags[i] = tag(scheme.inside)
            tags[span.end - 1] = tag(scheme.last)
        adjacent_same = previous is not None and previous.end == span.start and previous.label == span.label
        if adjacent_same and scheme.begin_after_same:
            tags[span.start] = tag(scheme.begin_after_same)
        previous = span
    return tags


def convert_tags(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """Re-tag a sequence in `scheme`; invalid input is read (and so repaired) as conlleval reads it.

    >>> convert_tags(["O", "I-LOC", "I-LOC", "B-LOC"], SCHEMES["iob2"])
    ['O', 'B-LOC', 'I-LOC', 'B-LOC']
    """
    return encode(chunks(tags), len(tags), scheme)


# The schemes a model can predict in: iob1 and flat cannot mark where two entities of one
# type touch, so a model trained on them could not say it either.
MODEL_SCHEMES = ("iob2", "iobes", "bilou", "io")


def label_set(types: Iterable[str], scheme: str) -> list[str]:
    """All tags of `types` in `scheme`: O first, then each type's prefixes in B, I, E, S order.

    >>> label_set({"PER", "LOC"}, "iobes")
    ['O', 'B-LOC', 'I-LOC', 'E-LOC', 'S-LOC', 'B-PER', 'I-PER', 'E-PER', 'S-PER']
    """
    s = get_scheme(scheme)
    prefixes = [p for p in dict.fromkeys((s.begin, s.inside, s.last, s.single, s.begin_after_same)) if p]
    return ["O"] + [f"{prefix}-{t}" for t in sorted(set(types)) for prefix in prefixes]


def check_model_scheme(scheme: str) -> None:
    """Refuse a scheme a model cannot tag in, naming the ones it can."""
    if scheme not in MODEL_SCHEMES:
        raise SchemeError(
            f"a model cannot tag in '{scheme}'; choose one of {', '.join(MODEL_SCHEMES)} "
            "(iob1 and flat cannot mark where two entities of one type touch)"
        )


def scheme_of_labels(labels: Iterable[str]) -> str:
    """The model scheme a label set (a classifier's, not a corpus's tags) is written in: read
    off the prefixes it uses; bare types (`PER`) read as IO.

    >>> scheme_of_labels(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), scheme_of_labels(["O", "PER", "LOC"])
    ('iob2', 'io')
    """
    prefixes = {split_tag(label)[0] for label in labels if label != "O"}
    if prefixes == {""}:
        return "io"
    for name in MODEL_SCHEMES:
        if prefixes == set(SCHEMES[name].prefixes):
            return name
    known = "; ".join(f"{name}: {', '.join(sorted(SCHEMES[name].prefixes))}" for name in MODEL_SCHEMES)
    raise SchemeError(
        f"labels with the prefixes {', '.join(sorted(p or '(none)' for p in prefixes))} fit no tag scheme a model can "
        f"tag in ({known}; or bare types, read as io)"
    )


@dataclass(frozen=True)
class SchemeGuess:
    """The scheme a corpus appears to use, and how sure that is."""

    scheme: str
    confidence: float  # share of the corpus's entities that are valid in `scheme`
    entities: int
    evidence: str

    def describe(self) -> str:
        return f"{self.scheme} (confidence {self.confidence:.2%}: {self.evidence})"


def detect_scheme(sequences: Iterable[Sequence[str]]) -> SchemeGuess:
    """Guess the scheme of tag sequences from which prefixes occur and which entities they allow.

    >>> detect_scheme([["I-ORG", "I-ORG", "B-ORG", "O", "I-PER"]]).scheme
    'iob1'
    """
    sequences = [list(s) for s in sequences]
    prefixes = {split_tag(tag)[0] for seq in sequences for tag in seq} - {"O"}
    if "" in prefixes and prefixes - {""}:
        flat = next(t for s in sequences for t in s if split_tag(t)[0] == "")
        prefixed = next(t for s in sequences for t in s if split_tag(t)[0] not in ("", "O"))
        raise SchemeError(
            f"tags mix flat labels ('{flat}') with prefixed tags ('{prefixed}'); use one style throughout"
        )
    if not prefixes:
        return SchemeGuess("iob2", 0.0, 0, "no entity tags; assuming iob2")
    if prefixes == {""}:
        total = sum(len(chunks(s)) for s in sequences)
        return SchemeGuess("flat", 1.0, total, "labels carry no B-/I- prefix")

    candidates = []
    if prefixes & {"L", "U"}:
        candidates.append("bilou")
    if prefixes & {"E", "S"}:
        candidates.append("iobes")
    if not candidates:  # only B and I: IOB2 or IOB1; with I alone, IO too
        candidates = ["iob1", "io", "iob2"] if prefixes == {"I"} else ["iob2", "iob1"]
    total = sum(len(chunks(s)) for s in sequences)
    valid = {
        name: total - sum(len(invalid_chunks(s, SCHEMES[name])) for s in sequences) for name in candidates
    }
    # Ties go to the more common scheme: with only I- tags, IOB1 and IO read the same.
    best = max(candidates, key=lambda name: (valid[name], -candidates.index(name)))
    others = "; ".join(f"{name} {valid[name] / total:.2%}" for name in candidates if name != best)
    evidence = f"{valid[best]} of {total} entities valid" + (f"; {others}" if others else "")
    return SchemeGuess(best, valid[best] / total, total, evidence)
