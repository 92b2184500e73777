"""Adapting from a teacher tagshift cannot operate on (a spaCy pipeline): no head to extend,
so a new model of the chosen family learns the teacher's types and the target data's at
once. The plan is adapt's (the teacher's types kept, renamed, merged or dropped by a map;
the target's added); the teacher tags the target sentences and its entities of the types the
data leaves unannotated are written in where the data has O (pseudo-labels, the rehearsal
spaCy's maintainers recommend against forgetting). The teacher gives no scores, so there is
nothing to distil."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tagshift.corpus import Corpus
from tagshift.labelmap import LabelMap
from tagshift.lineage import content_sha256, corpus_record
from tagshift.taggers.backends import Backend
from tagshift.taggers.spacy_pipeline import SpacyPipeline
from tagshift.taggers.tagger import Tagger
from tagshift.transfer.adapt import annotated_types, dev_types
from tagshift.transfer.plan import LabelPlan, make_plan
from tagshift.transfer.pseudo import DEFAULT_THRESHOLD, PseudoLabelReport, pseudo_label


@dataclass
class Taught:
    """A new model to train on the target data, with the teacher's entities written in."""

    tagger: Tagger
    plan: LabelPlan
    original: Corpus  # the target training data as read
    train: Corpus  # the same, pseudo-labelled by the teacher
    pseudo: PseudoLabelReport
    teacher: str

    def step(self, source: str) -> dict[str, Any]:
        """The lineage record of this step (training adds options and scores)."""
        data = {"train": {**corpus_record(self.original), "pseudo_labelled_content_sha256": content_sha256(self.train)}}
        return {"step": "adapt", "backend": self.tagger.backend.name, "source": source, "teacher": self.teacher,
                "plan": self.plan.to_json(), "pseudo_labels": self.pseudo.to_json(), "data": data}

    def render(self) -> str:
        return "\n".join([f"teacher: {self.teacher}; a new {self.tagger.describe()} learns its types and the data's",
                          self.plan.render(), self.pseudo.render()])

    def dev_types(self, dev: Corpus) -> list[str]:
        return dev_types(dev, self.plan)


def prepare_taught(
    teacher: SpacyPipeline,
    train: Corpus,
    backend: Backend,
    config: Any,
    scheme: str | None = None,
    seed: int = 0,
    label_map: LabelMap | None = None,
    drop: list[str] | None = None,
    dev: Corpus | None = None,
    threshold: float | None = None,
    progress: bool = False,
) -> Taught:
    """Plan the new model's types, pseudo-label the target data with the teacher, build the model."""
    plan = make_plan(teacher.labels, teacher.scheme, annotated_types(train), label_map, drop or [], "extend",
                     scheme or backend.default_scheme)
    if dev is not None:
        dev_types(dev, plan)  # refused now, not after the teacher has tagged everything
    before = teacher.predict([s.tokens for s in train.sentences], 64, progress)
    fill = {old: new for old, new in plan.target_of.items() if new in plan.unannotated}
    taught, report = pseudo_label(train, before, fill, DEFAULT_THRESHOLD if threshold is None else threshold,
                                  plan.scheme)
    tagger = backend.build(config, taught, plan.scheme, seed, extra=dev, types=plan.types)
    return Taught(tagger, plan, train, taught, report, teacher.describe())
