"""Adapting from a teacher tagshift cannot operate on (a spaCy pipeline): no head to extend,
so a new model of the chosen family learns the teacher's types and the target data's at
once. The plan is adapt's (the teacher's types kept, renamed, merged or dropped by a map;
the target's added); the teacher tags the target sentences and its entities of the types the
data leaves unannotated are written in where the data has O (pseudo-labels, the rehearsal
spaCy's maintainers recommend against forgetting). The teacher gives no scores, so there is
nothing to distil."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagshift.corpus import Corpus, Sentence
from tagshift.labelmap import LabelMap
from tagshift.lineage import content_sha256, corpus_record
from tagshift.taggers.backends import Backend
from tagshift.rawtext import read_raw
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
    rehearsal: PseudoLabelReport | None = None  # raw sentences the teacher tagged, trained on beside the data
    rehearsed: int = 0  # how many

    def step(self, source: str) -> dict[str, Any]:
        """The lineage record of this step (training adds options and scores)."""
        data = {"train": {**corpus_record(self.original), "pseudo_labelled_content_sha256": content_sha256(self.train)}}
        step = {"step": "adapt", "backend": self.tagger.backend.name, "source": source, "teacher": self.teacher,
                "plan": self.plan.to_json(), "pseudo_labels": self.pseudo.to_json(), "data": data}
        if self.rehearsal is not None:
            step["rehearsal"] = {"sentences": self.rehearsed, "entities": self.rehearsal.to_json()}
        return step

    def render(self) -> str:
        lines = [f"teacher: {self.teacher}; a new {self.tagger.describe()} learns its types and the data's",
                 self.plan.render(), self.pseudo.render()]
        if self.rehearsal is not None:
            lines.append(f"rehearsal: {self.rehearsed} raw sentences, tagged by the teacher: {self.rehearsal.render()}")
        return "\n".join(lines)

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
    rehearse: Path | None = None,
) -> Taught:
    """Plan the new model's types, pseudo-label the target data with the teacher, build the
    model. `rehearse`: raw text (a document per line) whose sentences, with the teacher's
    entities of the types the plan keeps, join the training data (text of the teacher's own
    kind shows the old types where the target data has few)."""
    plan = make_plan(teacher.labels, teacher.scheme, annotated_types(train), label_map, drop or [], "extend",
                     scheme or backend.default_scheme)
    if dev is not None:
        dev_types(dev, plan)  # refused now, not after the teacher has tagged everything
    before = teacher.predict([s.tokens for s in train.sentences], 64, progress)
    fill = {old: new for old, new in plan.target_of.items() if new in plan.unannotated}
    taught, report = pseudo_label(train, before, fill, DEFAULT_THRESHOLD if threshold is None else threshold,
                                  plan.scheme)
    rehearsal, rehearsed = None, 0
    if rehearse is not None:
        words = [sentence.tokens for _, sentence in read_raw(rehearse)]
        blank = Corpus([Sentence(w, ["O"] * len(w)) for w in words], str(rehearse))
        # every type the plan keeps, as the teacher tags it (the new types are O there)
        tagged, rehearsal = pseudo_label(blank, teacher.predict(words, 64, progress), dict(plan.target_of), 0.0,
                                         plan.scheme)
        taught, rehearsed = Corpus(taught.sentences + tagged.sentences, train.path), len(words)
    tagger = backend.build(config, taught, plan.scheme, seed, extra=dev, types=plan.types)
    return Taught(tagger, plan, train, taught, report, teacher.describe(), rehearsal, rehearsed)
