"""Word-level features shared by both backends: digit normalisation and word shape (casing)."""

from __future__ import annotations

import re
from functools import lru_cache

_DIGIT = re.compile(r"\d")

SHAPES = ("<pad>", "lower", "title", "upper", "mixed", "digits", "has_digit", "other")


def normalise_digits(word: str) -> str:
    """Every digit becomes 0, so that numbers share their embeddings.

    >>> normalise_digits("12.5%")
    '00.0%'
    """
    return _DIGIT.sub("0", word)


@lru_cache(maxsize=1 << 17)  # featurize asks for every token of every batch, every epoch
def word_shape(word: str) -> int:
    """Index in `SHAPES` of the word's casing class: what an uncased encoder cannot see.

    >>> [SHAPES[word_shape(w)] for w in ["paris", "Paris", "EU", "iPhone", "1996", "F-16", ","]]
    ['lower', 'title', 'upper', 'mixed', 'digits', 'has_digit', 'other']
    """
    if word.isdigit():
        return SHAPES.index("digits")
    if any(c.isdigit() for c in word):
        return SHAPES.index("has_digit")
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return SHAPES.index("other")
    if all(c.islower() for c in letters):
        return SHAPES.index("lower")
    if all(c.isupper() for c in letters):
        return SHAPES.index("upper")
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return SHAPES.index("title")
    return SHAPES.index("mixed")
