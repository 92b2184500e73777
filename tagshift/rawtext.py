"""Raw text in, shared by every command that reads unannotated text (terms, weak-label,
pretrain, rehearsal): `.txt` (a document per line, or paragraphs between blank lines),
`.jsonl` with `{"text": ...}` a line, PDF (its text layer, through pypdf), and directories of
them. Documents are split into sentences, then tokenized by tagshift's tokenizer with
character offsets. Streamed: one document is in memory at a time, so a corpus larger than
memory reads; what was read (and what was not: pages without a text layer, files that are
not raw text) is counted in a `RawReport`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagshift.corpus.model import Sentence
from tagshift.errors import TagshiftError, where
from tagshift.tokenize import tokenize

RAW_SUFFIXES = (".txt", ".jsonl", ".pdf")
Layout = Literal["auto", "lines", "paragraphs"]
MAX_TOKENS = 512  # a longer "sentence" (a table, a list without stops) is cut into pieces this long
_ENDS = {".", "!", "?", "…"}
_CLOSERS = {'"', "'", ")", "]", "”", "’", "»"}
_OPENERS = {'"', "'", "(", "[", "“", "‘", "«"}
# Words a full stop follows without ending a sentence (a single letter, an initial, also)
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr vs etc e.g i.e cf al inc ltd co corp dept univ no nos fig figs vol pp ed eds
gen col lt sgt capt gov sen rep rev hon mt ft approx est jan feb mar apr jun jul aug sep sept oct nov dec
""".split())


class RawTextError(TagshiftError):
    """Raw text that cannot be read as it is."""


@dataclass(frozen=True)
class Location:
    """Where a document came from: a file and its line, paragraph (first line), JSONL record
    (line) or PDF page."""

    file: str
    unit: Literal["line", "paragraph", "record", "page"]
    number: int

    def __str__(self) -> str:
        return f"{self.file} page {self.number}" if self.unit == "page" else f"{self.file}:{self.number}"


@dataclass
class RawReport:
    """What reading raw text found."""

    files: int = 0
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    cut: int = 0  # sentences longer than MAX_TOKENS, cut into pieces
    skipped: list[str] = field(default_factory=list)  # files in a directory that are not raw text
    pages_without_text: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "documents": self.documents, "sentences": self.sentences, "tokens": self.tokens,
                "cut": self.cut, "skipped": self.skipped, "pages_without_text": self.pages_without_text}

    def render(self) -> str:
        lines = [f"raw text: {self.files} file{'s' * (self.files != 1)}, {self.documents} documents, "
                 f"{self.sentences} sentences, {self.tokens} tokens"
                 + (f" ({self.cut} sentences over {MAX_TOKENS} tokens cut into pieces)" if self.cut else "")]
        lines += [f"warning: {file}: pages without a text layer, not read: {', '.join(map(str, pages))} "
                  "(scanned images: OCR them first)" for file, pages in self.pages_without_text.items()]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files that are not {'/'.join(RAW_SUFFIXES)}: "
                         + ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else ""))
        return "\n".join(lines)


def read_raw(path: str | Path, report: RawReport | None = None, layout: Layout = "auto",
             max_tokens: int = MAX_TOKENS) -> Iterator[tuple[Location, Sentence]]:
    """The sentences of raw text at `path` (a file or a directory of them), each with where its
    document came from; tags are all O, `text` is the sentence's text and `offsets` index it.
    Raises RawTextError, naming the file (and line), for what cannot be read, and once all is
    read, when there was no text at all."""
    report = report if report is not None else RawReport()
    start = report.sentences
    for location, text in documents(Path(path), report, layout):
        report.documents += 1
        for sentence in split_sentences(text, max_tokens, report):
            sentence.line = location.number
            report.sentences += 1
            report.tokens += len(sentence)
            yield location, sentence
    if report.sentences == start:
        raise RawTextError(f"{path}: no text to read" + (" (every page lacks a text layer)" if report.pages_without_text else ""))


def documents(path: Path, report: RawReport, layout: Layout = "auto") -> Iterator[tuple[Location, str]]:
    """The documents of a file, or of every raw-text file under a directory (in name order)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for file in files:
            if file.suffix.lower() in RAW_SUFFIXES:
                yield from _file_documents(file, report, layout)
            else:
                report.skipped.append(str(file))
        return
    if not path.exists():
        raise RawTextError(f"{path}: no such file or directory")
    if not path.is_file():
        raise RawTextError(f"{path}: not a regular file")
    yield from _file_documents(path, report, layout)


def _file_documents(path: Path, report: RawReport, layout: Layout) -> Iterator[tuple[Location, str]]:
    report.files += 1
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        yield from _pdf_pages(path, report)
    elif suffix == ".jsonl":
        for number, line in text_lines(path):
            if line.strip():
                yield Location(str(path), "record", number), _json_text(path, number, line)
    else:
        yield from _text_documents(path, layout)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, line) of a UTF-8 text file, read a line at a time; a missing, binary or
    wrongly encoded file is an error naming it (and its line)."""
    if not Path(path).is_file():
        raise RawTextError(f"{path}: no such file" if not Path(path).exists() else f"{path}: not a regular file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:
                raise RawTextError(f"{where(path, number)}file looks binary (NUL byte); expected raw text")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RawTextError(f"{where(path, number)}not UTF-8 (byte {err.start + 1} of the line); "
                                   "re-save the file as UTF-8") from None
            yield number, line.removeprefix("\ufeff") if number == 1 else line


def _json_text(path: Path, number: int, line: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise RawTextError(f"{where(path, number)}not JSON ({err.msg}); expected {{\"text\": ...}} a line") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise RawTextError(f"{where(path, number)}expected an object with a \"text\" string")
    return record["text"]


def _text_documents(path: Path, layout: Layout) -> Iterator[tuple[Location, str]]:
    """A document per line, or (paragraphs) per block of lines between blank lines."""
    if layout == "auto":
        layout = "paragraphs" if _has_paragraphs(path) else "lines"
    if layout == "lines":
        for number, line in text_lines(path):
            if line.strip():
                yield Location(str(path), "line", number), line.strip()
        return
    block: list[str] = []
    first = 0
    for number, line in text_lines(path):
        if line.strip():
            first = first or number
            block.append(line.strip())
        elif block:
            yield Location(str(path), "paragraph", first), " ".join(block)
            block, first = [], 0
    if block:
        yield Location(str(path), "paragraph", first), " ".join(block)


def _has_paragraphs(path: Path, lines: int = 2000) -> bool:
    """Whether the file's head is paragraphs: blocks of several lines between blank lines
    (hard-wrapped prose), rather than a document a line."""
    blocks, current = [], 0
    for number, line in text_lines(path):
        if line.strip():
            current += 1
        elif current:
            blocks.append(current)
            current = 0
        if number >= lines:
            break
    blocks += [current] if current else []
    return len(blocks) > 1 and sum(blocks) / len(blocks) > 1.5


def _pdf_pages(path: Path, report: RawReport) -> Iterator[tuple[Location, str]]:
    """A PDF's pages with a text layer, a document each; the others are reported by number.
    A damaged file or page is an error naming it: pypdf raises many kinds of exception on
    malformed input (KeyError, TypeError, zlib's...), not only its own."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raise RawTextError(f"{path}: reading PDF needs pypdf, a dependency of tagshift that is missing here: "
                           "pip install pypdf==7.1.1 (or reinstall tagshift)") from None

    def damaged(err: Exception, where: str) -> RawTextError:
        first = (str(err).splitlines() or [""])[0][:200]
        return RawTextError(f"{path}: {where} ({type(err).__name__}: {first})")

    try:
        pages = PdfReader(path).pages
        count = len(pages)
    except Exception as err:  # noqa: BLE001  (see the docstring)
        raise damaged(err, "not a readable PDF") from None
    for number in range(1, count + 1):
        try:
            text = pages[number - 1].extract_text() or ""
        except Exception as err:  # noqa: BLE001
            raise damaged(err, f"page {number} of {count} does not read: the PDF is damaged") from None
        if not text.strip():
            report.pages_without_text.setdefault(str(path), []).append(number)
            continue
        yield Location(str(path), "page", number), _unwrap(text)


def _unwrap(text: str) -> str:
    """A page's text as one paragraph: words hyphenated across lines joined, lines joined."""
    lines = [line.strip() for line in text.splitlines()]
    joined = ""
    for line in lines:
        if not line:
            continue
        if joined.endswith("-") and line[:1].islower():
            joined = joined[:-1] + line
        else:
            joined = f"{joined} {line}" if joined else line
    return joined


def split_sentences(text: str, max_tokens: int = MAX_TOKENS, report: RawReport | None = None) -> list[Sentence]:
    """Sentences of a document: a sentence ends at . ! ? or … (and the quotes or brackets that
    close it) when the next token opens a sentence (a capital, a digit, an opening quote) and
    the stop does not follow an abbreviation or an initial.

    >>> [s.text for s in split_sentences('Dr. Smith met J. K. Rowling in the U.S. yesterday. "Good," he said.')]
    ['Dr. Smith met J. K. Rowling in the U.S. yesterday.', '"Good," he said.']
    >>> split_sentences("Hi there! Bye.")[1].offsets
    [(0, 3), (3, 4)]
    """
    tokens = tokenize(text)
    sentences, begin = [], 0
    for index, (token, _, _) in enumerate(tokens):
        if token not in _ENDS or _abbreviation(tokens, index):
            continue
        end = index + 1
        while end < len(tokens) and tokens[end][0] in _CLOSERS and tokens[end][1] == tokens[end - 1][2]:
            end += 1
        if end < len(tokens) and not _opens(tokens[end][0]):
            continue
        if end > begin:
            sentences += _sentences(text, tokens[begin:end], max_tokens, report)
        begin = end
    if begin < len(tokens):
        sentences += _sentences(text, tokens[begin:], max_tokens, report)
    return sentences


def _abbreviation(tokens: list[tuple[str, int, int]], index: int) -> bool:
    """Whether the full stop at `index` follows an abbreviation or an initial ("J.", "U.S.")."""
    if tokens[index][0] != "." or index == 0 or tokens[index - 1][2] != tokens[index][1]:
        return False
    word = tokens[index - 1][0]
    if len(word) == 1 and word.isalpha():
        return True
    # "e.g": the word before a stop that is itself joined to a stop before it
    if index >= 2 and tokens[index - 2][0] == "." and tokens[index - 2][2] == tokens[index - 1][1]:
        return True
    return word.lower() in ABBREVIATIONS


def _opens(token: str) -> bool:
    return token[:1].isupper() or token[:1].isdigit() or token in _OPENERS


def _sentences(text: str, tokens: list[tuple[str, int, int]], max_tokens: int,
               report: RawReport | None) -> list[Sentence]:
    """One sentence of `tokens`, or pieces of at most `max_tokens` where it is longer."""
    pieces = [tokens[i : i + max_tokens] for i in range(0, len(tokens), max_tokens)]
    if report is not None and len(pieces) > 1:
        report.cut += 1
    out = []
    for piece in pieces:
        start, end = piece[0][1], piece[-1][2]
        out.append(Sentence([t for t, _, _ in piece], ["O"] * len(piece), text=text[start:end],
                            offsets=[(s - start, e - start) for _, s, e in piece]))
    return out
