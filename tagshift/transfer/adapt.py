"""`tagshift adapt`: from a source model and target data to an adapted model.

Data flows one way: the plan (label diff) -> head surgery -> the training targets
(pseudo-labels, partial labels) and the distillation term -> `fit`. `prepare` does all but
the training and returns what it did, so the CLI can print the plan before any epoch runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.fields import check_fields
from tagshift.labelmap import LabelMap
from tagshift.lineage import content_sha256, corpus_record, state_sha256
from tagshift.schemes import Span, get_scheme, split_tag
from tagshift.taggers.backends import Backend, get_backend
from tagshift.taggers.heads import head_kind
from tagshift.taggers.guide import Guide
from tagshift.taggers.tagger import Tagged, Tagger
from tagshift.training.world import SINGLE, World
from tagshift.training import FEW_STEPS, TrainConfig, TrainResult, epoch_steps, fit, model_tags
from tagshift.training.ner import ExtraLoss
from tagshift.transfer.anchor import DEFAULT_ANCHOR, Anchor
from tagshift.transfer.distill import DEFAULT_TEMPERATURE, DEFAULT_WEIGHT, Distillation, teacher_scores
from tagshift.training.partial import partial_targets, uncertain_flags
from tagshift.transfer.plan import FRESH, LabelPlan, annotated_types, make_plan
from tagshift.transfer.pseudo import DEFAULT_THRESHOLD, PseudoLabelReport, pseudo_label
from tagshift.transfer.recipe import Recipe, choose_recipe
from tagshift.transfer.stack import graft_guide, stack_model
from tagshift.transfer.suggest import gather_evidence, related_types
from tagshift.transfer.surgery import SurgeryReport, adapt_head, keep_old_rows
from tagshift.transfer.vocabulary import VocabularyReport, extend_vocabulary

# Adapting starts from a trained model: its encoder learns at a tenth of the head's rate
# (the transfer paper's choice), the head (whose new rows start from nothing) at training's
# rate, or above it where the family's `adapt_head_lr_factor` says so (taggers/backends.py).
ENCODER_LR_FACTOR = 0.1


@dataclass
class AdaptConfig:
    """How to adapt; every field is a `tagshift adapt` option."""

    labels: Literal["extend", "map", "replace", "stack"] | None = None  # None: from the plan
    init: Literal["quiet", "related", "normal"] = "quiet"
    head: Literal["crf", "softmax"] | None = None  # the adapted model's head; None: the source's
    scheme: str | None = None  # the adapted model's tag scheme; None: the source's
    drop: list[str] = field(default_factory=list)
    pseudo_label: float | None = None  # confidence threshold; None: no pseudo-labels (true: the default threshold)
    partial: bool = False
    distill: float | None = None  # weight of the distillation term; None: none (true: the default weight)
    # weight of an L2 pull of the encoder's weights towards the source's (L2-SP); None: none (true: the default)
    anchor: float | None = None
    temperature: float = DEFAULT_TEMPERATURE
    extend_vocab: bool = True  # BiLSTM-CRF: add the target's words and characters
    keep_old_head: bool = False  # the head's rows of the source's labels (O included) do not train
    guide: bool = False  # map, replace, extend (BiLSTM-CRF): the adapted model also reads the source's tag probabilities
    guide_states: bool = False  # --labels stack or --guide: the source encoder's states are read too
    backend: str | None = None  # the family of a new model a teacher without a head (spaCy) trains; None: the source's

    def __post_init__(self) -> None:
        # A switch may be written as a boolean (`pseudo_label = true` in a job file,
        # `--no-pseudo-label` over one): on takes the default value, off is None.
        for name, default in (("pseudo_label", DEFAULT_THRESHOLD), ("distill", DEFAULT_WEIGHT), ("anchor", DEFAULT_ANCHOR)):
            if isinstance(getattr(self, name), bool):
                setattr(self, name, default if getattr(self, name) else None)
        try:
            check_fields(self, positive=("temperature",), non_negative=("distill", "anchor"))
        except ValueError as err:
            raise TagshiftError(f"adapt option {err}") from None
        if self.pseudo_label is not None and not 0 <= self.pseudo_label <= 1:
            raise TagshiftError(f"--pseudo-label threshold {self.pseudo_label} should lie in [0, 1]")


def adapt_config(values: dict[str, Any]) -> AdaptConfig:
    """An AdaptConfig from a job's [adapt] options, unknown keys named."""
    known = {f.name for f in fields(AdaptConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TagshiftError(f"unknown adapt option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return AdaptConfig(**values)
    except TypeError as err:
        raise TagshiftError(f"adapt options: {err}") from None


def adapt_training(backend: str | Backend, **overrides: Any) -> TrainConfig:
    """Training options for adapting: the backend's, with the encoder at a tenth of the
    head's rate unless `encoder_lr` says otherwise. The head's rate is `head_lr`, else a
    given `lr`, else the backend's rate times its `adapt_head_lr_factor`.

    >>> options = adapt_training("transformer")
    >>> options.head_lr, options.encoder_lr
    (0.0005, 5e-05)
    >>> options = adapt_training("bilstm-crf", lr=1e-2)
    >>> options.head_lr, options.encoder_lr
    (0.01, 0.001)
    """
    options = TrainConfig.for_backend(backend, **overrides)
    if options.head_lr is None:
        factor = get_backend(backend).adapt_head_lr_factor if overrides.get("lr") is None else 1.0
        options.head_lr = options.lr * factor
    if options.encoder_lr is None:
        options.encoder_lr = options.head_lr * ENCODER_LR_FACTOR
    return options


def enough_epochs(sentences: int, options: TrainConfig) -> int:
    """The epochs that give `sentences` at least FEW_STEPS optimiser steps.

    >>> enough_epochs(100, TrainConfig(batch_size=16))
    36
    """
    return math.ceil(FEW_STEPS / max(1, epoch_steps(sentences, options)))


def few_steps_hint(sentences: int, options: TrainConfig) -> str | None:
    """A hint when `options` give `sentences` too few optimiser steps, with the epochs that
    would give enough; None when they are enough (or when epochs = 0: no training).

    >>> few_steps_hint(200, TrainConfig(epochs=4, batch_size=16))
    'only 52 optimiser steps (200 sentences, 4 epochs, batch 16): a new head rarely learns in fewer than 250; try --epochs 20'
    >>> few_steps_hint(200, TrainConfig(epochs=30, batch_size=16)) is None
    True
    """
    steps = max(1, epoch_steps(sentences, options)) * options.epochs
    if options.epochs == 0 or steps >= FEW_STEPS:
        return None
    return (f"only {steps} optimiser steps ({sentences} sentences, {options.epochs} epochs, batch {options.batch_size}): "
            f"a new head rarely learns in fewer than {FEW_STEPS}; try --epochs {enough_epochs(sentences, options)}")


@dataclass
class Prepared:
    """Everything adapt does before training, and the reports of it."""

    tagger: Tagger
    plan: LabelPlan
    surgery: SurgeryReport
    original: Corpus  # the target training data as read
    train: Corpus  # the same, pseudo-labelled if asked
    targets: list[Tensor]
    distillation: Distillation | None
    pseudo: PseudoLabelReport | None
    changed: dict[str, int]  # what the untrained adapted model predicts differently from the source
    options: AdaptConfig
    source_sha256: str  # of the source's weights: resuming against another source is refused
    vocabulary: VocabularyReport | None = None
    notes: list[str] = field(default_factory=list)  # options that do nothing here, and why
    recipe: Recipe | None = None  # what adapt chose where the options left it open
    anchor: Anchor | None = None  # the pull of the encoder towards the source's weights (--anchor)

    def extra_loss(self) -> ExtraLoss | None:
        """What training adds to each batch's loss: distillation, the anchor, both or none."""
        terms = [t for t in (self.distillation, self.anchor) if t is not None]
        if len(terms) < 2:
            return terms[0] if terms else None
        return lambda indices, emissions, mask: sum(t(indices, emissions, mask) for t in terms)

    def step(self, source: str) -> dict[str, Any]:
        """The lineage record of this adapt step (training adds options and scores)."""
        data = {"train": corpus_record(self.original)}
        if self.pseudo is not None:  # what training saw: the file's sentences with pseudo-labels
            data["train"]["pseudo_labelled_content_sha256"] = content_sha256(self.train)
        return {
            "step": "adapt",
            "backend": self.tagger.backend.name,
            "source": source,
            "source_weights_sha256": self.source_sha256,
            "adapt_options": asdict(self.options),
            "recipe": self.recipe.to_json() if self.recipe else None,
            "plan": self.plan.to_json(),
            "surgery": self.surgery.to_json(),
            "changed_before_training": self.changed,
            "vocabulary": self.vocabulary.to_json() if self.vocabulary else None,
            "pseudo_labels": self.pseudo.to_json() if self.pseudo else None,
            "data": data,
        }

    def render(self) -> str:
        lines = [self.recipe.render()] if self.recipe else []
        lines += [self.plan.render(), self.surgery.render()]
        if self.vocabulary is not None:
            lines.append(self.vocabulary.render())
        if self.options.guide and self.plan.operation != "stack":
            read = "tag probabilities and encoder states" if self.options.guide_states else "tag probabilities"
            lines.append(f"guide: the adapted model also reads the source's {read} of each word "
                         "(new inputs of its first BiLSTM layer, starting at zero)")
        if self.anchor is not None:
            lines.append(f"anchor: each encoder weight is pulled towards the source's (L2-SP, weight {self.anchor.weight:g})")
        lines.append(
            f"before training, the adapted model differs from the source on {self.changed['entities']} entities "
            f"in {self.changed['sentences']} of {len(self.train)} training sentences"
        )
        if self.pseudo:
            lines.append(self.pseudo.render())
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _mapped(entities: list[Any], target_of: dict[str, str]) -> set[Span]:
    return {Span(e.start, e.end, target_of[e.label]) for e in entities if e.label in target_of}


def _changes(before: list[Tagged], after: list[Tagged], target_of: dict[str, str]) -> dict[str, int]:
    """Entities (and sentences) where two taggers disagree, source types under their new names."""
    entities = sentences = 0
    for a, b in zip(before, after):
        differ = len(_mapped(a.entities, target_of) ^ {Span(e.start, e.end, e.label) for e in b.entities})
        entities += differ
        sentences += bool(differ)
    return {"entities": entities, "sentences": sentences}


def prepare(
    source: Tagger,
    train: Corpus,
    options: AdaptConfig,
    seed: int = 0,
    label_map: LabelMap | None = None,
    dev: Corpus | None = None,
    progress: bool = False,
    before: list[Tagged] | None = None,
) -> Prepared:
    """Plan, operate on the head, pseudo-label, and build the training targets. The plan
    follows what the training data annotates; dev only picks the epoch. `before`: the
    source's predictions on `train` (`source_predictions`), where made already."""
    target_types = annotated_types(train)
    plan = make_plan(source.labels, source.scheme, target_types, label_map, options.drop, options.labels, options.scheme)
    if dev is not None:
        dev_types(dev, plan)  # refused now, not after the source has tagged everything
    pairs = _distill_pairs(source, plan) if options.distill is not None else []
    if before is None:
        before = source_predictions(source, train, options, progress)
    if plan.operation == "stack":  # a new model, its vocabulary the target's words (training and dev)
        tagger, surgery = stack_model(source, plan, train, dev, seed, options.head, options.guide_states)
    else:
        related = None
        if options.init == "related":  # where the source's predictions found each new type's entities
            evidence = gather_evidence(source, train, predicted=before)
            related = related_types(evidence, plan.new, sorted(plan.target_of))
        tagger, surgery = adapt_head(source, plan, options.init, seed, options.head, related)
    if options.keep_old_head:
        keep_old_rows(tagger, plan)
    grow = options.extend_vocab and plan.operation != "stack"
    vocabulary = extend_vocabulary(tagger, train, options.init, seed) if grow else None
    if options.guide and plan.operation != "stack":  # (a stacked model reads its guide already)
        graft_guide(tagger, Guide(source, options.guide_states), seed)

    sentences = [s.tokens for s in train.sentences]
    after = tagger.predict(sentences, 64, confidence=False)
    changed = _changes(before, after, plan.target_of)

    pseudo = None
    adapted = train
    if options.pseudo_label is not None:
        fill = {old: new for old, new in plan.target_of.items() if new in plan.unannotated}
        adapted, pseudo = pseudo_label(train, before, fill, options.pseudo_label, plan.scheme)
    tags = model_tags(adapted, plan.scheme)
    # Distillation teaches the old types at gold-O words from the teacher's scores, so there
    # the hard O gives way to partial labels (as in ExtendNER): both at once would fight.
    uncertain = uncertain_flags(adapted.sentences)  # silver spans marked uncertain: their tag or O
    if options.partial or options.distill is not None or uncertain is not None:
        targets = partial_targets(tags, plan.labels, plan.unannotated if options.partial or options.distill is not None
                                  else [], uncertain)
    else:
        targets = [tagger.gold_indices([t])[0].cpu() for t in tags]

    distillation = None
    if options.distill is not None:
        distillation = Distillation(
            teacher=teacher_scores(source, sentences, [i for i, _ in pairs]),
            student_columns=[j for _, j in pairs],
            outside=[torch.tensor([t == "O" for t in sentence_tags]) for sentence_tags in tags],
            weight=options.distill,
            temperature=options.temperature,
        )
    anchor = Anchor.at(tagger, options.anchor) if options.anchor is not None and plan.operation != "stack" else None
    return Prepared(tagger, plan, surgery, train, adapted, targets, distillation, pseudo, changed, options,
                    weights_sha256(source), vocabulary, _notes(plan, options, source, tagger), anchor=anchor)


def prepare_with_recipe(source: Tagger, train: Corpus, options: AdaptConfig, training: TrainConfig,
                        given: dict[str, Any], label_map: LabelMap | None = None, dev: Corpus | None = None,
                        progress: bool = False) -> Prepared:
    """`prepare` after choosing what the options leave open (transfer/recipe.py): the label
    operation and map, and in `training` (changed in place) the rates the user did not give
    (`given`: the training options as the user gave them)."""
    keeping = [flag for flag, on in (("--pseudo-label", options.pseudo_label is not None),
                                     ("--partial", options.partial), ("--distill", options.distill is not None),
                                     ("--keep-old-head", options.keep_old_head)) if on]
    # the source tags the training data once, for the recipe's evidence and prepare's changes
    before = source_predictions(source, train, options, progress)
    recipe = choose_recipe(source, train, options.labels, label_map, keeping, progress, before)
    if recipe is not None:
        options, label_map = replace(options, labels=recipe.labels), recipe.label_map
        recipe.apply(training, given, len(train), len(dev) if dev is not None else 0)
    fresh_encoder_rate(options, training, given)
    prepared = prepare(source, train, options, training.seed, label_map, dev, progress, before)
    prepared.recipe = recipe
    return prepared


def fresh_encoder_rate(options: AdaptConfig, training: TrainConfig, given: dict[str, Any]) -> None:
    """A stacked model's encoder is new: it learns at the head's rate, as training's does,
    unless the user gave its rate (`given`)."""
    if options.labels == "stack" and given.get("encoder_lr") is None:
        training.encoder_lr = training.head_lr


def source_predictions(source: Tagger, train: Corpus, options: AdaptConfig, progress: bool = False) -> list[Tagged]:
    """What the source predicts on the training data (with confidences for --pseudo-label)."""
    return source.predict([s.tokens for s in train.sentences], 64, progress,
                          confidence=options.pseudo_label is not None)


def weights_sha256(tagger: Tagger) -> str:
    """A digest of a tagger's weights, names and values."""
    return state_sha256(tagger.network.state_dict())


def _notes(plan: LabelPlan, options: AdaptConfig, source: Tagger, adapted: Tagger) -> list[str]:
    """What the user asked for that has nothing to act on here, or that costs something."""
    notes = []
    if options.head == "softmax" and head_kind(source.head) == "crf" and plan.operation not in FRESH:
        notes.append("--head softmax drops the source's CRF transition scores, so the untrained model's predictions change")
    if not plan.unannotated and (options.pseudo_label is not None or options.partial):
        notes.append("--pseudo-label and --partial have nothing to do: the target data annotates every type of the adapted model")
    if options.partial and options.pseudo_label is None and options.distill is None and plan.unannotated \
            and head_kind(adapted.head) == "softmax":
        notes.append(
            "--partial alone can let a softmax head drift into an old type at words the data leaves O (nothing in "
            "the partial likelihood prefers O there; docs/benchmarks.md, incremental): add --distill or --pseudo-label"
        )
    if plan.operation == "replace" and options.init != "quiet":
        notes.append(f"--labels replace starts every head row fresh: --init {options.init} "
                     + ("decides only new vocabulary rows" if options.init == "normal" else "has no new rows to start"))
    if options.guide_states and plan.operation != "stack" and not options.guide:
        notes.append("--guide-states adds to what a guide gives (--labels stack or --guide): it does nothing here")
    if options.guide and plan.operation == "stack":
        notes.append("--labels stack always reads the source: --guide adds nothing")
    if plan.operation == "stack" and options.anchor is not None:
        notes.append("--labels stack builds a new model: --anchor has no source weights to pull it towards")
    if plan.operation == "stack" and options.init != "quiet":
        notes.append("--labels stack builds a new model: --init has nothing to initialise from")
    if options.distill is None and options.temperature != DEFAULT_TEMPERATURE:
        notes.append("--temperature is the distillation's: it does nothing without --distill")
    if plan.scheme != plan.source_scheme and not set(get_scheme(plan.source_scheme).prefixes) <= set(get_scheme(plan.scheme).prefixes):
        notes.append(
            f"{plan.scheme} has fewer prefixes than the source's {plan.source_scheme}: each row starts from one source "
            "row, so the untrained model's predictions change"
        )
    return notes


def _distill_pairs(source: Tagger, plan: LabelPlan) -> list[tuple[int, int]]:
    """(source label, adapted label) index pairs the distillation compares: one-to-one types
    only, so types merged into one and dropped ones sit out. Checked before any tagging."""
    if plan.scheme != plan.source_scheme:
        raise TagshiftError(
            f"--distill compares the source's and the adapted model's scores tag by tag, so both must use one "
            f"scheme: drop --scheme (the source tags in {plan.source_scheme}), or drop --distill"
        )
    index = {label: i for i, label in enumerate(plan.labels)}
    merged = {old for olds in plan.merged.values() for old in olds}
    pairs = [
        (i, index[renamed])
        for i, label in enumerate(source.labels)
        if (renamed := _renamed_tag(label, plan.target_of, merged)) in index
    ]
    if len(pairs) < 2:
        raise TagshiftError("--distill needs at least one source type kept one-to-one in the adapted model")
    return pairs


def _renamed_tag(label: str, target_of: dict[str, str], merged: set[str]) -> str | None:
    """The adapted model's name for a source tag, when its type maps one-to-one."""
    if label == "O":
        return "O"
    prefix, entity_type = split_tag(label)
    if entity_type not in target_of or entity_type in merged:
        return None
    return f"{prefix}-{target_of[entity_type]}"


def adapt(
    source: Tagger,
    train: Corpus,
    dev: Corpus | None,
    options: AdaptConfig,
    training: TrainConfig,
    out: str | Path | None = None,
    label_map: LabelMap | None = None,
    source_name: str = "(in memory)",
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    test: Corpus | None = None,
) -> tuple[Prepared, TrainResult]:
    """Prepare and train: the adapted tagger is `prepared.tagger`, saved to `out` if given.
    With `options.labels` left None and no `label_map`, adapt chooses the operation, the map
    and the rates (transfer/recipe.py; `training`'s encoder rate, layer decay, head-only epochs
    and dev_every give way to the recipe's): set `options.labels` to keep them as given. With
    `labels="stack"` the new model's encoder learns at the head's rate, as a new one does."""
    prepared = prepare_with_recipe(source, train, options, training, {}, label_map, dev, progress)
    result = train_prepared(prepared, dev, training, out, source_name, resume, progress, command, test)
    return prepared, result


def train_prepared(
    prepared: Prepared,
    dev: Corpus | None,
    training: TrainConfig,
    out: str | Path | None = None,
    source_name: str = "(in memory)",
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    test: Corpus | None = None,
    world: World = SINGLE,
) -> TrainResult:
    """The training half of `adapt`. Dev F1 counts only the types dev annotates: types it
    leaves O would otherwise count as errors, and reward forgetting them."""
    return fit(
        prepared.tagger, prepared.train, dev, training, out, resume=resume, progress=progress, command=command,
        test=test, targets=prepared.targets, extra_loss=prepared.extra_loss(), step=prepared.step(source_name),
        dev_types=dev_types(dev, prepared.plan) if dev is not None else None, world=world,
    )


def dev_types(dev: Corpus, plan: LabelPlan) -> list[str]:
    """The adapted model's types that dev annotates; none is an error."""
    types = sorted(annotated_types(dev) & set(plan.types))
    if not types:
        raise TagshiftError(
            f"{dev.path or 'the dev set'}: no entities of the adapted model's types ({', '.join(plan.types)}), "
            "so it cannot choose an epoch; give a dev set that annotates some of them, or none"
        )
    return types
