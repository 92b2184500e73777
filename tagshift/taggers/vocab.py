"""Word and character vocabularies of the BiLSTM-CRF, stored in the bundle as JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tagshift.errors import BundleError
from tagshift.taggers.words import normalise_digits

PAD, UNK = "<pad>", "<unk>"
_FIX = "the file was edited or damaged: restore it or re-save the model"


@dataclass(frozen=True)
class Vocab:
    """Symbols in index order; index 0 is padding, 1 is unknown."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.symbols[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {self.symbols[:2]}")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index  # type: ignore[attr-defined]

    def index(self, symbol: str) -> int:
        return self._index.get(symbol, 1)  # type: ignore[attr-defined]

    @classmethod
    def build(cls, symbols: Iterable[str]) -> Vocab:
        """A vocabulary of `symbols` in first-seen order (duplicates dropped)."""
        return cls((PAD, UNK, *dict.fromkeys(s for s in symbols if s not in (PAD, UNK))))


def word_key(word: str) -> str:
    """The form a word is looked up by: digits normalised, case kept (characters and the
    casing feature see case; vectors fall back to lowercase)."""
    return normalise_digits(word)


def word_lookup(vocab: Vocab, word: str) -> int:
    """Index of a word, trying its lowercase form before giving up to UNK."""
    key = word_key(word)
    if key in vocab:
        return vocab.index(key)
    return vocab.index(key.lower())


def build_vocabs(
    sentences: Iterable[list[str]], min_count: int = 2, covered: Iterable[str] = ()
) -> tuple[Vocab, Vocab]:
    """Words seen at least `min_count` times in training, plus words that have a pretrained
    vector (`covered`); and every character seen in training.

    >>> words, chars = build_vocabs([["EU", "rejects"], ["EU", "calls", "1996"]])
    >>> words.symbols, len(chars)
    (('<pad>', '<unk>', 'EU'), 15)
    """
    counts: Counter[str] = Counter()
    characters: Counter[str] = Counter()
    for tokens in sentences:
        for token in tokens:
            counts[word_key(token)] += 1
            characters.update(token)
    frequent = [w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_count]
    return Vocab.build([*frequent, *covered]), Vocab.build(sorted(characters))


def vocab_to_json(words: Vocab, chars: Vocab) -> dict[str, Any]:
    return {"words": list(words.symbols), "chars": list(chars.symbols)}


def vocab_from_json(data: Any, source: str | Path = "vocab.json") -> tuple[Vocab, Vocab]:
    """The vocabularies `vocab_to_json` wrote, read from `source` (named in errors)."""
    _check_vocab_fields(data, source)
    return Vocab(tuple(data["words"])), Vocab(tuple(data["chars"]))


def _check_vocab_fields(data: Any, source: str | Path) -> None:
    """Each vocabulary a list of distinct strings from PAD and UNK on: the embedding rows
    follow its order, so a damaged one must not load as another mapping of words to rows."""
    if not isinstance(data, dict):
        raise BundleError(f"{source}: holds {_shown(data)}; expected an object with 'words' and 'chars' lists: {_FIX}")
    for key in ("words", "chars"):
        symbols = data.get(key)
        ok = isinstance(symbols, list) and all(isinstance(s, str) for s in symbols) and symbols[:2] == [PAD, UNK]
        if not ok:
            found = f"is {_shown(symbols)}" if key in data else "is missing"
            raise BundleError(f"{source}: field '{key}' {found}; expected a list of strings starting with "
                              f"{PAD!r}, {UNK!r}: {_FIX}")
        seen: set[str] = set()
        for symbol in symbols:
            if symbol in seen:
                raise BundleError(f"{source}: field '{key}' lists {_shown(symbol)} twice: {_FIX}")
            seen.add(symbol)


def _shown(value: Any) -> str:
    """A value for a one-line message ('a string' in quotes, else as JSON), cut short."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
