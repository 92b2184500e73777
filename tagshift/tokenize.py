"""A rule-based tokenizer that keeps each token's character offsets.

Tokens are made of grapheme clusters, the characters people see: a letter with a combining
accent, an emoji with its skin tone or joined by ZWJ, a flag's two regional indicators. An
entity therefore never ends inside "María" (decomposed) or begins with half of "🇫🇷".
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate, pairwise

import regex

_CLUSTER = regex.compile(r"\X")  # one extended grapheme cluster (UAX #29)
_PREPEND = regex.compile(r"\p{Grapheme_Cluster_Break=Prepend}*")
_BOM = "\ufeff"

# The word grammar runs over one symbol per cluster: 'd' a digit, 'w' another word character,
# ' ' whitespace, the joining punctuation as itself, 'x' anything else. Its shape is that of the
# old character pattern, r"\d+(?:[.,:/]\d+)+|\w+(?:[-'’]\w+)*|\S": numbers with separators, words
# with inner hyphens and apostrophes, or any other single cluster.
_TOKEN = re.compile(r"d+(?:[.,:/]d+)+|[dw]+(?:[-'’][dw]+)*|[^ ]")
_JOINERS = frozenset(".,:/-'’")


def _symbol(cluster: str) -> str:
    """The grammar symbol of a cluster, from its base character: the first one after any
    prepended marks (an Arabic number sign belongs to the number it opens). The classes are
    Python's (`str.isalnum` is `re`'s \\w), so text without multi-character clusters splits
    exactly as before."""
    base = cluster[0]
    if len(cluster) > 1:
        base = cluster[_PREPEND.match(cluster).end() :][:1] or base
    if base.isdecimal():
        return "d"
    if base.isalnum() or base == "_":
        return "w"
    if base.isspace():
        return " "
    return base if base in _JOINERS else "x"


def tokenize(text: str, cuts: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    """(token, start, end) triples, offsets into `text`; no token crosses a position in `cuts`.

    `cuts` are entity boundaries: tokenizing with them keeps every entity on token edges. A cut
    inside a grapheme cluster is ignored (no token splits one). A BOM opening the text is neither
    a token nor part of one, and a cluster whose base is whitespace (an accent on a space) is
    left out like whitespace.

    >>> tokenize("Hello, New-York!")
    [('Hello', 0, 5), (',', 5, 6), ('New-York', 7, 15), ('!', 15, 16)]
    >>> [t for t, _, _ in tokenize("AB12", cuts=[2])]
    ['AB', '12']
    >>> tokenize("\\ufeffMari\\u0301a 🇫🇷") == [("Mari\\u0301a", 1, 7), ("🇫🇷", 8, 10)]
    True
    """
    start = 1 if text.startswith(_BOM) else 0
    clusters = _CLUSTER.findall(text, start)
    edges = list(accumulate(map(len, clusters), initial=start))  # cluster i is text[edges[i]:edges[i + 1]]
    symbols = "".join(map(_symbol, clusters))
    stops = {0, len(clusters)}  # cluster indices no token crosses
    for cut in cuts:
        index = bisect_left(edges, cut)
        if index < len(edges) and edges[index] == cut:  # a cut inside a cluster is no edge
            stops.add(index)
    bounds = sorted(stops)
    tokens = []
    for left, right in pairwise(bounds):
        for match in _TOKEN.finditer(symbols, left, right):
            begin, end = edges[match.start()], edges[match.end()]
            tokens.append((text[begin:end], begin, end))
    return tokens


def cluster_around(text: str, offset: int) -> tuple[int, int] | None:
    """(start, end) of the grapheme cluster that `offset` falls strictly inside, if any: an
    offset there would cut one character as people see it in two.

    >>> cluster_around("Mari\\u0301a", 4), cluster_around("Mari\\u0301a", 3)
    ((3, 5), None)
    """
    for match in _CLUSTER.finditer(text):
        if match.end() > offset:
            return (match.start(), match.end()) if match.start() < offset else None
    return None
