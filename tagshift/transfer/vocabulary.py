"""Growing a BiLSTM-CRF's vocabularies with the target domain's words and characters.

A source model reads every word it never saw in training as UNK; in a new domain that can
be most of the words that matter. Adapt adds the target's frequent words (and any with a
pretrained vector) and its new characters as new embedding rows, the old rows untouched:

- `quiet`: a new row starts as a copy of the UNK row (the word was read as UNK until now),
  so the untrained model predicts exactly what the source did; training then moves each
  word's row on its own.
- `normal`: a new word starts from its pretrained vector, if the model's vectors have one,
  else from N(mean, std) of the existing rows; a new character from N(mean, std).
- frozen vectors (`freeze_vectors`): only words with a pretrained vector are added, as
  that vector, whatever the init: a frozen copy of UNK or a frozen random row would never
  become the word.

Transformers need none of this: their tokenizers read any word as pieces.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tagshift.corpus import Corpus
from tagshift.taggers.tagger import Tagger
from tagshift.taggers.vocab import UNK, Vocab, word_key, word_lookup


@dataclass
class VocabularyReport:
    """What the vocabularies gained, and how many target tokens are still unknown."""

    words_added: int
    from_vectors: int  # new rows that are the word's pretrained vector
    from_unk: int  # new rows that are copies of UNK's row
    chars_added: int
    unknown_before: float  # share of the target's tokens read as UNK
    unknown_after: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        drawn = self.words_added - self.from_vectors - self.from_unk
        starts = [f"{n} {what}" for n, what in ((self.from_unk, "as UNK's row"), (self.from_vectors, "from the word vectors"),
                                                (drawn, "drawn from the rows' statistics")) if n]
        return (
            f"vocabulary: {self.words_added} target words added ({', '.join(starts) or 'none'}), "
            f"{self.chars_added} new characters; unknown target tokens "
            f"{100 * self.unknown_before:.1f}% -> {100 * self.unknown_after:.1f}%" + (f" ({self.note})" if self.note else "")
        )


def _grow(embedding: nn.Embedding, rows: torch.Tensor) -> nn.Embedding:
    """The embedding with `rows` appended; the old rows bit for bit, trainability kept."""
    grown = nn.Embedding(embedding.num_embeddings + rows.size(0), embedding.embedding_dim, padding_idx=embedding.padding_idx)
    with torch.no_grad():
        grown.weight.copy_(torch.cat([embedding.weight.detach(), rows.to(embedding.weight)]))
    grown.weight.requires_grad_(embedding.weight.requires_grad)
    return grown.to(embedding.weight.device)


def _drawn(weight: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` rows drawn from N(mean, std) of the rows of `weight` past padding and UNK."""
    known = weight.detach()[2:]
    return torch.randn(count, weight.size(1), generator=generator) * float(known.std()) + float(known.mean())


def unknown_share(tagger: Tagger, corpus: Corpus) -> float:
    tokens = [t for s in corpus.sentences for t in s.tokens]
    return sum(word_lookup(tagger.encoder.words, t) == 1 for t in tokens) / max(1, len(tokens))


def extend_vocabulary(tagger: Tagger, corpus: Corpus, init: str = "quiet", seed: int = 0) -> VocabularyReport | None:
    """Add `corpus`'s words (seen at least `min_count` times, or covered by the model's
    vectors under `normal`) and characters to a BiLSTM-CRF, in place. New rows are drawn
    under init `normal` and start as UNK's under any other (`quiet`, `related`: a related
    type is the head's matter). None for transformers."""
    if not tagger.backend.grows_vocabulary:
        return None
    encoder, config = tagger.encoder, tagger.config
    generator = torch.Generator().manual_seed(seed)
    before = unknown_share(tagger, corpus)
    weight = encoder.word_embedding.weight
    frozen = not weight.requires_grad  # a frozen row never moves: only a real vector is worth adding
    vectors, note = None, ""
    if (init == "normal" or frozen) and config.vectors:
        from tagshift.errors import TagshiftError
        from tagshift.taggers.vectors import load_vectors

        try:
            vectors = load_vectors(config.vectors)
        except TagshiftError as err:
            note = f"the model's word vectors could not be read, so none were used: {err}"
    counts = Counter(word_key(t) for s in corpus.sentences for t in s.tokens)
    new_words = [
        w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if word_lookup(encoder.words, w) == 1 and (n >= config.min_count or (vectors is not None and vectors.get(w) is not None))
    ]
    if frozen:
        new_words = [w for w in new_words if vectors is not None and vectors.get(w) is not None]
    if init != "normal" and not frozen:
        rows = weight.detach()[encoder.words.index(UNK)].expand(len(new_words), -1).clone()
        from_vectors, from_unk = 0, len(new_words)
    else:
        rows = _drawn(weight, len(new_words), generator)
        from_vectors, from_unk = 0, 0
        for i, word in enumerate(new_words):
            vector = vectors.get(word) if vectors is not None else None
            if vector is not None:
                rows[i] = vector
                from_vectors += 1
    encoder.word_embedding = _grow(encoder.word_embedding, rows)
    encoder.words = Vocab((*encoder.words.symbols, *new_words))

    new_chars = sorted({c for s in corpus.sentences for t in s.tokens for c in t} - set(encoder.chars.symbols))
    characters = encoder.char_encoder.embedding
    char_rows = (
        characters.weight.detach()[1].expand(len(new_chars), -1).clone()
        if init != "normal" else _drawn(characters.weight, len(new_chars), generator)
    )
    encoder.char_encoder.embedding = _grow(characters, char_rows)
    encoder.chars = Vocab((*encoder.chars.symbols, *new_chars))
    return VocabularyReport(len(new_words), from_vectors, from_unk, len(new_chars), before,
                            unknown_share(tagger, corpus), note)
