"""Word vectors for the BiLSTM-CRF trained on raw domain text (word2vec, gensim's trainer)
and merged with pretrained ones: the domain's vectors are mapped into the pretrained space
by a linear map fitted on the words both know (least squares), so a word only the domain
text has gets a vector beside the pretrained words it is used like. The result is a
word2vec text file that `--vectors FILE` reads."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

from tagshift.errors import TagshiftError
from tagshift.rawtext import RawReport, read_raw
from tagshift.taggers.vectors import Vectors

HOLDOUT = 10  # every 10th shared word is held out to measure how well the map fits


@dataclass
class DomainVectors:
    words: list[str]  # the domain text's vocabulary (lower-cased), most frequent first
    matrix: Tensor  # (words, dim), in the pretrained space once merged
    report: RawReport
    shared: int = 0  # words the pretrained vectors know too (the map is fitted on them)
    new: int = 0  # words only the domain text has
    fit_cosine: float | None = None  # mean cosine of mapped and pretrained vectors on held-out shared words

    def render(self) -> str:
        line = f"domain vectors: {len(self.words)} words of {self.matrix.shape[1]} dimensions"
        if self.fit_cosine is not None:
            line += (f"; {self.shared} shared with the pretrained vectors (a linear map fitted on them: mean cosine "
                     f"{self.fit_cosine:.2f} on held-out shared words), {self.new} new")
        return line


class _Sentences:
    """RAW's sentences, lower-cased tokens, re-read on every pass (gensim makes several)."""

    def __init__(self, raw: Path, report: RawReport):
        self.raw, self.report, self.passes = raw, report, 0

    def __iter__(self) -> Iterator[list[str]]:
        report = self.report if self.passes == 0 else RawReport()  # count the text once
        self.passes += 1
        for _, sentence in read_raw(self.raw, report):
            yield [token.lower() for token in sentence.tokens]


def _stable_hash(text: str) -> int:
    """gensim seeds each word's first vector with a hash of it: Python's own changes from
    run to run (PYTHONHASHSEED), this one does not."""
    return zlib.crc32(text.encode("utf-8"))


def train_domain_vectors(raw: Path, dim: int = 100, epochs: int = 5, min_count: int = 3, window: int = 5,
                         seed: int = 0) -> DomainVectors:
    """word2vec (skip-gram with negative sampling) on RAW's lower-cased tokens; one worker
    thread, so the same seed gives the same vectors."""
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise TagshiftError("training word vectors needs gensim, the 'vectors' extra: pip install 'tagshift[vectors]'") from None
    report = RawReport()
    sentences = _Sentences(raw, report)
    model = Word2Vec(vector_size=dim, window=window, min_count=min_count, sg=1, epochs=epochs, seed=seed, workers=1,
                     hashfxn=_stable_hash)
    model.build_vocab(sentences)
    words = list(model.wv.index_to_key)
    if not words:
        raise TagshiftError(f"{raw}: no word occurs {min_count} times or more; lower --min-count or give more text")
    model.train(sentences, total_examples=model.corpus_count, epochs=epochs)
    return DomainVectors(words, torch.from_numpy(model.wv.vectors.copy()), report)


def merge(domain: DomainVectors, base: Vectors) -> DomainVectors:
    """`domain` mapped into `base`'s space: a least-squares linear map from the domain vectors
    of the words both know to their pretrained vectors, fitted on all but every HOLDOUT-th of
    them (on which the fit is measured), then applied to every domain word."""
    shared = [i for i, w in enumerate(domain.words) if w in base.table]
    if len(shared) < 2 * domain.matrix.shape[1]:
        raise TagshiftError(f"only {len(shared)} words of the domain text have pretrained vectors in {base.source}; "
                            f"fitting a map of {domain.matrix.shape[1]} dimensions needs {2 * domain.matrix.shape[1]}: "
                            "give more text, or train without --base")
    fit = [i for n, i in enumerate(shared) if n % HOLDOUT]
    held = [i for n, i in enumerate(shared) if not n % HOLDOUT]

    def pretrained(rows: list[int]) -> Tensor:
        return torch.stack([base.table[domain.words[i]].float() for i in rows])

    source = domain.matrix.double()
    mapping = torch.linalg.lstsq(source[fit], pretrained(fit).double()).solution
    mapped = (source @ mapping).float()
    cosine = torch.nn.functional.cosine_similarity(mapped[held], pretrained(held), dim=1).mean().item()
    return DomainVectors(domain.words, mapped, domain.report, len(shared), len(domain.words) - len(shared), cosine)


def write_vectors(handle: TextIO, domain: DomainVectors, base: Vectors | None = None, base_words: int = 50_000) -> int:
    """A word2vec text file: with `base`, its `base_words` most frequent words and every
    domain word, each with its pretrained vector where it has one, else its mapped domain
    vector; without, the domain vectors. Returns the number of words written."""
    rows: dict[str, Any] = {}
    if base is not None:
        for word in base.common_words(base_words):
            rows[word] = base.table[word]
    for word, vector in zip(domain.words, domain.matrix):
        if base is None or word not in base.table:
            rows.setdefault(word, vector)
        else:
            rows.setdefault(word, base.table[word])
    rows = {w: v for w, v in rows.items() if w and not any(c.isspace() for c in w)}  # a text file cannot hold them
    dim = domain.matrix.shape[1] if base is None else base.dim
    handle.write(f"{len(rows)} {dim}\n")
    for word, vector in rows.items():
        handle.write(word + " " + " ".join(f"{v:.5f}" for v in vector.tolist()) + "\n")
    return len(rows)
