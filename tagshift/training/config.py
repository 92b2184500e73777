"""How to train: the options every objective's loop reads, and their defaults per family."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from tagshift.errors import TagshiftError
from tagshift.fields import check_fields
from tagshift.taggers.backends import Backend, get_backend

# Fewer optimiser steps than this rarely train a new head: CrossNER politics' 200 sentences
# give a transformer 52 in its 4 default epochs, and its dev F1 levelled off only after
# 15-20 epochs (200-260 steps). Early stopping waits for them too: on CrossNER ai (7 steps
# an epoch) a quietly initialised new type stays below O for ~6 epochs while dev F1 is
# flat, and patience 5 used to end the run there, with epoch 1 as the best.
FEW_STEPS = 250


@dataclass
class TrainConfig:
    """How to train; every field is a key of a job file's `[training]`, the common ones also
    `--options` of `tagshift train` and `adapt`.
    Where the network runs and how it computes (device, precision) are the tagger's."""

    epochs: int = 30
    batch_size: int = 16
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    clip: float = 5.0  # max gradient norm; 0 = no clipping
    warmup: float = 0.0  # share of all steps with a linearly rising learning rate
    # after warm-up: none; linear to 0 at the last step; inverse, lr / (1 + decay_rate * epochs
    # done), the SGD schedule of Ma and Hovy 2016 (rate 0.05)
    decay: Literal["none", "linear", "inverse"] = "none"
    decay_rate: float = 0.05
    accumulate: int = 1  # batches per optimiser step
    patience: int = 5  # epochs (dev scorings, with dev_every) without a better dev F1 before stopping; 0 = never
    min_steps: int = FEW_STEPS  # optimiser steps before early stopping may end a run (a new head needs them)
    seed: int = 0
    eval_batch_size: int = 64
    head_lr: float | None = None  # the head's (and CRF's) learning rate; None: lr
    encoder_lr: float | None = None  # the encoder's; None: lr
    # the encoder's rate falls by this factor a layer down from its top (layer-wise rate decay,
    # as ULMFiT, ELECTRA and DeBERTa fine-tune: the lower layers hold what carries over); 1: one rate
    layer_decay: float = 1.0
    freeze_epochs: int = 0  # epochs that train only the head before the encoder joins in
    unfreeze: Literal["all", "gradual"] = "all"  # after them: every layer at once, or top layers first
    # a time budget (0: none): once training has run this long, the epoch under way ends after
    # its next optimiser step, is scored like any other, and is the last
    max_minutes: float = 0.0
    # dev sentences scored after each epoch to choose the best (a fixed draw, from `seed`; 0:
    # all): a dev set several times the training set's size costs more than the training;
    # the epoch chosen is then scored on the whole dev set
    dev_sample: int = 0
    # optimiser steps between dev scorings (0: after every epoch): an epoch is scored when its
    # steps cross a multiple of this, and the last epoch always is; `patience` then counts
    # scorings without a better dev F1 (as Hugging Face's eval_steps and early stopping do).
    # On a small target, whose epochs make a few steps, scoring every epoch costs a third of
    # an adapt
    dev_every: int = 0

    def __post_init__(self) -> None:
        try:
            check_fields(
                self,
                positive=("batch_size", "lr", "accumulate", "eval_batch_size", "head_lr", "encoder_lr"),
                non_negative=("epochs", "momentum", "weight_decay", "decay_rate", "clip", "patience", "min_steps", "freeze_epochs",
                              "max_minutes", "dev_sample", "dev_every"),
            )
        except ValueError as err:
            raise TagshiftError(f"training option {err}") from None
        if not 0 < self.layer_decay <= 1:
            raise TagshiftError(f"training option layer_decay = {self.layer_decay!r} should lie in (0, 1]: each layer "
                                "down trains at that share of the rate of the one above (1: every layer at one rate)")
        if not 0 <= self.warmup < 1:
            raise TagshiftError(f"training option warmup = {self.warmup!r} should lie in [0, 1)")

    @classmethod
    def for_backend(cls, backend: str | Backend, **overrides: Any) -> TrainConfig:
        """The family's training defaults (taggers/backends.py), then `overrides` (None
        values ignored); unknown options are named.

        >>> TrainConfig.for_backend("transformer", epochs=2).optimizer
        'adamw'
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TagshiftError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**get_backend(backend).training, **{k: v for k, v in overrides.items() if v is not None}})


def epoch_steps(examples: int, options: TrainConfig) -> int:
    """Optimiser steps in one epoch over `examples` (the last batch may be short)."""
    return math.ceil(math.ceil(examples / options.batch_size) / options.accumulate)


def dev_every_for(train: int, dev: int, options: TrainConfig) -> int:
    """`dev_every` that scores a dev set larger than the training set once every
    ceil(dev / train) epochs, so that scoring dev costs about as many forward passes as the
    epochs train on; 0 (every epoch) when dev is no larger than train.

    >>> dev_every_for(100, 450, TrainConfig(batch_size=16))  # 5 epochs of 7 steps
    35
    >>> dev_every_for(1000, 300, TrainConfig())
    0
    """
    if not train or dev <= train:
        return 0
    return math.ceil(dev / train) * epoch_steps(train, options)
