"""What a corpus holds once read: sentences of tokens and tags, document boundaries, layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from tagshift.schemes import Span, chunks


@dataclass
class Sentence:
    """One sentence: tokens, one tag per token, and whatever else the source carried.

    `extra` holds the other columns of a column file (POS, chunk) per token, in file order.
    `text` and `offsets` hold the original text and each token's character span, when the
    sentence came from character-span JSON or raw text.
    """

    tokens: list[str]
    tags: list[str]
    extra: list[tuple[str, ...]] = field(default_factory=list)
    line: int | None = None  # where the sentence starts in its source (1-based)
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    # per token, True inside a span marked uncertain (silver data): trained as "this tag or O"
    uncertain: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def spans(self) -> list[Span]:
        """Entities as conlleval reads the tags."""
        return chunks(self.tags)

    def with_tags(self, tags: list[str]) -> Sentence:
        """The same sentence with other tags (one per token)."""
        if len(tags) != len(self.tokens):
            raise ValueError(f"{len(tags)} tags for {len(self.tokens)} tokens")
        return Sentence(self.tokens, tags, self.extra, self.line, self.text, self.offsets, self.uncertain)


@dataclass(frozen=True)
class ColumnLayout:
    """How a column file is laid out, so that writing it back gives the same bytes."""

    columns: int = 2
    token_col: int = 0
    tag_col: int = 1
    delimiter: str = "\t"
    newline: str = "\n"
    bom: bool = False
    ending: str = "\n"  # what follows the last token line: "\n", "\n\n", "" ...


@dataclass(frozen=True)
class DocStart:
    """A `-DOCSTART-` line: a document boundary before sentence `before`, kept verbatim."""

    before: int
    line: str


@dataclass
class Corpus:
    """Sentences read from one file, with the file's document boundaries and layout."""

    sentences: list[Sentence]
    path: str | None = None
    doc_starts: list[DocStart] = field(default_factory=list)
    layout: ColumnLayout | None = None  # None when the source was not a column file

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def tag_sequences(self) -> list[list[str]]:
        return [s.tags for s in self.sentences]

    @property
    def documents(self) -> int:
        """Documents marked by `-DOCSTART-`; a file without markers is one document."""
        if self.doc_starts:
            return len(self.doc_starts)
        return 1 if self.sentences else 0

    def location(self, index: int) -> str:
        """`file:line` of sentence `index`, for messages."""
        line = self.sentences[index].line
        return f"{self.path}:{line}" if line is not None else f"{self.path}: sentence {index + 1}"

    def with_sentences(self, sentences: list[Sentence]) -> Corpus:
        """The same file's structure holding other sentences (one for one)."""
        if len(sentences) != len(self.sentences):
            raise ValueError(f"{len(sentences)} sentences replace {len(self.sentences)}")
        return Corpus(sentences, self.path, self.doc_starts, self.layout)
