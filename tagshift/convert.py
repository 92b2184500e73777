"""Corpus-level scheme conversion, repair of invalid sequences, and label maps."""

from __future__ import annotations

from dataclasses import dataclass, field

from tagshift.corpus import Corpus
from tagshift.errors import SchemeError
from tagshift.labelmap import LabelMap, MapReport, map_spans
from tagshift.schemes import SCHEMES, SchemeGuess, Span, chunks, detect_scheme, encode, get_scheme, invalid_chunks


def token_location(corpus: Corpus, index: int, token: int) -> str:
    """`file:line` of one token: column files have a line per token, JSON a line per sentence."""
    line = corpus.sentences[index].line
    if line is None:
        return f"{corpus.path}: sentence {index + 1}, token {token + 1}"
    return f"{corpus.path}:{line + token if corpus.layout is not None else line}"


def find_repairs(corpus: Corpus, scheme: str) -> list[tuple[int, Span]]:
    """(sentence index, entity) for every entity whose tags are invalid in `scheme`."""
    definition = get_scheme(scheme)
    return [(i, span) for i, s in enumerate(corpus.sentences) for span in invalid_chunks(s.tags, definition)]


def describe_repair(corpus: Corpus, index: int, span: Span) -> str:
    tags = " ".join(corpus.sentences[index].tags[span.start : span.end])
    return f"{token_location(corpus, index, span.start)}: '{tags}' read as one {span.label} entity"


def refuse_repairs(corpus: Corpus, scheme: str, repairs: list[tuple[int, Span]], fix: str) -> None:
    """--strict: the first entity that needs repair is an error."""
    if repairs:
        index, span = repairs[0]
        raise SchemeError(
            f"{describe_repair(corpus, index, span)}, but the tags are not valid {scheme} "
            f"({len(repairs)} such entities); {fix}"
        )


@dataclass
class ConversionReport:
    """What a conversion did: schemes, repairs, entities joined, label-map rules applied."""

    source: SchemeGuess
    target: str
    repairs: list[str] = field(default_factory=list)
    joined: int = 0  # adjacent same-type entities the target scheme cannot keep apart
    label_map: MapReport | None = None

    def lines(self) -> list[str]:
        out = [f"scheme: {self.source.describe()} -> {self.target}"]
        out.append(f"repaired {len(self.repairs)} invalid entities (read as conlleval reads them)")
        out.extend(f"  {r}" for r in self.repairs[:5])
        if len(self.repairs) > 5:
            out.append(f"  ... and {len(self.repairs) - 5} more")
        if self.joined:
            out.append(f"joined {self.joined} adjacent same-type entities: {self.target} cannot keep them apart")
        if self.label_map is not None:
            out.extend(f"map: {line}" for line in self.label_map.lines())
        return out


def entity_labels(corpus: Corpus) -> set[str]:
    return {span.label for s in corpus.sentences for span in chunks(s.tags)}


def relabel(corpus: Corpus, label_map: LabelMap, scheme: str = "iob2") -> Corpus:
    """A model's predictions with their types mapped (a spaCy pipeline's OntoNotes types onto
    CoNLL's, say), written in `scheme`. The map is checked against the model's types by the
    caller: a prediction set need not hold every type the model has."""
    target = SCHEMES[scheme]
    return corpus.with_sentences([
        s.with_tags(encode(map_spans(chunks(s.tags), label_map), len(s), target)) for s in corpus.sentences
    ])


def convert_corpus(
    corpus: Corpus,
    to: str | None = None,
    label_map: LabelMap | None = None,
    strict: bool = False,
    source_scheme: str | None = None,
) -> tuple[Corpus, ConversionReport]:
    """Re-tag `corpus` in scheme `to` (default: its own), mapping labels on the way.

    Invalid sequences are repaired as conlleval reads them and listed in the report;
    with `strict` the first one is an error instead.
    """
    guess = detect_scheme(corpus.tag_sequences)
    if source_scheme is not None:
        guess = SchemeGuess(get_scheme(source_scheme).name, 1.0, guess.entities, "given")
    target = get_scheme(to or guess.scheme)
    repairs = find_repairs(corpus, guess.scheme)
    if strict:
        refuse_repairs(corpus, guess.scheme, repairs, "drop --strict to repair them")
    map_report = None
    if label_map is not None:
        label_map.check(entity_labels(corpus), what=f"{corpus.path}")
        map_report = MapReport()

    sentences, joined = [], 0
    for sentence in corpus.sentences:
        spans = chunks(sentence.tags)
        if label_map is not None:
            spans = map_spans(spans, label_map, map_report)
        tags = encode(spans, len(sentence), target)
        if not target.separates_adjacent:
            joined += len(spans) - len(chunks(tags))
        sentences.append(sentence.with_tags(tags))
    report = ConversionReport(
        guess, target.name, [describe_repair(corpus, i, s) for i, s in repairs], joined, map_report
    )
    return corpus.with_sentences(sentences), report
