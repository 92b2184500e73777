"""Reading and writing NER corpora: column files and JSON lines, detected from the content."""

from __future__ import annotations

from pathlib import Path

from tagshift.atomic import write_text_atomic
from tagshift.corpus.columns import MAX_SENTENCE_TOKENS, format_columns, read_columns
from tagshift.corpus.jsonl import format_jsonl, looks_like_json, read_jsonl
from tagshift.corpus.model import ColumnLayout, Corpus, DocStart, Sentence
from tagshift.errors import CorpusError

FORMATS = ("conll", "jsonl", "spans")

__all__ = [
    "FORMATS",
    "ColumnLayout",
    "Corpus",
    "DocStart",
    "Sentence",
    "format_corpus",
    "read_corpus",
    "write_corpus",
]


def read_corpus(
    path: str | Path,
    *,
    token_col: int | None = None,
    tag_col: int | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    max_tokens: int = MAX_SENTENCE_TOKENS,
    unlabelled: bool = False,
) -> Corpus:
    """Read a column file or JSON lines; which one is decided from the content. With
    `unlabelled` (input to a tagger), tokens without tags are accepted, tagged O."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if not path.is_file():
        raise CorpusError(f"{path}: not a regular file; give a corpus file")
    data = path.read_bytes()
    head = data[:4096].decode("utf-8", errors="ignore")
    if looks_like_json(head):
        return read_jsonl(path, max_tokens=max_tokens, encoding=encoding, data=data, unlabelled=unlabelled)
    return read_columns(
        path,
        token_col=token_col,
        tag_col=tag_col,
        delimiter=delimiter,
        encoding=encoding,
        max_tokens=max_tokens,
        data=data,
        unlabelled=unlabelled,
    )


_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".conll": "conll", ".tsv": "conll", ".bio": "conll", ".iob": "conll"}


def source_format(corpus: Corpus) -> str:
    """The format a corpus was read from: `conll` for column files, else `jsonl`."""
    return "conll" if corpus.layout is not None else "jsonl"


def output_format(corpus: Corpus, path: str | Path) -> str:
    """The format to write when none is asked for: from the file suffix, else the source's."""
    return suffix_format(path, source_format(corpus))


def suffix_format(path: str | Path, otherwise: str) -> str:
    """The format a file's suffix names (`.jsonl`, `.conll`, ...), else `otherwise`."""
    return _SUFFIX_FORMATS.get(Path(path).suffix.lower(), otherwise)


def format_corpus(corpus: Corpus, fmt: str, layout: ColumnLayout | None = None) -> str:
    """The text of `corpus` in format `fmt` (conll, jsonl or spans)."""
    if fmt == "conll":
        return format_columns(corpus, layout)
    if fmt in ("jsonl", "spans"):
        return format_jsonl(corpus, "tokens" if fmt == "jsonl" else "spans")
    raise CorpusError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


def write_corpus(corpus: Corpus, path: str | Path, fmt: str | None = None, layout: ColumnLayout | None = None) -> None:
    """Write atomically: the whole text is built first, then renamed into place."""
    write_text_atomic(path, format_corpus(corpus, fmt or output_format(corpus, path), layout))
