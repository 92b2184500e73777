"""The training loop every objective shares: seeded epochs of optimiser steps as a generator,
and the consumers that act on each epoch it yields (the log and curves, the checkpoint and
resume, early stopping), the shape of spaCy's training loop.

An objective (the tagging one in ner.py, the masked-LM one in mlm.py) says what a batch's
loss is, how the model scores on dev, and how it saves itself. The loop owns the rest:
batch order, gradient accumulation, clipping, the learning-rate schedule, the best weights.

Determinism: each epoch reseeds torch from (seed, epoch), and draws its batch order from a
generator seeded the same way, so epoch k does the same work whether or not the run was
interrupted before it. A checkpoint holds the weights, the best weights so far, the
optimiser state and the loop state: everything else is recomputed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from torch import Tensor, nn

from tagshift.atomic import write_text_atomic
from tagshift.bundle import read_weights
from tagshift.charts import plot_learning_curves
from tagshift.errors import TagshiftError
from tagshift.fields import check_fields
from tagshift.progress import progress_bar
from tagshift.training.config import TrainConfig, epoch_steps
from tagshift.training.world import SINGLE, World

LOG = "train_log.jsonl"
CURVES = "learning_curve.png"
CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
# The checkpoint and the curves are written after the first epoch, then at most this often, and
# after the last epoch (the log after every one): on a small target, whose epochs take a second,
# writing them every epoch took 17% of an adapt (the model, its best weights and the optimiser,
# and the PNG). A crash loses at most this much training.
PROGRESS_EVERY_S = 30.0
BEST = "best.safetensors"


class Diverged(TagshiftError):
    """The loss or the weights turned non-finite: the run stops before anything of it is saved."""


@dataclass(frozen=True)
class Evaluation:
    """An objective's score on dev: `score` picks the best epoch (higher is better),
    `record` joins the epoch's log line, `saved` is kept as the best epoch's scores."""

    score: float
    record: dict[str, float]
    saved: dict[str, Any]


class Objective(Protocol):
    """What a training objective gives the loop."""

    network: nn.Module

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        """One epoch's batches, as indices of training examples, in the order they train."""

    def start_epoch(self, epoch: int) -> None:
        """Put the network in train mode and freeze or unfreeze what `epoch` trains."""

    def loss(self, batch: list[int]) -> Tensor:
        """The loss of one batch, to minimise."""

    def evaluate(self) -> Evaluation | None:
        """The score on dev after an epoch; None when there is no dev set (every epoch is best)."""

    def save(self, path: Path, extra: dict[str, str | dict[str, Tensor]]) -> None:
        """Save the model at `path` (atomically) with the `extra` files (the checkpoint's)."""

    def restore(self, path: Path) -> None:
        """Load the weights a `save` wrote at `path`."""


@dataclass
class LoopState:
    """What the checkpoint carries besides weights and optimiser state."""

    epoch: int = 0  # epochs completed
    best_f1: float = -1.0  # the best epoch's Evaluation.score (named for the tagging objective's)
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_dev: dict[str, Any] | None = None


@dataclass
class Run:
    """A run in progress: the optimiser, the loop state and the best weights so far."""

    optimizer: torch.optim.Optimizer
    state: LoopState
    best_weights: dict[str, Tensor]
    stopped_early: bool = False
    out_of_time: bool = False  # the time budget (TrainConfig.max_minutes) ended the run

    @classmethod
    def start(cls, network: nn.Module, optimizer: torch.optim.Optimizer) -> Run:
        return cls(optimizer, LoopState(), {k: v.clone() for k, v in network.state_dict().items()})


def lr_factor(step: int, total: int, options: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimiser step `step` of `total`.

    >>> [lr_factor(s, 10, TrainConfig(warmup=0.2, decay="linear")) for s in (0, 1, 2, 6)]
    [0.5, 1.0, 1.0, 0.5]
    >>> [lr_factor(s, 10, TrainConfig(epochs=5, decay="inverse", decay_rate=0.5)) for s in (0, 1, 2, 9)]
    [1.0, 1.0, 0.6666666666666666, 0.3333333333333333]
    """
    warmup = int(options.warmup * total)
    if step < warmup:
        return (step + 1) / warmup
    if options.decay == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if options.decay == "inverse":
        epochs_done = step // max(1, total // max(1, options.epochs))
        return 1.0 / (1.0 + options.decay_rate * epochs_done)
    return 1.0


@dataclass(frozen=True)
class EarlyStopping:
    """Stop after `patience` epochs (dev scorings, with `dev_every`) without a better dev
    score, once `min_steps` optimiser steps have run (a new head needs them); patience 0
    never stops."""

    patience: int
    min_steps: int

    def done(self, state: LoopState, steps: int) -> bool:
        return bool(self.patience) and state.bad_epochs >= self.patience and steps >= self.min_steps


def epochs(
    objective: Objective,
    run: Run,
    options: TrainConfig,
    examples: int,
    stopping: EarlyStopping | None = None,
    progress: bool = False,
    world: World = SINGLE,
) -> Iterator[dict[str, Any]]:
    """Train epoch after epoch, from the one after `run.state.epoch`, and yield each epoch's
    log record once its weights, scores and `run` are up to date. Stops early where
    `stopping` says so (checked before each epoch, so a resumed run stops where the
    uninterrupted one would), and where the time budget runs out: mid-epoch, after an
    optimiser step, that epoch is scored and is the last.

    Under several processes (`world`, world.py) each trains on its share of every batch,
    rank 0 scores dev and the others take its score, and every decision to stop (a
    diverged loss, the time budget) is taken by all ranks together."""
    world.check_batch(options.batch_size)
    optimizer, state = run.optimizer, run.state
    progress = progress and world.main
    budget = 60 * options.max_minutes or math.inf
    steps_per_epoch = epoch_steps(examples, options)
    total_steps = steps_per_epoch * options.epochs
    # the rates the schedule scales: kept in the param groups (as torch's schedulers keep them),
    # so that a resumed run, whose groups hold the last scaled rate, scales the same ones
    base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
    started = time.perf_counter() - state.seconds
    trainable: tuple[bool, ...] | None = None  # which parameters train: DDP is rebuilt when it changes
    for epoch in range(state.epoch + 1, options.epochs + 1):
        steps_done = (epoch - 1) * steps_per_epoch
        if stopping is not None and stopping.done(state, steps_done):
            run.stopped_early = True
            return
        if budget < math.inf and world.any(state.seconds >= budget):  # (scoring dev spent it, or a resumed run's)
            run.out_of_time = True
            return
        epoch_seed = options.seed * 100_003 + epoch
        torch.manual_seed(world.seed(epoch_seed))
        batches = objective.batches(torch.Generator().manual_seed(epoch_seed))  # the same on every rank
        objective.start_epoch(epoch)
        if trainable != (now := tuple(p.requires_grad for p in objective.network.parameters())):
            trainable, batch_loss = now, world.loss_of(objective)
        total_loss, optimizer_step = 0.0, steps_done
        bar = progress_bar(batches, f"epoch {epoch}/{options.epochs}", enabled=progress, unit="batch")
        for number, batch in enumerate(bar, start=1):
            share, weight = world.share(batch)
            loss = batch_loss(share) * weight
            if world.any(not torch.isfinite(loss)):
                value = float(loss.detach())
                where = f"is {value}" if not math.isfinite(value) else "is not finite on another process"
                raise Diverged(f"{world.where()}the training loss {where} at epoch {epoch}, batch {number} "
                               f"(optimiser step {optimizer_step + 1}): training diverged; lower the learning rate")
            (loss / options.accumulate).backward()
            total_loss += float(loss.detach())
            if number % options.accumulate == 0 or number == len(batches):
                if options.clip:
                    torch.nn.utils.clip_grad_norm_(objective.network.parameters(), options.clip)
                factor = lr_factor(optimizer_step, total_steps, options)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                optimizer_step += 1
                if budget < math.inf and world.any(time.perf_counter() - started >= budget):
                    run.out_of_time = True
                    break
            bar.set_postfix(loss=f"{total_loss / number:.3f}", refresh=False)
        total_loss = world.sum(total_loss) / world.size  # each rank's weighted share: the whole batches' loss
        if not all(bool(torch.isfinite(p).all()) for p in objective.network.parameters()):
            # the last step's update overflowed: nothing of this epoch is saved
            raise Diverged(f"the weights turned non-finite in epoch {epoch} (optimiser step {optimizer_step}): "
                           "training diverged; lower the learning rate")
        record: dict[str, Any] = {"epoch": epoch, "steps": optimizer_step, "train_loss": total_loss / number,
                                  "lr": optimizer.param_groups[-1]["lr"]}
        if run.out_of_time:
            record["batches"] = f"{number} of {len(batches)} (out of time)"
        scored = scores_dev(options, steps_done, optimizer_step, last=epoch == options.epochs or run.out_of_time)
        scoring_started = time.perf_counter()
        evaluation = _scored(world, objective) if scored else None
        record["dev_seconds"] = round(time.perf_counter() - scoring_started, 2)  # where the epoch's time went
        if evaluation is not None:
            record.update(evaluation.record)
        # an epoch left unscored is neither best nor counted against patience
        improved = scored and (evaluation is None or evaluation.score > state.best_f1)
        if improved:
            state.best_f1 = evaluation.score if evaluation is not None else -1.0
            state.best_epoch = epoch
            state.best_dev = evaluation.saved if evaluation is not None else None
            state.bad_epochs = 0
            run.best_weights = {k: v.detach().clone() for k, v in objective.network.state_dict().items()}
        elif scored:
            state.bad_epochs += 1
        state.epoch = epoch
        state.seconds = time.perf_counter() - started
        record.update(best=improved, seconds=round(state.seconds, 2))
        state.history.append(record)
        if progress:
            dev_text = f", dev F1 {100 * record['dev_f1']:.2f}" if "dev_f1" in record else ""
            bar.write(f"epoch {epoch}: loss {record['train_loss']:.4f}{dev_text}{' (best)' if improved else ''}")
        yield record
        if run.out_of_time:
            return


def scores_dev(options: TrainConfig, steps_before: int, steps_after: int, last: bool) -> bool:
    """Whether the epoch that took the optimiser from `steps_before` to `steps_after` is
    scored on dev: every epoch, or with `dev_every` the epochs that cross a multiple of it,
    and the last (`last`) always.

    >>> [scores_dev(TrainConfig(dev_every=20), 7 * e, 7 * (e + 1), last=False) for e in range(6)]
    [False, False, True, False, False, True]
    """
    every = options.dev_every
    return not every or last or steps_after // every > steps_before // every


def _scored(world: World, objective: Objective) -> Evaluation | None:
    """The objective's dev score, computed on rank 0 and sent to the others."""
    if not world.distributed:
        return objective.evaluate()

    def evaluate() -> dict[str, Any] | None:
        evaluation = objective.evaluate()
        return asdict(evaluation) if evaluation is not None else None

    scored = world.from_main(evaluate)
    return Evaluation(**scored) if scored is not None else None


# --- consumers ----------------------------------------------------------------------------


def train_with_checkpoints(objective: Objective, run: Run, options: TrainConfig, examples: int,
                           checkpoint: Checkpoint | None, title: str, progress: bool = False,
                           world: World = SINGLE) -> None:
    """`epochs` to the end, early stopping as `options` say; after each epoch rank 0 writes
    the log beside the checkpoint, and the checkpoint and the curves (titled `title`) as
    PROGRESS_EVERY_S says."""
    written_at, behind = -math.inf, False
    for _ in epochs(objective, run, options, examples, EarlyStopping(options.patience, options.min_steps), progress,
                    world):
        if checkpoint is not None and world.main:
            write_log(checkpoint.path.parent, run.state.history)
            behind = time.monotonic() - written_at < PROGRESS_EVERY_S
            if not behind:
                write_checkpoint(objective, run, checkpoint, title)
                written_at = time.monotonic()
    if behind and checkpoint is not None:
        write_checkpoint(objective, run, checkpoint, title)


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """The log: a JSON line an epoch."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / LOG, "".join(json.dumps(h) + "\n" for h in history))


def write_checkpoint(objective: Objective, run: Run, checkpoint: Checkpoint, title: str) -> None:
    """The learning curves beside the checkpoint, and the checkpoint."""
    plot_learning_curves(run.state.history, checkpoint.path.parent / CURVES, title)
    checkpoint.save(objective, run)


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint at `path`: after each epoch the model, the best weights, the optimiser
    and the loop state, saved as one directory swapped in whole. `fingerprint` (the data's
    hashes and the options) must match to resume, so a resumed run is the run it continues."""

    path: Path
    fingerprint: dict[str, Any]

    def save(self, objective: Objective, run: Run) -> None:
        tensors, groups = _optimizer_tensors(run.optimizer)
        trainer = {"state": asdict(run.state), "param_groups": groups, "fingerprint": self.fingerprint}
        # The best weights the model's own weights (saved beside) already hold are left out:
        # frozen word vectors (GloVe's 400,000 x 50) were written twice an epoch otherwise
        current = objective.network.state_dict()
        best = {k: v.contiguous() for k, v in run.best_weights.items() if not torch.equal(v, current[k])}
        objective.save(self.path, {STATE: json.dumps(trainer), OPTIMIZER: tensors, BEST: best})

    def restore(self, objective: Objective, run: Run) -> None:
        """Weights, optimiser and progress from the checkpoint, if it matches this run."""
        if not (self.path / STATE).is_file():
            raise TagshiftError(f"{self.path}: no checkpoint to resume from; start without --resume")
        trainer = read_trainer_state(self.path / STATE)
        before, now = comparable(trainer["fingerprint"]), comparable(self.fingerprint)
        if before != now:
            raise TagshiftError(
                f"{self.path}: the checkpoint was made with other {'; '.join(changes(before, now))}; "
                "resume with the same data and options, or start afresh without --resume"
            )
        objective.restore(self.path)
        best = read_weights(self.path / BEST)  # (what it leaves out equalled the restored weights)
        run.best_weights = {k: best[k] if k in best else v.detach().clone()
                            for k, v in objective.network.state_dict().items()}
        try:
            _load_optimizer(run.optimizer, read_weights(self.path / OPTIMIZER), trainer["param_groups"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise TagshiftError(f"{self.path / OPTIMIZER}: does not fit this run's optimiser ({err}); the checkpoint is "
                                "damaged: start afresh without --resume") from None
        run.state = trainer["state"]


FINGERPRINT_PARTS = {"train": "training data", "dev": "dev data", "options": "training options",
                     "precision": "precision", "step": "adapt step"}


# options a resumed run may change: a run out of time resumes with a larger budget
RESUMABLE_WITH_ANOTHER = ("max_minutes",)


def comparable(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The part of a fingerprint a resumed run must match."""
    options = {k: v for k, v in fingerprint.get("options", {}).items() if k not in RESUMABLE_WITH_ANOTHER}
    return {**fingerprint, "options": options} if "options" in fingerprint else fingerprint


def changes(before: Any, now: Any, path: tuple[str, ...] = ()) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, named down to the
    option, with both values.

    >>> changes({"options": {"lr": 0.01, "seed": 1}, "train": "ab12"}, {"options": {"lr": 0.005, "seed": 1}, "train": "ab12"})
    ['training options: lr 0.01 (now 0.005)']
    """
    if isinstance(before, dict) and isinstance(now, dict):
        return [c for key in dict.fromkeys([*now, *before]) for c in changes(before.get(key), now.get(key), (*path, key))]
    if before == now:
        return []
    part = FINGERPRINT_PARTS.get(path[0], path[0]) if path else "fingerprint"
    if len(path) < 2:
        return [part]  # the data's content hashes: the values say nothing to a person
    values = f"{json.dumps(before)} (now {json.dumps(now)})"
    return [f"{part}: {'.'.join(path[1:])} {values if len(values) <= 80 else '(changed)'}"]


def read_trainer_state(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer_state.json, checked field by field: one line naming the field
    where it is damaged, never a traceback."""
    def damaged(what: str) -> TagshiftError:
        return TagshiftError(f"{path}: {what}; the checkpoint is damaged: start afresh without --resume")

    try:
        trainer = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise damaged(f"not valid JSON ({err})") from None
    if not isinstance(trainer, dict):
        raise damaged("not a JSON object")
    for key, kind in (("fingerprint", dict), ("state", dict), ("param_groups", list)):
        if not isinstance(trainer.get(key), kind):
            raise damaged(f"field '{key}' is {'missing' if key not in trainer else type(trainer[key]).__name__}; "
                          f"expected a JSON {'object' if kind is dict else 'list'}")
    try:
        trainer["state"] = LoopState(**trainer["state"])
        check_fields(trainer["state"], non_negative=("epoch", "best_epoch", "bad_epochs", "seconds"))
    except (TypeError, ValueError) as err:
        raise damaged(f"field 'state' does not hold a loop state ({err})") from None
    return trainer


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Optimiser state as flat tensors (safetensors) and param groups as JSON, so that a
    checkpoint, like a bundle, loads without running code."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": (value if isinstance(value, Tensor) else torch.tensor(value)).contiguous()
        for index, entries in state["state"].items()
        for key, value in entries.items()
    }
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
