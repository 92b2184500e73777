"""The tagging objective: a tagger trained on a labelled corpus, its epoch chosen by entity F1
on dev, saved as a bundle with its lineage. `fit` runs it through the shared loop."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from tagshift.bundle import WEIGHTS, load_weights, read_weights, save_bundle
from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.lineage import content_sha256, corpus_record, step_record
from tagshift.metrics import Scores, score_tags
from tagshift.schemes import SCHEMES, convert_tags
from tagshift.taggers.tagger import Tagger
from tagshift.training.config import TrainConfig
from tagshift.training.loop import CHECKPOINT, Checkpoint, Evaluation, Run, train_with_checkpoints
from tagshift.training.partial import partial_targets, uncertain_flags
from tagshift.training.world import SINGLE, World

# A term added to a batch's loss: (sentence indices, emissions, mask) -> scalar.
ExtraLoss = Callable[[list[int], Tensor, Tensor], Tensor]


@dataclass
class TrainResult:
    """What a run did: per-epoch history, the best epoch and its dev scores."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_dev: Scores | None
    stopped_early: bool
    seconds: float
    test: Scores | None = None
    options: TrainConfig | None = None  # what it trained with (a spaCy pipeline's own update: None)


def model_tags(corpus: Corpus, scheme: str) -> list[list[str]]:
    """A corpus's tags in the model's scheme (invalid sequences read as conlleval reads them)."""
    return [convert_tags(s.tags, SCHEMES[scheme]) for s in corpus.sentences]


def epoch_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length sentences: shuffle, sort within pools of 50
    batches to cut padding, then shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda k: lengths[k])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def make_optimizer(tagger: Tagger, options: TrainConfig) -> torch.optim.Optimizer:
    """One optimiser over the encoder's parameters and the head's, each at its own learning
    rate; with `layer_decay` below 1, a group per encoder layer (`layer_groups`, bottom up),
    each at that share of the rate of the one above. Frozen parameters stay in it: they get
    no gradient, so no update."""
    layers = [list(tagger.encoder.parameters())]
    if options.layer_decay < 1:
        layers = tagger.encoder.layer_groups()
        grouped = {id(p) for layer in layers for p in layer}
        # what layer_groups leaves out (the BiLSTM-CRF's frozen vectors) goes with the bottom layer
        layers[0] = [p for p in tagger.encoder.parameters() if id(p) not in grouped] + layers[0]
    return optimizer_of(layers, list(tagger.head.parameters()), options)


def optimizer_of(layers: list[list[torch.nn.Parameter]], head: list[torch.nn.Parameter],
                 options: TrainConfig) -> torch.optim.Optimizer:
    """`options`' optimiser over the encoder's `layers` (bottom up; the top one at encoder_lr,
    each lower one at layer_decay times the rate above it) and the head's parameters at head_lr.

    >>> layer = lambda: [torch.nn.Parameter(torch.zeros(1))]
    >>> [g["lr"] for g in optimizer_of([layer(), layer(), layer()], layer(),
    ...                                 TrainConfig(lr=1.0, encoder_lr=0.5, layer_decay=0.5)).param_groups]
    [0.125, 0.25, 0.5, 1.0]
    """
    top = options.encoder_lr or options.lr
    groups = [{"params": params, "lr": top * options.layer_decay ** (len(layers) - 1 - depth)}
              for depth, params in enumerate(layers)]
    groups.append({"params": head, "lr": options.head_lr or options.lr})  # last: the loop logs its rate
    groups = [g for g in groups if g["params"]]
    if options.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=options.lr, weight_decay=options.weight_decay)
    return torch.optim.Adam(groups, lr=options.lr, weight_decay=options.weight_decay)


def trainable_layers(epoch: int, layers: int, options: TrainConfig) -> int:
    """How many of the encoder's `layers` (counted from the top) train in `epoch` (from 1):
    none during the first `freeze_epochs`; then all, or (gradual) a few more each epoch so
    that the last epoch trains them all.

    >>> [trainable_layers(e, 4, TrainConfig(epochs=5, freeze_epochs=1, unfreeze="gradual")) for e in range(1, 6)]
    [0, 1, 2, 3, 4]
    """
    if epoch <= options.freeze_epochs:
        return 0
    if options.unfreeze == "all":
        return layers
    per_epoch = math.ceil(layers / max(1, options.epochs - options.freeze_epochs))
    return min(layers, (epoch - options.freeze_epochs) * per_epoch)


def set_trainable(tagger: Tagger, epoch: int, options: TrainConfig) -> None:
    """Freeze or unfreeze encoder layers for `epoch` (the head always trains)."""
    groups = tagger.encoder.layer_groups()
    top = trainable_layers(epoch, len(groups), options)
    for index, group in enumerate(groups):
        for parameter in group:
            parameter.requires_grad_(index >= len(groups) - top)


def evaluate_tagger(tagger: Tagger, corpus: Corpus, batch_size: int = 64, mode: str = "conlleval") -> Scores:
    """Entity-level scores of the tagger's predictions on a labelled corpus."""
    predicted = tagger.predict([s.tokens for s in corpus.sentences], batch_size, confidence=False)
    return score_tags(corpus.tag_sequences, [p.tags for p in predicted], mode)


class Tagging:
    """The tagging objective over one tagger and its data (see `fit` for the arguments)."""

    def __init__(self, tagger: Tagger, train: Corpus, dev: Corpus | None, options: TrainConfig,
                 targets: list[Tensor], extra_loss: ExtraLoss | None, dev_types: list[str] | None):
        self.tagger, self.options = tagger, options
        self.dev = dev_selection(dev, options) if dev is not None else None
        self.network = tagger.network
        self.sentences = [s.tokens for s in train.sentences]
        self.targets, self.extra_loss, self.dev_types = targets, extra_loss, dev_types

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        return epoch_batches([len(s) for s in self.sentences], self.options.batch_size, generator)

    def start_epoch(self, epoch: int) -> None:
        set_trainable(self.tagger, epoch, self.options)
        self.network.train()

    def loss(self, batch: list[int]) -> Tensor:
        gold = torch.nn.utils.rnn.pad_sequence(
            [self.targets[i] for i in batch], batch_first=True, padding_value=-100
        ).to(self.tagger.device)
        emissions, mask = self.tagger.emissions([self.sentences[i] for i in batch])
        loss = self.tagger.head.loss(emissions, gold, mask)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss(batch, emissions, mask)
        return loss

    def evaluate(self) -> Evaluation | None:
        if self.dev is None:
            return None
        scores = dev_scores(self.tagger, self.dev, self.options, self.dev_types)
        micro = scores.micro
        return Evaluation(micro.f1, {"dev_f1": micro.f1, "dev_precision": micro.precision,
                                     "dev_recall": micro.recall}, scores.to_json())

    def save(self, path: Path, extra: dict[str, str | dict[str, Tensor]]) -> None:
        save_bundle(self.tagger, path, extra=extra)

    def restore(self, path: Path) -> None:
        load_weights(self.tagger, read_weights(path / WEIGHTS), str(path / WEIGHTS))


def dev_selection(dev: Corpus, options: TrainConfig) -> Corpus:
    """The dev sentences scored after each epoch: all, or `dev_sample` of them drawn with
    `seed` (kept in corpus order)."""
    if not options.dev_sample or options.dev_sample >= len(dev):
        return dev
    drawn = sorted(random.Random(options.seed).sample(range(len(dev)), options.dev_sample))
    return Corpus([dev.sentences[i] for i in drawn], dev.path)


def dev_scores(tagger: Tagger, dev: Corpus, options: TrainConfig, dev_types: list[str] | None) -> Scores:
    """Dev scores over the types dev annotates (all where `dev_types` is None)."""
    scores = evaluate_tagger(tagger, dev, options.eval_batch_size)
    return scores.restrict(dev_types) if dev_types is not None else scores


def _fingerprint(tagger: Tagger, train: Corpus, dev: Corpus | None, options: TrainConfig,
                 step: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it."""
    fingerprint = {
        "train": content_sha256(train),
        "dev": content_sha256(dev) if dev is not None else None,
        "options": asdict(options),
        "precision": tagger.precision,
    }
    if step is not None:  # an adapt step's source, options and plan: resuming with others would mix runs
        # (not the paths: "source" and "data" name files; the weights and content are hashed)
        fingerprint["step"] = json.loads(json.dumps({k: v for k, v in step.items() if k not in ("source", "data")}))
    return fingerprint


def fit(
    tagger: Tagger,
    train: Corpus,
    dev: Corpus | None,
    options: TrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    test: Corpus | None = None,
    targets: list[Tensor] | None = None,
    extra_loss: ExtraLoss | None = None,
    step: dict[str, Any] | None = None,
    dev_types: list[str] | None = None,
    world: World = SINGLE,
) -> TrainResult:
    """Train `tagger` in place and leave it holding its best-on-dev weights, on its device
    and in its precision (both as the caller set them, and left so).

    With `out`, each epoch writes the log, the learning curves and a checkpoint there, and
    the end writes the model bundle (with its lineage, and the scores on `test` if given).
    `resume` continues from the checkpoint in `out`: the result is the one an uninterrupted
    run gives.

    The transfer layer adds four things: `targets`, per training sentence the gold as label
    indices (words,) or as allowed-tag sets (words, tags) for partial labels (default: the
    corpus's tags); `extra_loss`, a term added to each batch's loss (distillation); and
    `step`, the lineage record to write (default: a "train" step); and `dev_types`, the
    types dev annotates, when it annotates only some: dev F1 then counts only those.

    Under several processes (`world`), every rank calls `fit` with the same tagger and data
    and trains on its share of each batch; rank 0 alone scores, writes and saves (the other
    ranks' result has no test scores).
    """
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise TagshiftError("resume needs the output directory that holds the checkpoint")
    if targets is None:
        tags = model_tags(train, tagger.scheme)
        targets = [tagger.gold_indices([t])[0] for t in tags]  # checks every tag
        uncertain = uncertain_flags(train.sentences)
        if uncertain is not None:  # silver spans marked uncertain: their tag or O
            targets = partial_targets(tags, tagger.labels, [], uncertain)
    if len(targets) != len(train):
        raise TagshiftError(f"{len(targets)} training targets for {len(train)} sentences")

    objective = Tagging(tagger, train, dev, options, targets, extra_loss, dev_types)
    run = Run.start(tagger.network, make_optimizer(tagger, options))
    checkpoint = Checkpoint(out / CHECKPOINT, _fingerprint(tagger, train, dev, options, step)) if out else None
    if resume:
        checkpoint.restore(objective, run)  # type: ignore[union-attr]
    train_with_checkpoints(objective, run, options, len(train), checkpoint, tagger.describe(), progress, world)

    state = run.state
    tagger.network.load_state_dict(run.best_weights)
    tagger.network.eval()
    tagger.fold_head()  # the saved model is a plain head, whatever trained
    best_dev = Scores.from_json(state.best_dev) if state.best_dev is not None else None
    test_scores = None
    if world.main:  # the other ranks' result has no test scores
        if best_dev is not None and objective.dev is not dev:  # chosen on a sample: the record is the whole set's
            best_dev = dev_scores(tagger, dev, options, dev_types)
            state.best_dev = best_dev.to_json()
        test_scores = evaluate_tagger(tagger, test, options.eval_batch_size) if test is not None else None

    def finish() -> None:
        if out is not None:
            _record_step(tagger, train, dev, test, options, state, test_scores, step, command, world)
            save_bundle(tagger, out)
            shutil.rmtree(out / CHECKPOINT, ignore_errors=True)

    world.from_main(finish)  # rank 0 saves; its failure is every rank's
    return TrainResult(state.history, state.best_epoch, best_dev, run.stopped_early, state.seconds, test_scores,
                       options)


def _record_step(tagger: Tagger, train: Corpus, dev: Corpus | None, test: Corpus | None, options: TrainConfig,
                 state: Any, test_scores: Scores | None, step: dict[str, Any] | None, command: str | None,
                 world: World) -> None:
    """Append this run to the tagger's lineage: its data, options, machine and scores."""
    details = dict(step or {"step": "train", "backend": tagger.backend.name})
    data = {
        "train": corpus_record(train),
        "dev": corpus_record(dev) if dev is not None else None,
        "test": corpus_record(test) if test is not None else None,
        **details.pop("data", {}),  # adapt records the file it read, not the pseudo-labelled copy
    }
    tagger.lineage.append(
        step_record(
            details.pop("step"),
            command=command,
            **details,
            data=data,
            options=asdict(options),
            precision=tagger.precision,
            best_epoch=state.best_epoch,
            epochs_run=state.epoch,
            seconds=round(state.seconds, 1),
            ran_on=world.ran_on(tagger.device),
            scores={"dev": state.best_dev, "test": test_scores.to_json() if test_scores else None},
        )
    )
