"""A terminology list grown from a few seed terms with word vectors: candidates ranked by
cosine similarity to the seeds' mean direction, words from the vectors' vocabulary and, with
raw text, the words and multi-word phrases that occur in it (a phrase's vector is the mean
of its words'). The list is a file a person edits: a term a line, its score and its count in
the raw text; `tagshift patterns` reads its first column."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor

from tagshift.errors import TagshiftError, where
from tagshift.taggers.vectors import Vectors
from tagshift.rawtext import text_lines
from tagshift.tokenize import tokenize

MAX_WORDS = 100_000  # the vocabulary's most frequent words ranked (rarer ones are mostly noise)
MAX_PHRASE = 3  # words in a multi-word candidate from raw text
MIN_COUNT = 2  # occurrences in raw text a phrase needs to be a candidate
# Function words, which neither begin nor end a candidate phrase, and are no candidate alone
STOPWORDS = frozenset("""
a an the and or but nor of in on at to for from by with without into onto over under about as than then
is are was were be been being has have had do does did not no yes this that these those it its it's he she
they them their his her we our you your i me my mine which who whom whose what when where why how all any
both each few more most other some such only own same so too very can will just should now also may might
must would could there here after before during while because if unless until up down out off again further
once per via et al vs
""".split())


@dataclass
class Term:
    text: str
    score: float  # cosine similarity to the seeds' mean direction
    count: int = 0  # occurrences in the raw text (0 without it, or for a vocabulary word it lacks)


@dataclass
class TermList:
    seeds: list[str]
    missing: list[str]  # seeds the vectors lack (none of their words has a vector)
    terms: list[Term]
    vectors: str
    corpus: str | None = None
    phrases: int = 0  # multi-word candidates the raw text gave
    rejected: list[str] = field(default_factory=list)  # by a person, with --interactive
    # a multi-word seed's words the vectors lack, where its other words rank it
    partly_missing: dict[str, list[str]] = field(default_factory=dict)

    def text(self) -> str:
        """The editable file."""
        lines = [f"# tagshift terms: seeds {', '.join(self.seeds)}; vectors {self.vectors}"
                 + (f"; corpus {self.corpus}" if self.corpus else ""),
                 "# a term a line, then its similarity to the seeds and its count in the corpus; delete the lines "
                 "you reject (tagshift patterns reads the first column; lines starting with # are left out)"]
        lines += [f"# seed missing from the vectors, kept: {seed}" for seed in self.missing]
        lines += [f"# seed ranked without its words {', '.join(words)}, which the vectors lack: {seed}"
                  for seed, words in self.partly_missing.items()]
        lines += [f"{seed}\tseed" for seed in self.seeds]
        lines += [f"{t.text}\t{t.score:.4f}\t{t.count}" for t in self.terms]
        lines += [f"# rejected: {text}" for text in self.rejected]
        return "\n".join(lines) + "\n"


def vector_of(words: list[str], vectors: Vectors, every: bool = False) -> Tensor | None:
    """A term's vector: the mean of its words' (None when none of them has one, or with
    `every`, when one of them has none)."""
    found = [v for v in map(vectors.get, words) if v is not None]
    if not found or (every and len(found) < len(words)):
        return None
    return torch.stack(found).mean(dim=0)


def phrases(sentences: Iterable[list[str]], max_words: int = MAX_PHRASE, limit: int = 2_000_000) -> Counter[str]:
    """Words and multi-word phrases of raw text with their counts: runs of 1 to `max_words`
    word tokens that neither begin nor end with a function word, lower-cased. Memory stays
    bounded on text of any size: when `limit` distinct phrases are held, those seen once so
    far are let go (a phrase frequent enough to matter comes back)."""
    counts: Counter[str] = Counter()
    for tokens in sentences:
        if len(counts) > limit:
            counts = Counter({k: c for k, c in counts.items() if c > 1})
        words = [t.lower() for t in tokens]
        for start, first in enumerate(words):
            if first in STOPWORDS or not _wordlike(first):
                continue
            for end in range(start + 1, min(start + max_words, len(words)) + 1):
                last = words[end - 1]
                if not _wordlike(last):
                    break
                if last not in STOPWORDS:
                    counts[" ".join(words[start:end])] += 1
    return counts


def _wordlike(token: str) -> bool:
    """A token with a letter in it (not punctuation or a bare number)."""
    return any(c.isalpha() for c in token)


def rank_terms(
    seeds: list[str],
    vectors: Vectors,
    n: int = 200,
    corpus_counts: Counter[str] | None = None,
    corpus: str | None = None,
    max_words: int = MAX_WORDS,
) -> TermList:
    """The `n` candidates most similar to the seeds, from the vectors' `max_words` most
    frequent words and, with `corpus_counts`, the raw text's words and phrases."""
    seeds = list(dict.fromkeys(s.strip() for s in seeds if s.strip()))
    if not seeds:
        raise TagshiftError("give at least one seed term")
    words_of = {seed: [w for w, _, _ in tokenize(seed)] for seed in seeds}
    found = {seed: vector_of(words, vectors) for seed, words in words_of.items()}
    missing = [seed for seed, vector in found.items() if vector is None]
    partly = {seed: lacking for seed, words in words_of.items() if found[seed] is not None
              and (lacking := [w for w in words if vectors.get(w) is None])}
    known = [v for v in found.values() if v is not None]
    if not known:
        raise TagshiftError(f"none of the seeds has a vector in {vectors.source}: {', '.join(missing)}; "
                            "check their spelling or give other vectors")
    query = torch.nn.functional.normalize(torch.stack([_unit(v) for v in known]).mean(dim=0), dim=0)
    taken = {seed.lower() for seed in seeds}
    words, matrix = vectors.matrix(max_words)
    scores = torch.nn.functional.normalize(matrix, dim=1) @ query if words else torch.zeros(0)
    best: dict[str, Term] = {}
    counts = corpus_counts or Counter()
    for index in torch.argsort(scores, descending=True).tolist():
        word = words[index]
        key = word.lower()
        if key in taken or key in best or key in STOPWORDS or not _wordlike(word):
            continue
        best[key] = Term(word, float(scores[index]), counts.get(key, 0))
        if len(best) >= n:
            break
    phrase_count = 0
    for text, count in counts.items():
        if count < MIN_COUNT or text in taken or text in best:
            continue
        vector = vector_of(text.split(" "), vectors, every=True)
        if vector is None:
            continue
        phrase_count += " " in text
        best[text] = Term(text, float(_unit(vector) @ query), count)
    ranked = sorted(best.values(), key=lambda t: (-t.score, t.text))[:n]
    return TermList(seeds, missing, ranked, vectors.source, corpus, phrase_count, partly_missing=partly)


def _unit(vector: Tensor) -> Tensor:
    return torch.nn.functional.normalize(vector.float(), dim=0)


def review(terms: TermList, ask: Callable[[Term, int, int], str]) -> TermList:
    """A person's pass over the candidates: `ask` answers y (keep), n (reject) or q (stop;
    the candidates not yet seen are left out)."""
    kept: list[Term] = []
    rejected: list[str] = []
    for number, term in enumerate(terms.terms, start=1):
        answer = ask(term, number, len(terms.terms)).strip().lower()[:1]
        if answer == "q":
            break
        (kept.append(term) if answer == "y" else rejected.append(term.text))
    return TermList(terms.seeds, terms.missing, kept, terms.vectors, terms.corpus, terms.phrases, rejected,
                    terms.partly_missing)


def read_terms(path: Path) -> list[str]:
    """The terms of a terms file (its first column; comments and blank lines left out)."""
    terms = []
    for number, line in text_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        term = line.split("\t")[0].strip()
        if not tokenize(term):
            raise TagshiftError(f"{where(path, number)}no term before the first tab")
        terms.append(term)
    if not terms:
        raise TagshiftError(f"{path}: no terms (a term a line; lines starting with # are comments)")
    return list(dict.fromkeys(terms))
