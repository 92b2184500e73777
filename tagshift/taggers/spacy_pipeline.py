"""spaCy pipelines with an `ner` as sources that predict: `spacy:PACKAGE` (an installed
pipeline package) or `spacy:DIR`. Their entities become IOB2 tags over the tokens they are
given, so tagshift's scorer, `labels suggest` and `predict` read them as they read a tagger.
A pipeline has no head tagshift can operate on: adapting one is not here yet."""

from __future__ import annotations

from pathlib import Path
import shutil
import tempfile
from typing import Any, Sequence

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.progress import progress_bar
from tagshift.schemes import SCHEMES, Span, encode, label_set
from tagshift.taggers.tagger import Entity, Tagged

SPACY = "spacy:"
# Components the entity recognizer does not need (en_core_web_sm's ner has its own tok2vec)
UNNEEDED = ["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]


def import_spacy(what: str) -> Any:
    """spaCy, or a one-line error naming the extra that brings it."""
    try:
        import spacy
    except ImportError:
        raise TagshiftError(f"{what} need spaCy, the 'spacy' extra: pip install 'tagshift[spacy]'") from None
    return spacy


def is_spacy_source(name: str | Path) -> bool:
    return str(name).startswith(SPACY)


class SpacyPipeline:
    """A spaCy pipeline's entity recognizer, tagging given tokens (spaCy's tokenizer is not used)."""

    scheme = "iob2"

    def __init__(self, name: str | Path, exclude: Sequence[str] = UNNEEDED):
        """`exclude`: components not loaded at all (by default those ner does not need; none
        where the whole pipeline is wanted, to update and save it)."""
        spacy = import_spacy(f"{SPACY}... sources")
        self.name = str(name).removeprefix(SPACY)
        try:
            self.nlp = spacy.load(self.name, exclude=list(exclude))
        except (OSError, ValueError, KeyError) as err:
            raise TagshiftError(f"{name}: spaCy cannot load it ({str(err).splitlines()[0][:200]}); give an installed "
                                "pipeline package or a pipeline directory") from None
        if "ner" not in self.nlp.pipe_names:
            raise TagshiftError(f"{name}: the pipeline has no 'ner' component ({', '.join(self.nlp.pipe_names) or 'none'})")
        self.types = sorted(self.nlp.get_pipe("ner").labels)
        self.labels = label_set(self.types, self.scheme)

    @property
    def unneeded(self) -> list[str]:
        """The loaded components ner does not need: left out when tagging."""
        return [name for name in self.nlp.pipe_names if name in UNNEEDED]

    def describe(self) -> str:
        meta = self.nlp.meta
        return f"spaCy pipeline {meta.get('lang')}_{meta.get('name')} {meta.get('version')}, {len(self.types)} types"

    def predict(self, sentences: Sequence[list[str]], batch_size: int = 32, progress: bool = False,
                confidence: bool = True) -> list[Tagged]:
        """The pipeline's entities over each token list, as tags; spaCy's ner gives no
        confidences, so none are given."""
        from spacy.tokens import Doc

        docs = (Doc(self.nlp.vocab, words=list(words)) for words in sentences)
        tagged = []
        for doc in progress_bar(self.nlp.pipe(docs, batch_size=batch_size, disable=self.unneeded), "tagging",
                                enabled=progress, total=len(sentences)):
            spans = [Span(e.start, e.end, e.label_) for e in doc.ents]
            tags = encode(spans, len(doc), SCHEMES[self.scheme])
            tagged.append(Tagged([t.text for t in doc], tags, [Entity(s.start, s.end, s.label, None) for s in spans]))
        return tagged

    def predict_corpus(self, corpus: Corpus, batch_size: int = 32, progress: bool = False) -> Corpus:
        tagged = self.predict([s.tokens for s in corpus.sentences], batch_size, progress, confidence=False)
        return corpus.with_sentences([s.with_tags(t.tags) for s, t in zip(corpus.sentences, tagged)])


def write_pipeline(nlp: Any, out: Path) -> None:
    """`nlp.to_disk` at `out`, written beside it and renamed into place: never half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".saving", dir=out.parent))
    try:
        nlp.to_disk(tmp / "pipeline")
        if out.exists():
            shutil.rmtree(out)
        (tmp / "pipeline").rename(out)
    except OSError as err:
        raise TagshiftError(f"{out}: the pipeline could not be written ({err.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
