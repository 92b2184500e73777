"""A rule-based tokenizer that keeps each token's character offsets."""

from __future__ import annotations

import re
from typing import Iterable

# Words (with inner hyphens and apostrophes), numbers with separators, URLs-ish runs, or any
# other single non-space character.
_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)+|\w+(?:[-'’]\w+)*|\S", re.UNICODE)


def tokenize(text: str, cuts: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    """(token, start, end) triples; no token crosses a position in `cuts`.

    `cuts` are entity boundaries: tokenizing with them keeps every entity on token edges.

    >>> tokenize("Hello, New-York!")
    [('Hello', 0, 5), (',', 5, 6), ('New-York', 7, 15), ('!', 15, 16)]
    >>> [t for t, _, _ in tokenize("AB12", cuts=[2])]
    ['AB', '12']
    """
    bounds = sorted({0, len(text), *(c for c in cuts if 0 < c < len(text))})
    tokens = []
    for left, right in zip(bounds, bounds[1:]):
        for match in _TOKEN.finditer(text, left, right):
            tokens.append((match.group(), match.start(), match.end()))
    return tokens
