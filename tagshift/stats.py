"""Corpus statistics: what a file holds, which scheme it uses, what needs repair."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tagshift.convert import find_repairs
from tagshift.corpus import Corpus
from tagshift.schemes import SchemeGuess, chunks, detect_scheme


@dataclass(frozen=True)
class CorpusStats:
    sentences: int
    tokens: int
    documents: int
    entities: dict[str, int]  # entities (conlleval reading) per type, most frequent first
    scheme: SchemeGuess
    repairs: int  # entities whose tags are invalid in the detected scheme

    def to_json(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "documents": self.documents,
            "entities": self.entities,
            "scheme": self.scheme.scheme,
            "scheme_confidence": round(self.scheme.confidence, 6),
            "repairs": self.repairs,
        }

    def render(self, name: str) -> str:
        width = max([len(t) for t in self.entities] + [6])
        lines = [
            f"{name}",
            f"  sentences  {self.sentences}",
            f"  tokens     {self.tokens}",
            f"  documents  {self.documents}",
            f"  scheme     {self.scheme.describe()}",
            f"  repairs    {self.repairs} invalid entities would be repaired (conlleval reading)",
            f"  entities   {sum(self.entities.values())}",
        ]
        lines += [f"    {label:<{width}} {count:>7}" for label, count in self.entities.items()]
        return "\n".join(lines)


def corpus_stats(corpus: Corpus) -> CorpusStats:
    counts = Counter(span.label for s in corpus.sentences for span in chunks(s.tags))
    guess = detect_scheme(corpus.tag_sequences)
    return CorpusStats(
        sentences=len(corpus),
        tokens=sum(len(s) for s in corpus.sentences),
        documents=corpus.documents,
        entities=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        scheme=guess,
        repairs=len(find_repairs(corpus, guess.scheme)),
    )
