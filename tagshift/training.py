"""Training a tagger: seeded batches, optimiser and schedule, dev evaluation, early stopping,
a checkpoint every epoch that `resume` continues from to the same result.

Determinism: each epoch reseeds torch from (seed, epoch), and draws its batch order from a
generator seeded the same way, so epoch k does the same work whether or not the run was
interrupted before it. A checkpoint holds weights, the best weights so far, the optimiser
state and the history: everything else is recomputed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from tagshift.atomic import write_text_atomic
from tagshift.bundle import WEIGHTS, load_weights, read_weights, save_bundle
from tagshift.corpus import Corpus
from tagshift.charts import plot_learning_curves
from tagshift.errors import TagshiftError
from tagshift.fields import check_fields
from tagshift.lineage import content_sha256, corpus_record, machine_record, step_record
from tagshift.metrics import Scores, score_tags
from tagshift.progress import progress_bar
from tagshift.schemes import SCHEMES, convert_tags
from tagshift.taggers.tagger import Tagger

# A term added to a batch's loss: (sentence indices, emissions, mask) -> scalar.
ExtraLoss = Callable[[list[int], Tensor, Tensor], Tensor]

LOG = "train_log.jsonl"
CURVES = "learning_curve.png"
CHECKPOINT = "checkpoint"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
BEST = "best.safetensors"

# Fewer optimiser steps than this rarely train a new head: CrossNER politics' 200 sentences
# give a transformer 52 in its 4 default epochs, and its dev F1 levelled off only after
# 15-20 epochs (200-260 steps). Early stopping waits for them too: on CrossNER ai (7 steps
# an epoch) a quietly initialised new type stays below O for ~6 epochs while dev F1 is
# flat, and patience 5 used to end the run there, with epoch 1 as the best.
FEW_STEPS = 250


@dataclass
class TrainConfig:
    """How to train; every field is a `--option` of `tagshift train` and a key of its TOML."""

    epochs: int = 30
    batch_size: int = 16
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    clip: float = 5.0  # max gradient norm; 0 = no clipping
    warmup: float = 0.0  # share of all steps with a linearly rising learning rate
    decay: Literal["none", "linear"] = "none"
    accumulate: int = 1  # batches per optimiser step
    patience: int = 5  # epochs without a better dev F1 before stopping; 0 = never stop early
    min_steps: int = FEW_STEPS  # optimiser steps before early stopping may end a run (a new head needs them)
    seed: int = 0
    eval_batch_size: int = 64
    head_lr: float | None = None  # the head's (and CRF's) learning rate; None: lr
    encoder_lr: float | None = None  # the encoder's; None: lr
    freeze_epochs: int = 0  # epochs that train only the head before the encoder joins in
    unfreeze: Literal["all", "gradual"] = "all"  # after them: every layer at once, or top layers first
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast matrix products (see taggers.tagger.PRECISIONS)

    def __post_init__(self) -> None:
        try:
            check_fields(
                self,
                positive=("batch_size", "lr", "accumulate", "eval_batch_size", "head_lr", "encoder_lr"),
                non_negative=("epochs", "momentum", "weight_decay", "clip", "patience", "min_steps", "freeze_epochs"),
            )
        except ValueError as err:
            raise TagshiftError(f"training option {err}") from None
        if not 0 <= self.warmup < 1:
            raise TagshiftError(f"training option warmup = {self.warmup!r} should lie in [0, 1)")

    @classmethod
    def for_backend(cls, backend: str, **overrides: Any) -> TrainConfig:
        """Defaults that suit each backend: Adam for the BiLSTM-CRF; the BERT recipe (AdamW,
        warm-up then linear decay, few epochs) for transformers."""
        base: dict[str, Any] = {}
        if backend == "transformer":
            base = dict(epochs=4, batch_size=16, optimizer="adamw", lr=5e-5, weight_decay=0.01, clip=1.0,
                        warmup=0.1, decay="linear", patience=0)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TagshiftError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class TrainResult:
    """What a run did: per-epoch history, the best epoch and its dev scores."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_dev: Scores | None
    stopped_early: bool
    seconds: float
    test: Scores | None = None


@dataclass
class _State:
    """What the checkpoint carries besides weights and optimiser state."""

    epoch: int = 0  # epochs completed
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_dev: dict[str, Any] | None = None


def epoch_steps(sentences: int, options: TrainConfig) -> int:
    """Optimiser steps in one epoch over `sentences` (the last batch may be short)."""
    return math.ceil(math.ceil(sentences / options.batch_size) / options.accumulate)


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
    """One optimiser over two parameter groups: the encoder's and the head's, each at its own
    learning rate. Frozen parameters stay in it: they get no gradient, so no update."""
    groups = [
        {"params": list(tagger.encoder.parameters()), "lr": options.encoder_lr or options.lr},
        {"params": list(tagger.head.parameters()), "lr": options.head_lr or options.lr},
    ]
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


def lr_factor(step: int, total: int, options: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimiser step `step` of `total`."""
    warmup = int(options.warmup * total)
    if step < warmup:
        return (step + 1) / warmup
    if options.decay == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    return 1.0


def evaluate_tagger(tagger: Tagger, corpus: Corpus, batch_size: int = 64, mode: str = "conlleval") -> Scores:
    """Entity-level scores of the tagger's predictions on a labelled corpus."""
    predicted = tagger.predict([s.tokens for s in corpus.sentences], batch_size, confidence=False)
    return score_tags(corpus.tag_sequences, [p.tags for p in predicted], mode)


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


def _data_fingerprint(train: Corpus, dev: Corpus | None, options: TrainConfig) -> dict[str, Any]:
    return {
        "train": content_sha256(train),
        "dev": content_sha256(dev) if dev is not None else None,
        "options": asdict(options),
    }


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
) -> TrainResult:
    """Train `tagger` in place and leave it holding its best-on-dev weights.

    With `out`, each epoch writes the log, the learning curves and a checkpoint there, and
    the end writes the model bundle (with its lineage, and the scores on `test` if given).
    `resume` continues from the checkpoint in `out`: the result is the one an uninterrupted
    run gives.

    The transfer layer adds four things: `targets`, per training sentence the gold as label
    indices (words,) or as allowed-tag sets (words, tags) for partial labels (default: the
    corpus's tags); `extra_loss`, a term added to each batch's loss (distillation); and
    `step`, the lineage record to write (default: a "train" step); and `dev_types`, the
    types dev annotates, when it annotates only some: dev F1 then counts only those.
    """
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise TagshiftError("resume needs the output directory that holds the checkpoint")
    if targets is None:
        targets = [tagger.gold_indices([tags])[0] for tags in model_tags(train, tagger.scheme)]  # checks every tag
    if len(targets) != len(train):
        raise TagshiftError(f"{len(targets)} training targets for {len(train)} sentences")
    sentences = [s.tokens for s in train.sentences]
    lengths = [len(s) for s in sentences]
    steps_per_epoch = epoch_steps(len(sentences), options)
    total_steps = steps_per_epoch * options.epochs

    tagger.precision = options.precision  # dev scoring too, so the best epoch is chosen as it trained
    optimizer = make_optimizer(tagger, options)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    state = _State()
    best_weights = {k: v.clone() for k, v in tagger.network.state_dict().items()}
    fingerprint = _data_fingerprint(train, dev, options)
    if step is not None:  # an adapt step's source, options and plan: resuming with others would mix runs
        # (not the paths: "source" and "data" name files; the weights and content are hashed)
        fingerprint["step"] = json.loads(json.dumps({k: v for k, v in step.items() if k not in ("source", "data")}))
    if resume:
        state, best_weights = _restore(tagger, optimizer, out / CHECKPOINT, fingerprint)  # type: ignore[operator]

    started = time.perf_counter() - state.seconds
    stopped_early = False
    for epoch in range(state.epoch + 1, options.epochs + 1):
        steps_done = (epoch - 1) * steps_per_epoch
        if options.patience and state.bad_epochs >= options.patience and steps_done >= options.min_steps:
            stopped_early = True
            break
        epoch_seed = options.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        batches = epoch_batches(lengths, options.batch_size, torch.Generator().manual_seed(epoch_seed))
        set_trainable(tagger, epoch, options)
        tagger.network.train()
        total_loss, optimizer_step = 0.0, steps_done
        bar = progress_bar(batches, f"epoch {epoch}/{options.epochs}", enabled=progress, unit="batch")
        for number, indices in enumerate(bar, start=1):
            batch_gold = torch.nn.utils.rnn.pad_sequence(
                [targets[i] for i in indices], batch_first=True, padding_value=-100
            ).to(tagger.device)
            emissions, mask = tagger.emissions([sentences[i] for i in indices])
            loss = tagger.head.loss(emissions, batch_gold, mask)
            if extra_loss is not None:
                loss = loss + extra_loss(indices, emissions, mask)
            (loss / options.accumulate).backward()
            total_loss += float(loss.detach())
            if number % options.accumulate == 0 or number == len(batches):
                if options.clip:
                    torch.nn.utils.clip_grad_norm_(tagger.parameters(), options.clip)
                factor = lr_factor(optimizer_step, total_steps, options)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                optimizer_step += 1
            bar.set_postfix(loss=f"{total_loss / number:.3f}", refresh=False)
        record: dict[str, Any] = {"epoch": epoch, "steps": optimizer_step, "train_loss": total_loss / len(batches),
                                  "lr": optimizer.param_groups[-1]["lr"]}
        scoring_started = time.perf_counter()
        dev_scores = evaluate_tagger(tagger, dev, options.eval_batch_size) if dev is not None else None
        record["dev_seconds"] = round(time.perf_counter() - scoring_started, 2)  # where the epoch's time went
        if dev_scores is not None and dev_types is not None:
            dev_scores = dev_scores.restrict(dev_types)
        if dev_scores is not None:
            micro = dev_scores.micro
            record.update(dev_f1=micro.f1, dev_precision=micro.precision, dev_recall=micro.recall)
        improved = dev_scores is None or dev_scores.micro.f1 > state.best_f1
        if improved:
            state.best_f1 = dev_scores.micro.f1 if dev_scores is not None else -1.0
            state.best_epoch = epoch
            state.best_dev = dev_scores.to_json() if dev_scores is not None else None
            state.bad_epochs = 0
            best_weights = {k: v.detach().clone() for k, v in tagger.network.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        state.seconds = time.perf_counter() - started
        record.update(best=improved, seconds=round(state.seconds, 2))
        state.history.append(record)
        if progress:
            dev_text = f", dev F1 {100 * record['dev_f1']:.2f}" if "dev_f1" in record else ""
            bar.write(f"epoch {epoch}: loss {record['train_loss']:.4f}{dev_text}{' (best)' if improved else ''}")
        if out is not None:
            _write_progress(out, state.history, tagger)
            _checkpoint(tagger, optimizer, best_weights, state, fingerprint, out / CHECKPOINT)

    tagger.network.load_state_dict(best_weights)
    tagger.network.eval()
    tagger.fold_head()  # the saved model is a plain head, whatever trained
    best_dev = Scores.from_json(state.best_dev) if state.best_dev is not None else None
    test_scores = evaluate_tagger(tagger, test, options.eval_batch_size) if test is not None else None
    result = TrainResult(state.history, state.best_epoch, best_dev, stopped_early, state.seconds, test_scores)
    if out is not None:
        details = dict(step or {"step": "train", "backend": tagger.backend})
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
                best_epoch=state.best_epoch,
                epochs_run=state.epoch,
                seconds=round(state.seconds, 1),
                ran_on=machine_record(tagger.device),
                scores={"dev": state.best_dev, "test": test_scores.to_json() if test_scores else None},
            )
        )
        tagger.save(out)
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return result


def _write_progress(out: Path, history: list[dict[str, Any]], tagger: Tagger) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / LOG, "".join(json.dumps(h) + "\n" for h in history))
    plot_learning_curves(history, out / CURVES, tagger.describe())


def _checkpoint(
    tagger: Tagger,
    optimizer: torch.optim.Optimizer,
    best_weights: dict[str, Tensor],
    state: _State,
    fingerprint: dict[str, Any],
    path: Path,
) -> None:
    tensors, groups = _optimizer_tensors(optimizer)
    trainer = {"state": asdict(state), "param_groups": groups, "fingerprint": fingerprint}
    best = {k: v.contiguous() for k, v in best_weights.items()}
    save_bundle(tagger, path, extra={STATE: json.dumps(trainer), OPTIMIZER: tensors, BEST: best})


def _restore(
    tagger: Tagger, optimizer: torch.optim.Optimizer, path: Path, fingerprint: dict[str, Any]
) -> tuple[_State, dict[str, Tensor]]:
    """Weights, optimiser and progress from the checkpoint at `path`, if it matches this run."""
    if not (path / STATE).is_file():
        raise TagshiftError(f"{path}: no checkpoint to resume from; start without --resume")
    trainer = json.loads((path / STATE).read_text(encoding="utf-8"))
    if trainer["fingerprint"] != fingerprint:
        before = trainer["fingerprint"]
        changed = [k for k in fingerprint if k != "step" and before.get(k) != fingerprint[k]]
        changed += [f"adapt {k}" for k in (fingerprint.get("step") or {}) if (before.get("step") or {}).get(k) != fingerprint["step"][k]]
        raise TagshiftError(
            f"{path}: the checkpoint was made with other {' and '.join(changed)}; resume with the same "
            "data and options, or start afresh without --resume"
        )
    load_weights(tagger, read_weights(path / WEIGHTS), str(path / WEIGHTS))
    best_tagger_weights = read_weights(path / BEST)
    _load_optimizer(optimizer, read_weights(path / OPTIMIZER), trainer["param_groups"])
    return _State(**trainer["state"]), best_tagger_weights
