"""tagshift models inside spaCy: the `tagshift_ner` pipeline component, registered through
the `spacy_factories` entry point, and `export_pipeline`, which writes a directory that
`spacy.load` reads.

    nlp.add_pipe("tagshift_ner", config={"model": "models/ner"})

The component tags each doc's tokens with the model and sets `doc.ents` (so displaCy and the
rest of a pipeline see them), each entity's confidence in `span._.tagshift_confidence`.
Saved with the pipeline (`nlp.to_disk`), it copies its bundle into the pipeline directory and
loads it back from there, so an exported pipeline does not depend on the model's old path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from tagshift.bundle import load, save
from tagshift.errors import TagshiftError
from tagshift.taggers.spacy_pipeline import import_spacy, write_pipeline
from tagshift.taggers.tagger import Tagger

FACTORY = "tagshift_ner"
CONFIDENCE = "tagshift_confidence"  # the Span extension holding an entity's confidence


class TagshiftNER:
    """A spaCy component that sets `doc.ents` from a tagshift model."""

    def __init__(self, name: str, model: str | None, batch_size: int):
        from spacy.tokens import Span

        if not Span.has_extension(CONFIDENCE):
            Span.set_extension(CONFIDENCE, default=None)
        self.name, self.model, self.batch_size = name, model, batch_size
        self._tagger: Tagger | None = None

    @property
    def tagger(self) -> Tagger:
        """The model, loaded on first use: a pipeline read from disk loads its own copy
        (`from_disk`) instead of the path its config was made with."""
        if self._tagger is None:
            if not self.model:
                raise TagshiftError(f"{self.name}: no model; give config={{'model': PATH}} to add_pipe")
            self._tagger = load(self.model)
        return self._tagger

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's types; empty until it is loaded (spaCy asks while it reads a pipeline's
        meta, before `from_disk` has loaded the copy)."""
        return tuple(self._tagger.types) if self._tagger is not None else ()

    def __call__(self, doc: Any) -> Any:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Any], batch_size: int | None = None) -> Iterator[Any]:
        size = batch_size or self.batch_size
        batch: list[Any] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == size:
                yield from self._tag(batch)
                batch = []
        yield from self._tag(batch)

    def _tag(self, docs: list[Any]) -> list[Any]:
        """Whitespace tokens (spaCy keeps runs of spaces and newlines as tokens) are not
        words to tag: the model sees the others, and entities map back to doc indices."""
        from spacy.tokens import Span

        kept = [[t.i for t in doc if not t.is_space] for doc in docs]
        todo = [(doc, index) for doc, index in zip(docs, kept) if index]
        tagged = self.tagger.predict([[doc[i].text for i in index] for doc, index in todo], self.batch_size)
        for (doc, index), result in zip(todo, tagged):
            spans = []
            for entity in result.entities:
                span = Span(doc, index[entity.start], index[entity.end - 1] + 1, label=entity.label)
                span._.set(CONFIDENCE, entity.confidence)
                spans.append(span)
            doc.ents = spans
        return docs

    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        save(self.tagger, path)

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> TagshiftNER:
        self._tagger = load(path)
        return self


def make_tagshift_ner(nlp: Any, name: str, model: str | None, batch_size: int) -> TagshiftNER:
    """The `tagshift_ner` factory (spaCy calls it; the entry point names it)."""
    return TagshiftNER(name, model, batch_size)


def register() -> Any:
    """Register the factory with spaCy (done on import, which the entry point triggers)."""
    from spacy.language import Language

    if not Language.has_factory(FACTORY):
        Language.factory(FACTORY, default_config={"model": None, "batch_size": 32})(make_tagshift_ner)
    return make_tagshift_ner


def export_pipeline(model: str | Path, out: str | Path, lang: str = "en") -> None:
    """A spaCy pipeline directory at `out`: spaCy's blank `lang` tokenizer, then
    `tagshift_ner` with a copy of the model; its meta records the model's lineage. Written
    beside `out` and renamed into place: a crash leaves no half pipeline."""
    spacy = import_spacy("spaCy pipelines")
    register()
    out = Path(out)
    tagger = load(model)  # refused here, before anything is written, if it is no model
    nlp = spacy.blank(lang)
    component = nlp.add_pipe(FACTORY, config={"model": str(model)})  # (the pipeline loads its own copy)
    component._tagger = tagger
    nlp.meta["name"] = f"tagshift_{out.name}".replace("-", "_")
    nlp.meta["description"] = f"tagshift model {model}: {tagger.describe()}"
    nlp.meta["labels"] = {FACTORY: list(tagger.types)}
    nlp.meta["tagshift"] = {"source": str(model), "lineage": json.loads(json.dumps(tagger.lineage))}
    write_pipeline(nlp, out)


try:  # spaCy is an optional dependency: the module imports without it
    register()
except ImportError:
    pass
