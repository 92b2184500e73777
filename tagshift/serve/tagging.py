"""Texts in, entities out: what the server does, without HTTP. Raw text is split into
sentences (`rawtext.split_sentences`) and pre-tokenized text is taken as given; every sentence
of a request is tagged in one batched call, and each text comes back as the record `tagshift
predict --format spans` writes (text, tokens, spans with confidence), offsets into the whole
text, with its tags added."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tagshift.bundle import bundle_size, describe_bundle, model_record
from tagshift.corpus import Corpus, Sentence
from tagshift.corpus.columns import MAX_SENTENCE_TOKENS
from tagshift.errors import TagshiftError, quoted
from tagshift.predict import prediction_records, tags_in
from tagshift.rawtext import split_sentences
from tagshift.schemes import SCHEMES
from tagshift.taggers.spacy_pipeline import SpacyPipeline, is_spacy_source
from tagshift.taggers.tagger import Tagger
from tagshift.tokenize import tokenize


class LimitError(TagshiftError):
    """A request larger than the server takes (HTTP 413): the message names the limit and
    the option that sets it."""


@dataclass(frozen=True)
class Limits:
    """How much one request may ask; the fields are `tagshift serve`'s options of the same
    names (`--max-body-bytes`, ...)."""

    max_body_bytes: int = 1_000_000  # the request body as sent
    max_texts: int = 100  # texts (or token lists) per request
    max_tokens: int = MAX_SENTENCE_TOKENS  # tokens per text, whatever the sentences it splits into

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TagshiftError(f"--{field.name.replace('_', '-')} {value!r}: give a whole number, 1 or more")


@dataclass(frozen=True)
class Document:
    """One text of a request: its text, its sentences (offsets relative to each sentence's
    text, as the raw-text reader gives them) and where each sentence starts in the text."""

    text: str
    sentences: list[Sentence]
    starts: list[int]


def read_documents(kind: str, texts: list[str] | list[list[str]], limits: Limits) -> list[Document]:
    """A request's texts, of `kind` text (one raw text), texts (several) or tokens (lists of
    tokens), as documents; over `limits` is a LimitError naming the text (`texts[3]`)."""
    if len(texts) > limits.max_texts:
        raise LimitError(f"{len(texts):,} texts in one request, more than this server takes ({limits.max_texts:,}, "
                         "tagshift serve --max-texts); send them in several requests")
    read = token_document if kind == "tokens" else text_document
    names = ["text"] if kind == "text" else [f"{kind}[{i}]" for i in range(len(texts))]
    return [read(text, name, limits) for text, name in zip(texts, names)]  # type: ignore[arg-type]


def text_document(text: str, where: str, limits: Limits) -> Document:
    """Raw text as sentences, after checking it against `limits.max_tokens`.

    >>> document = text_document("Hi there! Bye.", "text", Limits())
    >>> [s.tokens for s in document.sentences], document.starts
    ([['Hi', 'there', '!'], ['Bye', '.']], [0, 10])
    """
    _check_unicode(text, where)
    triples = tokenize(text)
    _check_tokens(len(triples), where, limits)
    sentences = split_sentences(text)
    starts, cursor = [], 0
    for sentence in sentences:  # the sentences cut `triples` into consecutive runs
        starts.append(triples[cursor][1])
        cursor += len(sentence)
    return Document(text, sentences, starts)


def token_document(tokens: list[str], where: str, limits: Limits) -> Document:
    """Pre-tokenized text as one sentence; its text is the tokens joined by spaces, as
    `predict --format spans` writes tokens that came without text."""
    _check_tokens(len(tokens), where, limits)
    for index, token in enumerate(tokens):
        _check_unicode(token, f"{where}[{index}]")
        if not token.strip():
            raise TagshiftError(f"{where}[{index}] is {quoted(token)}: a token needs a character that is not whitespace")
    sentences = [Sentence(list(tokens), ["O"] * len(tokens))] if tokens else []
    return Document(" ".join(tokens), sentences, [0] * len(sentences))


def _check_unicode(text: str, where: str) -> None:
    """JSON may escape half a surrogate pair (`"\\ud800"`); no text holds one, nor can the answer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise TagshiftError(f"{where} holds a lone surrogate ({text[err.start]!r} at character {err.start}): "
                            "not Unicode text; escape whole characters, or send them as UTF-8") from None


def _check_tokens(count: int, where: str, limits: Limits) -> None:
    if count > limits.max_tokens:
        raise LimitError(f"{where} has {count:,} tokens, more than this server takes in one text "
                         f"({limits.max_tokens:,}, tagshift serve --max-tokens); split it into shorter texts")


class ServedModel:
    """A loaded model (a tagshift Tagger, or a spaCy pipeline) as the server uses it.

    One prediction runs at a time (`lock`). Neither Hugging Face's fast tokenizers nor spaCy
    promise that one object may be called from several threads at once, and on a CPU torch
    already spreads one call over every core (calls side by side would oversubscribe them),
    so serializing is the safe choice and costs little throughput. The network is put in eval
    mode once, here: a prediction then writes no module state (Tagger.predict_batch)."""

    def __init__(self, model: Tagger | SpacyPipeline, source: str | Path | None = None, batch_size: int = 32):
        if batch_size < 1:
            raise TagshiftError(f"--batch-size {batch_size}: give 1 or more")
        self.model = model
        self.source = str(source) if source is not None else None
        self.batch_size = batch_size
        self.lock = threading.Lock()
        if isinstance(model, Tagger):
            model.network.eval()
        self._record: dict[str, Any] | None = None
        self._reading = threading.Lock()  # not `lock`: reading the record must not hold up predictions

    def predict(self, documents: list[Document], scheme: str | None = None, confidence: bool = True) -> list[dict[str, Any]]:
        """Each document's record: text, tokens (with offsets into the text), tags in `scheme`
        (default: the model's), spans (character offsets into the text, token indices,
        `token_end` inclusive as Prodigy has it, the model's confidence or None)."""
        if scheme is not None and scheme not in SCHEMES:
            raise TagshiftError(f"unknown scheme {quoted(scheme)}; choose one of {', '.join(SCHEMES)}")
        sentences = [s for d in documents for s in d.sentences]
        records: list[dict[str, Any]] = []
        tags: list[list[str]] = []
        if sentences:
            with self.lock:
                tagged = self.model.predict([s.tokens for s in sentences], self.batch_size, progress=False,
                                            confidence=confidence)
            records = prediction_records(Corpus(sentences), tagged, "spans", scheme)
            tags = tags_in(tagged, scheme)
        results, cursor = [], 0
        for document in documents:
            count = len(document.sentences)
            results.append(_document_record(document, records[cursor : cursor + count], tags[cursor : cursor + count]))
            cursor += count
        return results

    def info(self) -> dict[str, Any]:
        """What `tagshift info --json` says of the model (config, lineage, size) and its text,
        where the model is a bundle or Hugging Face classifier; for any model, its types,
        labels and scheme. Read once, on first use."""
        with self._reading:  # two first requests read it once
            if self._record is None:
                self._record = self._read_record()
        return self._record

    def _read_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "source": self.source, "description": self.model.describe(), "scheme": self.model.scheme,
            "types": list(self.model.types), "labels": list(self.model.labels),
            "config": None, "lineage": None, "bytes": None, "text": None,
        }
        if self.source is not None and not is_spacy_source(self.source):
            config, lineage = model_record(self.source, self.model if isinstance(self.model, Tagger) else None)
            record.update(config=config, lineage=lineage, text=describe_bundle(self.source, config, lineage),
                          bytes=bundle_size(self.source) if Path(self.source).is_dir() else None)
        return record


def _document_record(document: Document, records: list[dict[str, Any]], tags: list[list[str]]) -> dict[str, Any]:
    """The sentences' records as one record of the whole text: offsets moved by where each
    sentence starts, token indices by the tokens before it."""
    tokens: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    for start, record in zip(document.starts, records):
        before = len(tokens)
        tokens += [{"text": t["text"], "start": t["start"] + start, "end": t["end"] + start, "id": t["id"] + before}
                   for t in record["tokens"]]
        for span in record["spans"]:
            begin, end = span["start"] + start, span["end"] + start
            spans.append({"start": begin, "end": end, "label": span["label"], "text": document.text[begin:end],
                          "token_start": span["token_start"] + before, "token_end": span["token_end"] + before,
                          "confidence": span["confidence"]})
    return {"text": document.text, "tokens": tokens, "tags": [tag for sentence in tags for tag in sentence],
            "spans": spans}
