"""Adapting a spaCy pipeline and getting a spaCy pipeline back: its `ner` learns the target
data's new types through spaCy's own training API (`add_label`, `resume_training`,
`nlp.update`) while every other component is kept as it was, and the old types are kept by
pseudo-rehearsal: the source's own entities written into the target data wherever it leaves
them O, plus raw text the source annotates (`--rehearse`). The source pipeline is never
changed: the update works on a copy loaded from it and is written to a new directory.

Two choices keep the old types closer: the ner's own tok2vec learns at a fraction of the rate
of the layers above it (ENCODER_SHARE, as adapt's encoder does for a tagshift model; the share
was measured on CoNLL-2003 dev, bench/spacy_new_types.py), and the pipeline is scored and
saved with the optimiser's parameter averages, as spaCy's own training loop does."""

from __future__ import annotations

import json
import random
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.lineage import corpus_record, step_record
from tagshift.metrics import Scores, score_tags
from tagshift.rawtext import read_raw
from tagshift.taggers.spacy_pipeline import SpacyPipeline, write_pipeline
from tagshift.taggers.tagger import Tagged
from tagshift.transfer.adapt import annotated_types
from tagshift.transfer.pseudo import PseudoLabelReport, pseudo_label


# The ner tok2vec's rate as a share of the ner's (against 1 on CoNLL-2003 dev, one seed:
# docs/benchmarks.md#spacy_new_types)
ENCODER_SHARE = 0.3


class _SlowEncoder:
    """spaCy's optimiser with the parameters of some nodes (the ner's tok2vec) updated at
    `share` of its rate: thinc calls it once per parameter with the node's id in the key."""

    def __init__(self, optimizer: Any, nodes: set[int], share: float):
        self.optimizer, self.nodes, self.share = optimizer, nodes, share

    def __getattr__(self, name: str) -> Any:  # averages, learn_rate, step_schedules, ...
        return getattr(self.optimizer, name)

    def __call__(self, key: tuple[int, str], weights: Any, gradient: Any, *, lr_scale: float = 1.0) -> Any:
        if key[0] in self.nodes:
            lr_scale *= self.share
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale)


def _optimizer(nlp: Any, lr: float | None, encoder_lr: float | None, plain: bool = False) -> Any:
    """`resume_training`'s optimiser (the pipeline's own config), at `lr` if given, with the
    ner's tok2vec (its embedding and encoding layers and the projection to the ner's width) at
    `encoder_lr`, by default ENCODER_SHARE of the rate; `plain`: every layer at the rate. A ner
    listening to a shared tok2vec has none of its own: its layers all learn at the rate."""
    optimizer = nlp.resume_training()
    if lr is not None:
        optimizer.learn_rate = lr
    model = nlp.get_pipe("ner").model
    # thinc's averages start at zero; a trained pipeline's start at its weights
    if optimizer.averages is not None:
        for node in model.walk():
            for name in node.param_names:
                if node.has_param(name):
                    optimizer.averages[(node.id, name)] = node.get_param(name).copy()
    own = {node.id for node in model.get_ref("tok2vec").walk() if node.param_names} if model.has_ref("tok2vec") else set()
    if plain or not own:
        return optimizer
    if encoder_lr is not None and not optimizer.learn_rate > 0:
        raise TagshiftError(f"the pipeline's optimiser starts at rate {optimizer.learn_rate:g} (a warm-up "
                            "schedule?): give --lr as well as --encoder-lr")
    share = ENCODER_SHARE if encoder_lr is None else encoder_lr / optimizer.learn_rate
    return optimizer if share == 1.0 else _SlowEncoder(optimizer, own, share)


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
    epochs: int = 20,
    seed: int = 0,
    dev: Corpus | None = None,
    rehearse: Path | None = None,
    batch_size: int = 16,
    dropout: float = 0.2,
    lr: float | None = None,
    encoder_lr: float | None = None,
    patience: int | None = 5,
    keep_old: bool = True,
    command: str | None = None,
    report: Callable[[str], None] = lambda text: None,
) -> SpacyUpdate:
    """Update `source`'s ner on `train` (new types added, old ones rehearsed), keep the epoch
    best on `dev` (entity F1 over the types dev annotates; after `patience` epochs without a
    better one, stop), and write the pipeline to `out`.
    `keep_old=False` leaves out the source's entities (and `rehearse` must be None): the
    recipe found in spaCy's forums, add_label and nlp.update on the new data alone, which
    bench/spacy_new_types.py measures beside this one; it trains as those users do, every
    layer at the pipeline's rate, saved without averaging. `lr`: the ner's rate (None: the
    pipeline's config); `encoder_lr`: its tok2vec's (None: ENCODER_SHARE of `lr`)."""
    if not keep_old and rehearse is not None:
        raise ValueError("rehearse is rehearsal of the old types: it needs keep_old")
    if not keep_old and encoder_lr is not None:
        raise ValueError("the forum recipe trains every layer at one rate: encoder_lr needs keep_old")
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
    optimizer = _optimizer(nlp, lr, encoder_lr, plain=not keep_old)
    # spaCy's loop scores and saves the averages of the parameters; the forum recipe does not
    averaged = (lambda: nlp.use_params(optimizer.averages)) if keep_old and optimizer.averages is not None else nullcontext
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
        with averaged():
            if dev is not None:
                # the teacher holds the pipeline being updated: it now tags as the updated ner does
                tagged = teacher.predict([s.tokens for s in dev.sentences], 64)
                scores = score_tags(dev.tag_sequences, [t.tags for t in tagged]).restrict(dev_types)
                record["dev_f1"] = scores.micro.f1
                if scores.micro.f1 > best_f1:
                    best_f1, best_bytes, update.best_epoch, update.best_dev = scores.micro.f1, nlp.to_bytes(), epoch, scores
            elif epoch == epochs:
                best_bytes, update.best_epoch = nlp.to_bytes(), epoch
        update.history.append(record)
        report(f"epoch {epoch}: ner loss {record['train_loss']:.3f}"
               + (f", dev F1 {100 * record['dev_f1']:.2f}" if "dev_f1" in record else ""))
        if dev is not None and patience and epoch - update.best_epoch >= patience:
            report(f"stopped: no better dev F1 in {patience} epochs")
            break
    if best_bytes is not None:
        nlp.from_bytes(best_bytes)
    step = step_record("adapt", command=command, source=source, route="spacy pipeline update",
                       new_types=new_types, pseudo_labels=pseudo.to_json(), rehearsed_documents=len(extra),
                       epochs_run=len(update.history), best_epoch=update.best_epoch,
                       optimiser={"lr": optimizer.learn_rate, "encoder_share": getattr(optimizer, "share", 1.0),
                                  "dropout": dropout, "batch_size": batch_size, "averaged": averaged is not nullcontext},
                       data={"train": corpus_record(train), "dev": corpus_record(dev) if dev is not None else None},
                       scores={"dev": update.best_dev.to_json() if update.best_dev else None})
    lineage = list(nlp.meta.get("tagshift", {}).get("lineage", []))
    nlp.meta["tagshift"] = {"lineage": json.loads(json.dumps([*lineage, step]))}
    nlp.meta["name"] = f"{nlp.meta.get('name', 'pipeline')}_tagshift"
    write_pipeline(nlp, out)
    return update
