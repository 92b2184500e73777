"""`adapt --compare-scratch`: the control a user needs to know whether adapting paid. A new
model of the adapted model's family, with its model options (encoder, vectors, head) but
none of its weights, trains on the target data alone with `tagshift train`'s rates (the
head at the adapted run's rate: a new head needs it on a small target) and the adapted
run's epochs, patience, batch size and seed; both are then scored on dev over the types the
training data and dev both annotate (the target task). The control is saved as a bundle in
OUT/target-only. When it scores higher and predicts every type the adapted model does (a
map or a replace, not an extend that keeps the source's types), the two swap places: OUT
holds the better model, OUT/adapted the adapted one; otherwise adapt only says so."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.backends import Backend
from tagshift.taggers.tagger import Tagger
from tagshift.training.world import SINGLE, World
from tagshift.training import TrainConfig, TrainResult, evaluate_tagger, fit
from tagshift.transfer.adapt import annotated_types

CONTROL = "target-only"  # the control's bundle, inside adapt's output
ADAPTED = "adapted"  # where the adapted bundle goes when the control takes its place


@dataclass(frozen=True)
class ScratchComparison:
    """Dev F1 (micro, over `types`) of the adapted model and of the target-only control."""

    types: list[str]
    adapted_dev_f1: float
    scratch_dev_f1: float
    scratch_epochs: int
    scratch_best_epoch: int
    scratch_seconds: float
    kept: str = "adapted"  # which model adapt's output holds: "adapted" or "target-only"

    @property
    def pays(self) -> bool:
        return self.adapted_dev_f1 >= self.scratch_dev_f1

    def render(self) -> str:
        scores = (f"dev F1 over {', '.join(self.types)}: adapted {100 * self.adapted_dev_f1:.2f}, trained on the target "
                  f"alone {100 * self.scratch_dev_f1:.2f} ({self.scratch_epochs} epochs, "
                  f"{self.scratch_seconds / 60:.1f} min)")
        if self.pays:
            return f"adapting paid: {scores}; the control is in OUT/{CONTROL}"
        if self.kept == CONTROL:
            return (f"warning: adapting did not pay: {scores}. The source's head start is lost on this target, so "
                    f"OUT holds the model trained on the target alone and OUT/{ADAPTED} the adapted one "
                    "(--no-compare-scratch keeps the adapted model and trains no control)")
        return (f"warning: adapting did not pay: {scores}. The source's head start is lost on this target; the "
                "adapted model stays in OUT, as it keeps types the control has not (the control is in "
                f"OUT/{CONTROL}): train on the target alone (tagshift train), or try other adapt options "
                "(--labels, --encoder-lr)")

    def to_json(self) -> dict:
        return {**asdict(self), "pays": self.pays}


def control_training(adapted: TrainConfig, family: Backend) -> TrainConfig:
    """The control's training: `tagshift train`'s for the family, with the adapted run's length,
    batch, seed and head rate."""
    return TrainConfig.for_backend(family, epochs=adapted.epochs, patience=adapted.patience,
                                   batch_size=adapted.batch_size, seed=adapted.seed, min_steps=adapted.min_steps,
                                   max_minutes=adapted.max_minutes, dev_sample=adapted.dev_sample,
                                   dev_every=adapted.dev_every, head_lr=adapted.head_lr)


def compare_scratch(adapted: Tagger, train: Corpus, dev: Corpus, training: TrainConfig, out: Path | None = None,
                    test: Corpus | None = None, progress: bool = False, command: str | None = None,
                    world: World = SINGLE) -> tuple[ScratchComparison, Tagger, TrainResult]:
    """Train the target-only control on `train` (as given: no pseudo-labels; saved to `out` if
    given) and score both models on `dev` over the types train and dev both annotate that the
    adapted model predicts. `training`: the adapted run's options."""
    types = sorted(annotated_types(train) & annotated_types(dev) & set(adapted.types))
    if not types:
        raise TagshiftError("--compare-scratch: no type is annotated by both the training data and dev, so there is "
                            "no target task to compare on; give a dev set that annotates the training data's types")
    family = adapted.backend
    config = family.unguided(copy.deepcopy(adapted.config))  # (a stacked model's control reads no guide)
    control = family.build(config, train, seed=training.seed, extra=dev).to(adapted.device)
    control.precision = adapted.precision
    result = fit(control, train, dev, control_training(training, family), out, progress=progress, command=command,
                 test=test, dev_types=types, world=world)
    scratch = evaluate_tagger(control, dev).restrict(types).micro.f1
    own = evaluate_tagger(adapted, dev).restrict(types).micro.f1
    takes_over = scratch > own and set(adapted.types) <= set(control.types)
    comparison = ScratchComparison(types, own, scratch, len(result.history), result.best_epoch,
                                   round(result.seconds, 1), CONTROL if takes_over else "adapted")
    return comparison, control, result


def swap_in_control(out: Path) -> None:
    """OUT (the adapted bundle, with OUT/target-only inside) -> OUT the control's bundle, with
    the adapted one inside as OUT/adapted: three renames on one file system, each atomic."""
    held = out.parent / f".{out.name}.{CONTROL}-{os.getpid()}"
    os.replace(out / CONTROL, held)
    os.replace(out, held / ADAPTED)
    os.replace(held, out)


def clear_comparison(out: Path) -> None:
    """Remove an earlier run's control and adapted models from `out` (adapt --overwrite)."""
    for name in (CONTROL, ADAPTED):
        shutil.rmtree(out / name, ignore_errors=True)
