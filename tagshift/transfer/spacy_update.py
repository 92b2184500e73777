"""Adapting a spaCy pipeline and getting a spaCy pipeline back: its `ner` learns the target
data's new types through spaCy's own training API (`add_label`, `resume_training`,
`nlp.update`) while every other component is kept as it was, and the old types are kept by
pseudo-rehearsal: the source's own entities written into the target data wherever it leaves
them O, plus raw text the source annotates (`--rehearse`). The source pipeline is never
changed: the update works on a copy loaded from it and is written to a new directory."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tagshift.corpus import Corpus
from tagshift.lineage import corpus_record, step_record
from tagshift.metrics import Scores, score_tags
from tagshift.rawtext import read_raw
from tagshift.taggers.spacy_pipeline import SpacyPipeline, write_pipeline
from tagshift.taggers.tagger import Tagged
from tagshift.transfer.adapt import annotated_types
from tagshift.transfer.pseudo import PseudoLabelReport, pseudo_label


@dataclass
class SpacyUpdate:
    """What updating a pipeline did."""

    new_types: list[str]
    pseudo: PseudoLabelReport
    rehearsed: int  # raw-text documents the source annotated for rehearsal
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_dev: Scores | None = None


def _examples(nlp: Any, corpus: Corpus) -> list[Any]:
    """spaCy training examples from token/tag sentences (IOB2 tags, as BILUO for spaCy)."""
    from spacy.tokens import Doc
    from spacy.training import Example, iob_to_biluo

    return [Example.from_dict(Doc(nlp.vocab, words=s.tokens), {"entities": iob_to_biluo(list(s.tags))})
            for s in corpus.sentences]


def _rehearsal(source: SpacyPipeline, path: Path) -> list[Any]:
    """The source's own entities on raw text (read as every raw-text command reads it, a
    sentence an example): examples that keep showing the old types while the new ones are
    learnt."""
    from spacy.tokens import Doc
    from spacy.training import Example

    nlp = source.nlp
    words = [sentence.tokens for _, sentence in read_raw(path)]
    docs = nlp.pipe((Doc(nlp.vocab, words=w) for w in words), disable=source.unneeded)
    return [Example(Doc(nlp.vocab, words=w), doc) for w, doc in zip(words, docs)]


def update_pipeline(
    source: str,
    train: Corpus,
    out: Path,
    epochs: int = 10,
    seed: int = 0,
    dev: Corpus | None = None,
    rehearse: Path | None = None,
    batch_size: int = 16,
    dropout: float = 0.2,
    keep_old: bool = True,
    command: str | None = None,
    report: Callable[[str], None] = lambda text: None,
) -> SpacyUpdate:
    """Update `source`'s ner on `train` (new types added, old ones rehearsed), keep the epoch
    best on `dev` (entity F1 over the types dev annotates), and write the pipeline to `out`.
    `keep_old=False` leaves out the source's entities (and `rehearse` must be None): the
    recipe found in spaCy's forums, add_label and nlp.update on the new data alone, which
    bench/spacy_new_types.py measures beside this one."""
    if not keep_old and rehearse is not None:
        raise ValueError("rehearse is rehearsal of the old types: it needs keep_old")
    from spacy.util import fix_random_seed, minibatch

    # One copy of the source, every component kept: it tags the rehearsal data as the source
    # does, and only then is its ner changed (the installed pipeline never is)
    teacher = SpacyPipeline(source, exclude=())
    nlp = teacher.nlp
    old_types = set(teacher.types)
    new_types = sorted(annotated_types(train) - old_types)
    unannotated = sorted(old_types - annotated_types(train)) if keep_old else []
    # the source tags the training data only where it has types to write in
    before = (teacher.predict([s.tokens for s in train.sentences], 64) if unannotated
              else [Tagged(s.tokens, ["O"] * len(s), []) for s in train.sentences])
    rehearsed_train, pseudo = pseudo_label(train, before, {t: t for t in unannotated}, 0.0, "iob2")
    extra = _rehearsal(teacher, rehearse) if rehearse is not None else []
    ner = nlp.get_pipe("ner")
    for entity_type in new_types:
        ner.add_label(entity_type)
    examples = _examples(nlp, rehearsed_train)
    report(f"spaCy pipeline {source}: ner learns {', '.join(new_types) or 'no new type'}; "
           f"{pseudo.render()}" + (f"; {len(extra)} raw documents rehearsed" if rehearse else ""))
    fix_random_seed(seed)
    shuffle = random.Random(seed)
    optimizer = nlp.resume_training()
    update = SpacyUpdate(new_types, pseudo, len(extra))
    best_bytes, best_f1 = None, -1.0
    dev_types = sorted(annotated_types(dev)) if dev is not None else None
    for epoch in range(1, epochs + 1):
        batch_order = examples + extra
        shuffle.shuffle(batch_order)
        losses: dict[str, float] = {}
        with nlp.select_pipes(enable=["ner"]):
            for batch in minibatch(batch_order, size=batch_size):
                nlp.update(batch, sgd=optimizer, drop=dropout, losses=losses)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": losses.get("ner", 0.0)}
        if dev is not None:
            # the teacher holds the pipeline being updated: it now tags as the updated ner does
            scores = score_tags(dev.tag_sequences, [t.tags for t in teacher.predict([s.tokens for s in dev.sentences], 64)])
            scores = scores.restrict(dev_types)
            record["dev_f1"] = scores.micro.f1
            if scores.micro.f1 > best_f1:
                best_f1, best_bytes, update.best_epoch, update.best_dev = scores.micro.f1, nlp.to_bytes(), epoch, scores
        else:
            update.best_epoch = epoch
        update.history.append(record)
        report(f"epoch {epoch}: ner loss {record['train_loss']:.3f}"
               + (f", dev F1 {100 * record['dev_f1']:.2f}" if "dev_f1" in record else ""))
    if best_bytes is not None:
        nlp.from_bytes(best_bytes)
    step = step_record("adapt", command=command, source=source, route="spacy pipeline update",
                       new_types=new_types, pseudo_labels=pseudo.to_json(), rehearsed_documents=len(extra),
                       epochs_run=epochs, best_epoch=update.best_epoch,
                       data={"train": corpus_record(train), "dev": corpus_record(dev) if dev is not None else None},
                       scores={"dev": update.best_dev.to_json() if update.best_dev else None})
    lineage = list(nlp.meta.get("tagshift", {}).get("lineage", []))
    nlp.meta["tagshift"] = {"lineage": json.loads(json.dumps([*lineage, step]))}
    nlp.meta["name"] = f"{nlp.meta.get('name', 'pipeline')}_tagshift"
    write_pipeline(nlp, out)
    return update
