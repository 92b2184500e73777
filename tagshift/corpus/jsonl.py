"""JSON lines: one sentence a line, as tokens and tags or as text with character spans.

Two record shapes are read:

- `{"tokens": [...], "tags": [...]}` (also `ner_tags`/`labels` when they are strings);
- `{"text": "...", "spans": [{"start": 0, "end": 5, "label": "PER"}]}`, with the field names
  of the annotation tools accepted: doccano (`label: [[0, 5, "PER"]]`, `entities` with
  `start_offset`/`end_offset`), Label Studio (`data.text`, `annotations[0].result[].value`
  with `labels: ["PER"]`; a whole export as one JSON array), Prodigy (`tokens` with offsets,
  `token_start`/`token_end`). Text without given tokens is tokenized with entity edges kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from tagshift.corpus.columns import MAX_SENTENCE_TOKENS, decode_text
from tagshift.corpus.model import Corpus, Sentence
from tagshift.errors import CorpusError, SchemeError, quoted, requoted
from tagshift.schemes import SCHEMES, Span, chunks, encode, split_tag
from tagshift.tokenize import cluster_around, tokenize

_TAG_KEYS = ("tags", "ner_tags", "labels")
_SPAN_KEYS = ("spans", "entities", "label", "labels")


def looks_like_json(text: str) -> bool:
    """Whether a file's first line opens JSON: a record, or an array of records (a CoNLL
    line whose token is `[` or `{` is not JSON)."""
    first = text.lstrip("\ufeff \t\r\n").split("\n", 1)[0].strip()
    return (first.startswith("{") and first[1:2] in ('"', "}", "")) or first == "[" or first.startswith(("[{", "[ {"))


def read_jsonl(
    path: str | Path,
    *,
    max_tokens: int = MAX_SENTENCE_TOKENS,
    encoding: str = "utf-8",
    data: bytes | None = None,
    unlabelled: bool = False,
    first_line: int = 1,
) -> Corpus:
    """Read JSON lines (or one JSON array of records) into a corpus. With `unlabelled`, a
    record of tokens alone is read with every tag O (text without spans always is). `data`
    may be a part of the file that starts at line `first_line` (a chunk, when streaming)."""
    path = str(path)
    text = decode_text(Path(path).read_bytes() if data is None else data, path, encoding, first_line)
    sentences = []
    for place, line, record in _records(text, path, first_line):
        sentence = _sentence(record, place, unlabelled)
        if len(sentence) > max_tokens:
            raise CorpusError(f"{place}sentence has more than {max_tokens} tokens (raise the limit with --max-tokens)")
        sentence.line = line
        sentences.append(sentence)
    if not sentences:
        raise CorpusError(f"{path}: file holds no records")
    return Corpus(sentences, path)


def _records(text: str, path: str, first_line: int = 1) -> Iterator[tuple[str, int | None, dict[str, Any]]]:
    """(location prefix for messages, line number, record) for each record."""
    if text.lstrip().startswith("["):
        try:
            records = _loads(text, f"{path}: ")
        except json.JSONDecodeError as err:
            raise CorpusError(f"{path}:{err.lineno}: not valid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(records, list):
            raise CorpusError(f"{path}: expected JSON lines or one JSON array of records")
        for index, record in enumerate(records, start=1):
            place = f"{path}: record {index}: "
            yield place, None, _object(record, place)
        return
    for number, line in enumerate(text.split("\n"), start=first_line):
        if not line.strip():
            continue
        place = f"{path}:{number}: "
        try:
            record = _loads(line, place)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{place}not valid JSON: {err.msg} (column {err.colno})") from None
        yield place, number, _object(record, place)


def _loads(text: str, place: str) -> Any:
    """json.loads, with the two failures that are not JSONDecodeError made corpus errors."""
    try:
        return json.loads(text)
    except RecursionError:
        raise CorpusError(f"{place}JSON nested too deeply to read; records are flat objects") from None
    except json.JSONDecodeError:
        raise
    except ValueError as err:  # Python refuses integers of over 4300 digits
        raise CorpusError(f"{place}cannot read JSON: {quoted(str(err).split(';')[0])}") from None


def _object(record: Any, place: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise CorpusError(f"{place}expected a JSON object per record, found {type(record).__name__}")
    return record


def _sentence(record: dict[str, Any], place: str, unlabelled: bool = False) -> Sentence:
    tokens = record.get("tokens")
    tag_key = next((k for k in _TAG_KEYS if isinstance(record.get(k), list) and isinstance(tokens, list)), None)
    if tag_key and all(isinstance(t, str) for t in tokens):
        return _tagged_sentence(tokens, record[tag_key], place)
    if unlabelled and "text" not in record and isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        return _tagged_sentence(tokens, ["O"] * len(tokens), place)
    text = record.get("text")
    if text is None and isinstance(record.get("data"), dict):
        text = record["data"].get("text")
    if isinstance(text, str):
        return _span_sentence(text, record, place)
    raise CorpusError(
        f"{place}a record needs 'tokens' and 'tags', or 'text' and 'spans'; found keys {quoted(sorted(record))}"
    )


def _tagged_sentence(tokens: list[Any], tags: list[Any], place: str) -> Sentence:
    if len(tokens) != len(tags):
        raise CorpusError(f"{place}{len(tokens)} tokens but {len(tags)} tags")
    if not tokens:
        raise CorpusError(f"{place}record has no tokens")
    for tag in tags:
        if not isinstance(tag, str):
            raise CorpusError(
                f"{place}tag {quoted(tag)} is not a string; "
                "tagshift needs tag names (map the dataset's ids to names first)"
            )
        try:
            split_tag(tag)
        except SchemeError as err:
            raise CorpusError(f"{place}{requoted(str(err), tag)}") from None
    return Sentence(list(tokens), list(tags))


def _span_fields(entry: Any, place: str) -> tuple[int, int, str]:
    """(start, end, label) from one span in any of the accepted shapes."""
    if isinstance(entry, (list, tuple)) and len(entry) == 3:
        start, end, label = entry
    elif isinstance(entry, dict) and isinstance(entry.get("value", entry), dict):
        value = entry.get("value", entry)  # Label Studio wraps the span in "value"
        start = value.get("start", value.get("start_offset"))
        end = value.get("end", value.get("end_offset"))
        label = value.get("label")
        if label is None and isinstance(value.get("labels"), list) and value["labels"]:
            label = value["labels"][0]
    else:
        raise CorpusError(f"{place}cannot read span {quoted(entry)}; expected {{'start', 'end', 'label'}}")
    if not _is_int(start) or not _is_int(end) or not isinstance(label, str) or not label:
        raise CorpusError(f"{place}span {quoted(entry)} needs integer 'start' and 'end' and a 'label'")
    if any(ch.isspace() for ch in label):
        suggestion = quoted("_".join(label.split()))
        raise CorpusError(f"{place}label {quoted(label)} holds whitespace; rename it (e.g. {suggestion})")
    return start, end, label


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no offset


def _span_name(start: int, end: int, label: str) -> str:
    """`0-5 (PER)` for messages; a long label is cut."""
    return f"{quoted(start)}-{quoted(end)} ({label if len(label) <= 80 else quoted(label)})"


def _given_tokens(given: list[dict[str, Any]], text: str, place: str) -> list[tuple[str, int, int]]:
    """(token, start, end) from Prodigy-style tokens, which must lie in the text, in order."""
    triples = []
    previous_end = 0
    for index, token in enumerate(given):
        start, end = token.get("start"), token.get("end")
        if not _is_int(start) or not _is_int(end) or not previous_end <= start < end <= len(text):
            raise CorpusError(
                f"{place}token {index} {quoted(token)} needs integer 'start' and 'end' in order, "
                f"within the text of {len(text)} characters"
            )
        word = token.get("text", text[start:end])
        if not isinstance(word, str) or not word:
            raise CorpusError(f"{place}token {index} {quoted(token)} has a 'text' that is not a non-empty string")
        triples.append((word, start, end))
        previous_end = end
    return triples


def _raw_spans(record: dict[str, Any]) -> list[Any]:
    for key in _SPAN_KEYS:
        if isinstance(record.get(key), list):
            return record[key]
    annotations = record.get("annotations")
    if isinstance(annotations, list) and annotations and isinstance(annotations[0], dict):
        results = annotations[0].get("result", [])
        return [r for r in results if isinstance(r, dict) and "value" in r] if isinstance(results, list) else []
    return []


def _span_sentence(text: str, record: dict[str, Any], place: str) -> Sentence:
    """A sentence of text and character spans; a span with `"uncertain": true` (a silver one,
    `tagshift weak-label` writes them) marks its tokens uncertain."""
    char_spans = []
    uncertain: set[tuple[int, int]] = set()
    for entry in _raw_spans(record):
        start, end, label = _span_fields(entry, place)
        if not 0 <= start < end <= len(text):
            raise CorpusError(
                f"{place}span {_span_name(start, end, label)} lies outside the text of {len(text)} characters"
            )
        if start == 0 and text.startswith("\ufeff"):  # the BOM is no part of an entity
            start = 1
        while start < end and text[start].isspace():  # tools often include a trailing space
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            raise CorpusError(f"{place}span {quoted(entry)} covers only whitespace")
        char_spans.append((start, end, label))
        if isinstance(entry, dict) and entry.get("uncertain") is True:
            uncertain.add((start, end))
    char_spans.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(char_spans, char_spans[1:]):
        if s2 < e1:
            raise CorpusError(
                f"{place}spans {_span_name(s1, e1, l1)} and {_span_name(s2, e2, l2)} overlap; "
                "nested entities are not supported"
            )

    given = record.get("tokens")
    if isinstance(given, list) and given and all(isinstance(t, dict) and "start" in t for t in given):
        triples = _given_tokens(given, text, place)
    else:
        triples = tokenize(text, cuts=[c for s, e, _ in char_spans for c in (s, e)])
    if not triples:
        raise CorpusError(f"{place}text has no tokens")
    starts = {s: i for i, (_, s, _) in enumerate(triples)}
    ends = {e: i for i, (_, _, e) in enumerate(triples)}
    token_spans = []
    for start, end, label in char_spans:
        if start not in starts or end not in ends:
            for edge in (start, end):
                inside = cluster_around(text, edge)
                if inside is not None:  # e.g. between "i" and its combining accent, or in a flag
                    left, right = inside
                    raise CorpusError(
                        f"{place}span {_span_name(start, end, label)} has an edge inside {quoted(text[left:right])}, "
                        f"one character on screen made of {right - left} code points ({left}-{right}); "
                        f"move the edge to {left} or {right}"
                    )
            raise CorpusError(f"{place}span {_span_name(start, end, label)} does not start and end on token edges")
        token_spans.append(Span(starts[start], ends[end] + 1, label))
    tags = encode(token_spans, len(triples), SCHEMES["iob2"])
    flags = None
    if uncertain:
        flags = [False] * len(triples)
        for (start, end, _), span in zip(char_spans, token_spans):
            if (start, end) in uncertain:
                flags[span.start : span.end] = [True] * (span.end - span.start)
    return Sentence(
        [t for t, _, _ in triples], tags, text=text, offsets=[(s, e) for _, s, e in triples], uncertain=flags
    )


def format_jsonl(corpus: Corpus, style: str = "tokens") -> str:
    """JSON lines for `corpus`: style `tokens` ({tokens, tags}) or `spans` (text, offsets, spans)."""
    lines = []
    for sentence in corpus.sentences:
        if style == "tokens":
            record: dict[str, Any] = {"tokens": sentence.tokens, "tags": sentence.tags}
        else:
            record = span_record(sentence)
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def span_record(sentence: Sentence) -> dict[str, Any]:
    """A Prodigy-shaped record: text, tokens with offsets, spans with token indices."""
    if sentence.text is not None and sentence.offsets is not None:
        text, offsets = sentence.text, sentence.offsets
    else:
        text, offsets, cursor = " ".join(sentence.tokens), [], 0
        for token in sentence.tokens:
            offsets.append((cursor, cursor + len(token)))
            cursor += len(token) + 1
    tokens = [
        {"text": token, "start": s, "end": e, "id": i} for i, (token, (s, e)) in enumerate(zip(sentence.tokens, offsets))
    ]
    spans = [
        {
            "start": offsets[span.start][0],
            "end": offsets[span.end - 1][1],
            "label": span.label,
            "token_start": span.start,
            "token_end": span.end - 1,  # Prodigy's token_end is inclusive
            **({"uncertain": True} if sentence.uncertain and all(sentence.uncertain[span.start : span.end]) else {}),
        }
        for span in chunks(sentence.tags)
    ]
    return {"text": text, "tokens": tokens, "spans": spans}
