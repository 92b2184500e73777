"""Column files (CoNLL, MIT Movie, WNUT, ...): one token a line, a blank line between sentences.

The reader detects what differs between real corpora: tab or space separators, where the
tag column is (CoNLL puts it last, MIT Movie first), extra columns (kept), `-DOCSTART-` lines
(document boundaries, never sentences), a UTF-8 BOM, CRLF line ends, a missing final newline.
The writer puts all of it back, so a file read and written again has the same bytes.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tagshift.corpus.model import ColumnLayout, Corpus, DocStart, Sentence
from tagshift.errors import CorpusError, SchemeError, quoted, requoted, where
from tagshift.schemes import split_tag

DOCSTART = "-DOCSTART-"
MAX_SENTENCE_TOKENS = 10_000
_DETECT_LINES = 5000
_LOOKS_LIKE_TAG = re.compile(r"^(O|[BIESLU]-\S+)$")


def decode_text(data: bytes, path: str | Path, encoding: str = "utf-8", first_line: int = 1) -> str:
    """Bytes to text with clear errors for empty, binary and wrongly encoded files. `data`
    may be a part of the file that starts at line `first_line` (a chunk, when streaming)."""
    if not data.strip():
        what = "empty" if not data else "only whitespace"
        raise CorpusError(f"{where(path, None)}file is {what}: no sentences to read")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + first_line
        raise CorpusError(f"{where(path, line)}file looks binary (NUL byte); expected a text corpus")
    try:
        text = data.decode("utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding)
    except LookupError:
        raise CorpusError(
            f"{where(path, None)}{quoted(encoding)} is not a text encoding; pass one like utf-8, latin-1 or cp1252"
        ) from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + first_line
        raise CorpusError(
            f"{where(path, line)}byte 0x{data[err.start]:02x} is not valid {encoding}; "
            f"re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or pass --encoding"
        ) from None
    return text.replace("\r\n", "\n")


def _fields(line: str, delimiter: str | None, path: str | Path, number: int) -> list[str]:
    """Split one token line. A line may use tabs or spaces, but not both as separators."""
    if delimiter is not None:
        return line.split(delimiter) if delimiter == "\t" else [f for f in line.split(delimiter) if f]
    if "\t" in line:
        fields = line.rstrip(" ").split("\t")  # a stray trailing space is not a separator
        if any(" " in f for f in fields):
            raise CorpusError(
                f"{where(path, number)}line mixes tab and space separators: {quoted(line)}; "
                "use one separator per line"
            )
        return fields
    return [f for f in line.split(" ") if f]


def _detect_layout(rows: list[list[str]], columns: int, path: str | Path) -> tuple[int, int]:
    """(token column, tag column) from the first token lines: the tag column is the end column
    whose values look like tags (or, for flat labels, the end column with fewer distinct values)."""
    if columns < 2:
        raise CorpusError(
            f"{where(path, None)}lines have one column; a corpus needs a token and a tag column"
        )
    first = [r[0] for r in rows]
    last = [r[-1] for r in rows]

    def tag_share(values: list[str]) -> float:
        return sum(bool(_LOOKS_LIKE_TAG.match(v)) for v in values) / len(values)

    share_first, share_last = tag_share(first), tag_share(last)
    if max(share_first, share_last) > 0.5:
        tag_last = share_last >= share_first
    else:  # flat labels: tags repeat, tokens vary
        tag_last = len(set(last)) <= len(set(first))
    return (0, columns - 1) if tag_last else (columns - 1, 0)


def read_columns(
    path: str | Path,
    *,
    token_col: int | None = None,
    tag_col: int | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    max_tokens: int = MAX_SENTENCE_TOKENS,
    data: bytes | None = None,
    unlabelled: bool = False,
    first_line: int = 1,
    columns: int | None = None,
) -> Corpus:
    """Read a column file. Options left as None are detected from the file. With
    `unlabelled`, a file of tokens alone (one column) is read with every tag O. `data` may
    be a part of the file that starts at line `first_line` (a chunk, when streaming), and
    `columns` the fields a line has, as `detect_columns` found them in the file's start."""
    path = str(path)
    raw = Path(path).read_bytes() if data is None else data
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = decode_text(raw, path, encoding, first_line)
    newline = "\r\n" if b"\r\n" in raw else "\n"
    lines = text.split("\n")

    token_lines = _token_lines(lines, first_line)
    if not token_lines:
        raise CorpusError(f"{where(path, None)}file holds no token lines, only blank or -DOCSTART- lines")

    sample = [_fields(line, delimiter, path, n) for n, line in token_lines[:_DETECT_LINES]]
    columns = _most_common_width(sample) if columns is None else columns
    tokens_only = unlabelled and columns == 1

    def fields_of(line: str, number: int) -> list[str]:
        row = _fields(line, delimiter, path, number)
        return row + ["O"] if tokens_only and len(row) == 1 else row

    if tokens_only:
        sample = [row + ["O"] for row in sample]
        columns = 2
    for (number, line), row in zip(token_lines, sample):
        if len(row) != columns:
            _wrong_columns(path, number, line, row, columns)
    detected_token, detected_tag = _detect_layout(sample, columns, path)
    token_col = detected_token if token_col is None else token_col
    tag_col = detected_tag if tag_col is None else tag_col
    for name, col in (("token", token_col), ("tag", tag_col)):
        if not -columns <= col < columns:
            raise CorpusError(f"{where(path, None)}{name} column {col} does not exist: lines have {columns} columns")
    token_col, tag_col = token_col % columns, tag_col % columns
    if token_col == tag_col:
        raise CorpusError(f"{where(path, None)}token and tag columns are both column {token_col}")
    flat_file = _mostly_flat([row[tag_col] for row in sample])
    layout_delimiter = delimiter or ("\t" if "\t" in token_lines[0][1] else " ")

    sentences: list[Sentence] = []
    doc_starts: list[DocStart] = []
    tokens: list[str] = []
    tags: list[str] = []
    extra: list[tuple[str, ...]] = []
    start_line = 0
    others = [c for c in range(columns) if c not in (token_col, tag_col)]

    def close() -> None:
        nonlocal tokens, tags, extra
        if tokens:
            sentences.append(Sentence(tokens, tags, extra if others else [], start_line))
            tokens, tags, extra = [], [], []

    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            close()
            continue
        if line.startswith(DOCSTART):
            close()
            doc_starts.append(DocStart(len(sentences), line))
            continue
        row = fields_of(line, number)
        if len(row) != columns:
            _wrong_columns(path, number, line, row, columns)
        token, tag = row[token_col], row[tag_col]
        _check_tag(tag, token, flat_file, path, number)
        if not tokens:
            start_line = number
        tokens.append(token)
        tags.append(tag)
        if others:
            extra.append(tuple(row[c] for c in others))
        if len(tokens) > max_tokens:
            raise CorpusError(
                f"{where(path, start_line)}sentence has more than {max_tokens} tokens; "
                "is a blank line missing between sentences? (raise the limit with --max-tokens)"
            )
    close()

    last_content = max(i for i, line in enumerate(lines) if line.strip())
    ending = "\n" + "\n".join(lines[last_content + 1 :]) if last_content + 1 < len(lines) else ""
    layout = ColumnLayout(columns, token_col, tag_col, layout_delimiter, newline, bom, ending)
    return Corpus(sentences, path, doc_starts, layout)


def _token_lines(lines: list[str], first_line: int) -> list[tuple[int, str]]:
    """(number, line) of the lines that hold a token."""
    return [(n, line) for n, line in enumerate(lines, start=first_line) if line.strip() and not line.startswith(DOCSTART)]


def _most_common_width(sample: list[list[str]]) -> int:
    return Counter(len(row) for row in sample).most_common(1)[0][0]  # not the first line's: it may be the bad one


def detect_columns(data: bytes, path: str | Path, encoding: str = "utf-8", delimiter: str | None = None) -> int:
    """The fields a column file's lines have, as `read_columns` detects them from `data`
    (the file's start): the most common count among its first token lines."""
    lines = decode_text(data, path, encoding).split("\n")
    token_lines = _token_lines(lines, 1)[:_DETECT_LINES]
    if not token_lines:
        raise CorpusError(f"{where(path, None)}file holds no token lines, only blank or -DOCSTART- lines")
    return _most_common_width([_fields(line, delimiter, path, n) for n, line in token_lines])


def _wrong_columns(path: str | Path, number: int, line: str, row: list[str], columns: int) -> None:
    hint = " (a missing tag?)" if len(row) < columns else ""
    raise CorpusError(
        f"{where(path, number)}expected {columns} columns like the lines before, found {len(row)}{hint}: {quoted(line)}"
    )


def _mostly_flat(tags: list[str]) -> bool:
    """Whether a file's tags are flat labels (`person`) rather than prefixed ones (`B-PER`)."""
    styles = Counter()
    for tag in tags:
        if tag != "O":
            styles["flat" if not re.match(r"^[A-Za-z]-", tag) else "prefixed"] += 1
    return styles["flat"] > styles["prefixed"]


def _check_tag(tag: str, token: str, flat_file: bool, path: str | Path, number: int) -> None:
    """Reject a tag that cannot be one, or that breaks the style of the rest of the file."""
    try:
        prefix, _ = split_tag(tag)
    except SchemeError as err:
        raise CorpusError(f"{where(path, number)}{requoted(str(err), tag)}") from None
    if prefix == "" and not flat_file:
        swapped = _LOOKS_LIKE_TAG.match(token) is not None
        hint = f"; the columns look swapped ({quoted(token)} is in the token column)" if swapped else ""
        raise CorpusError(
            f"{where(path, number)}{quoted(tag)} is not a tag: the file's tags are 'O' or prefixed like 'B-PER'{hint}"
        )
    if prefix not in ("", "O") and flat_file:
        raise CorpusError(
            f"{where(path, number)}tag {quoted(tag)} is prefixed but the file's other tags are flat labels; "
            "use one style throughout"
        )


def format_columns(corpus: Corpus, layout: ColumnLayout | None = None) -> str:
    """The text of a column file for `corpus` (the reverse of `read_columns`)."""
    layout = layout or corpus.layout or ColumnLayout()
    sep = layout.delimiter
    blocks: list[str] = []
    doc_starts = {}
    for doc in corpus.doc_starts:
        doc_starts.setdefault(doc.before, []).append(doc.line)
    for index, sentence in enumerate(corpus.sentences):
        blocks.extend(doc_starts.pop(index, []))
        rows = []
        for i, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags)):
            if not token or any(ch.isspace() for ch in token):
                raise CorpusError(
                    f"{corpus.location(index)}: token {quoted(token)} is empty or holds whitespace and "
                    "cannot be written to a column file; write JSONL instead (--format jsonl)"
                )
            fields = list(sentence.extra[i]) if sentence.extra else []
            if len(fields) != layout.columns - 2:
                raise CorpusError(
                    f"{corpus.location(index)}: the sentence has {len(fields)} extra columns "
                    f"but the layout has {layout.columns - 2}"
                )
            for col, value in sorted(((layout.token_col, token), (layout.tag_col, tag))):
                fields.insert(col, value)
            rows.append(sep.join(fields))
        blocks.append("\n".join(rows))
    for lines in doc_starts.values():
        blocks.extend(lines)
    text = "\n\n".join(blocks) + layout.ending
    if layout.newline != "\n":
        text = text.replace("\n", layout.newline)
    return ("\ufeff" if layout.bom else "") + text
