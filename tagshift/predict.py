"""Prediction input and output: what `tagshift predict` reads (a corpus, tokenised JSONL, or
raw text) and writes (CoNLL columns, JSONL of tokens and tags, or character spans), with
each entity's confidence in the JSON formats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tagshift.corpus import Corpus, Sentence, format_corpus, read_corpus
from tagshift.corpus.columns import DOCSTART, MAX_SENTENCE_TOKENS, decode_text
from tagshift.corpus.jsonl import looks_like_json, span_record
from tagshift.errors import CorpusError
from tagshift.schemes import SCHEMES, Span, chunks, convert_tags
from tagshift.taggers.tagger import Tagged
from tagshift.tokenize import tokenize

# raw: documents through the raw-text reader (tagshift/rawtext.py): text, {"text"} JSONL, PDF
# and directories of them, split into sentences; "text" is a sentence a line, as written
INPUT_FORMATS = ("auto", "conll", "jsonl", "text", "raw")


def looks_like_text(text: str) -> bool:
    """Prose, one document per line, rather than a column file: column files have the same
    number of fields on most lines and few fields per line.

    >>> looks_like_text("EU rejects German call.\\nPeter Blackburn met officials in Brussels on Monday.\\n")
    True
    >>> looks_like_text("EU B-ORG\\nrejects O\\n\\nPeter B-PER\\n")
    False
    """
    counts = Counter(len(line.split()) for line in text.splitlines() if line.strip() and not line.startswith(DOCSTART))
    if not counts:
        return False
    columns, lines = counts.most_common(1)[0]
    return columns > 4 or lines < 0.9 * sum(counts.values())


def read_text(path: str | Path, encoding: str = "utf-8", max_tokens: int = MAX_SENTENCE_TOKENS) -> Corpus:
    """Raw text, one document per line, tokenised with character offsets kept."""
    corpus = parse_text(Path(path).read_bytes(), path, encoding, max_tokens)
    if not corpus.sentences:
        raise CorpusError(f"{path}: no text to tag")
    return corpus


def parse_text(data: bytes, path: str | Path, encoding: str = "utf-8", max_tokens: int = MAX_SENTENCE_TOKENS,
               first_line: int = 1) -> Corpus:
    """`read_text` of the bytes `data`, the file's part from line `first_line` (a chunk, when
    streaming); it may hold no text."""
    text = decode_text(data, str(path), encoding, first_line)
    sentences = []
    for number, line in enumerate(text.split("\n"), start=first_line):  # lines as editors count them: at \n only
        triples = tokenize(line)
        if not triples:
            continue
        if len(triples) > max_tokens:
            raise CorpusError(f"{path}:{number}: line has {len(triples)} tokens, more than {max_tokens} (raise --max-tokens)")
        tokens = [t for t, _, _ in triples]
        sentences.append(Sentence(tokens, ["O"] * len(tokens), line=number, text=line, offsets=[(s, e) for _, s, e in triples]))
    return Corpus(sentences, str(path))


def input_format_of(path: str | Path, input_format: str = "auto", encoding: str = "utf-8") -> str:
    """How to read the input: as asked, or (auto) told from its first 64 KiB; a PDF or a
    directory is raw text."""
    path = Path(path)
    if input_format not in INPUT_FORMATS:
        raise CorpusError(f"unknown input format '{input_format}'; choose one of {', '.join(INPUT_FORMATS)}")
    if input_format in ("auto", "raw") and (path.is_dir() or (path.is_file() and path.suffix.lower() == ".pdf")):
        return "raw"
    if not path.is_file():
        raise CorpusError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if input_format != "auto":
        return input_format
    with path.open("rb") as handle:
        head = handle.read(65536).decode(encoding, errors="ignore")
    return "jsonl" if looks_like_json(head) else "text" if looks_like_text(head) else "conll"


def read_input(path: str | Path, input_format: str = "auto", **options: Any) -> tuple[Corpus, str]:
    """The sentences to tag, and the format they were read as."""
    input_format = input_format_of(path, input_format, options.get("encoding", "utf-8"))
    if input_format == "text":
        return read_text(path, options.get("encoding", "utf-8"), options.get("max_tokens", MAX_SENTENCE_TOKENS)), "text"
    if input_format == "raw":
        from tagshift.rawtext import read_raw

        sentences = [sentence for _, sentence in read_raw(path)]
        for sentence in sentences:
            sentence.line = None  # (a PDF's is its page: predict's records say "meta": {"source"} instead)
        return Corpus(sentences, str(path)), "raw"
    return read_corpus(path, unlabelled=True, **options), input_format


def _confidence(span: Span, result: Tagged) -> float | None:
    """The lowest confidence of the model's entities under `span`: a span of the output
    scheme may join several (IO merges touching entities of one type)."""
    under = [e.confidence for e in result.entities if e.start < span.end and span.start < e.end]
    if not under or any(c is None for c in under):
        return None
    return round(min(under), 4)  # type: ignore[type-var]


def tags_in(tagged: list[Tagged], scheme: str | None) -> list[list[str]]:
    """The predicted tags in `scheme` (None: the model's own)."""
    return [t.tags if scheme is None else convert_tags(t.tags, SCHEMES[scheme]) for t in tagged]


def prediction_records(corpus: Corpus, tagged: list[Tagged], fmt: str, scheme: str | None = None) -> list[dict[str, Any]]:
    """A record a sentence in the JSON formats: jsonl (tokens, tags, entities with confidence)
    or spans (text, character spans with confidence); tags in `scheme` (default: the model's)."""
    records = []
    for sentence, result, sentence_tags in zip(corpus.sentences, tagged, tags_in(tagged, scheme)):
        sentence = sentence.with_tags(sentence_tags)
        entities = [
            {"start": span.start, "end": span.end, "label": span.label, "confidence": _confidence(span, result)}
            for span in chunks(sentence.tags)
        ]
        if fmt == "jsonl":
            record: dict[str, Any] = {"tokens": sentence.tokens, "tags": sentence.tags, "entities": entities}
        elif fmt == "spans":
            record = span_record(sentence)
            for span, entity in zip(record["spans"], entities):
                span["confidence"] = entity["confidence"]
        else:
            raise CorpusError(f"unknown format '{fmt}'; choose conll, jsonl or spans")
        if sentence.text is not None and sentence.line is not None:
            record["line"] = sentence.line
        records.append(record)
    return records


def format_predictions(corpus: Corpus, tagged: list[Tagged], fmt: str, scheme: str | None = None) -> str:
    """Predictions in `fmt`: conll (the input's columns, tags replaced), or a JSON line a
    sentence (`prediction_records`)."""
    if fmt == "conll":
        tags = tags_in(tagged, scheme)
        return format_corpus(corpus.with_sentences([s.with_tags(t) for s, t in zip(corpus.sentences, tags)]), "conll")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prediction_records(corpus, tagged, fmt, scheme))
