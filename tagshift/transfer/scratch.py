"""`adapt --compare-scratch`: the control a user needs to know whether adapting paid. A new
model of the adapted model's family, with its model options (encoder, vectors, head) but
none of its weights, trains on the target data alone with `tagshift train`'s defaults and
the same seed; both are then scored on dev over the types the training data and dev both
annotate (the target task). When the control scores higher, adapt says so."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.tagger import Tagger
from tagshift.training.world import SINGLE, World
from tagshift.training import TrainConfig, evaluate_tagger, fit
from tagshift.transfer.adapt import annotated_types


@dataclass(frozen=True)
class ScratchComparison:
    """Dev F1 (micro, over `types`) of the adapted model and of the target-only control."""

    types: list[str]
    adapted_dev_f1: float
    scratch_dev_f1: float
    scratch_epochs: int
    scratch_best_epoch: int
    scratch_seconds: float

    @property
    def pays(self) -> bool:
        return self.adapted_dev_f1 >= self.scratch_dev_f1

    def render(self) -> str:
        scores = (f"dev F1 over {', '.join(self.types)}: adapted {100 * self.adapted_dev_f1:.2f}, trained on the target "
                  f"alone {100 * self.scratch_dev_f1:.2f} ({self.scratch_epochs} epochs, "
                  f"{self.scratch_seconds / 60:.1f} min)")
        if self.pays:
            return f"adapting paid: {scores}"
        return (f"warning: adapting did not pay: {scores}. The source's head start is lost on this target: "
                "train on the target alone (tagshift train), or try other adapt options (--labels, --encoder-lr)")

    def to_json(self) -> dict:
        return {**asdict(self), "pays": self.pays}


def compare_scratch(adapted: Tagger, train: Corpus, dev: Corpus, seed: int, batch_size: int | None = None,
                    progress: bool = False, world: World = SINGLE) -> ScratchComparison:
    """Train the target-only control on `train` (as given: no pseudo-labels) and score both
    models on `dev` over the types train and dev both annotate that the adapted model predicts."""
    types = sorted(annotated_types(train) & annotated_types(dev) & set(adapted.types))
    if not types:
        raise TagshiftError("--compare-scratch: no type is annotated by both the training data and dev, so there is "
                            "no target task to compare on; give a dev set that annotates the training data's types")
    family = adapted.backend
    control = family.build(copy.deepcopy(adapted.config), train, seed=seed, extra=dev).to(adapted.device)
    control.precision = adapted.precision
    training = TrainConfig.for_backend(family, seed=seed, batch_size=batch_size)
    result = fit(control, train, dev, training, progress=progress, dev_types=types, world=world)
    scratch = evaluate_tagger(control, dev).restrict(types).micro.f1
    own = evaluate_tagger(adapted, dev).restrict(types).micro.f1
    return ScratchComparison(types, own, scratch, len(result.history), result.best_epoch, round(result.seconds, 1))
