"""Training: the options (config), the loop every objective shares (loop), and the tagging
objective (ner: `fit`)."""

from tagshift.training.config import FEW_STEPS, TrainConfig, dev_every_for, epoch_steps
from tagshift.training.loop import CHECKPOINT, CURVES, LOG, EarlyStopping, Evaluation, Objective, Run, epochs
from tagshift.training.ner import (
    TrainResult, evaluate_tagger, fit, make_optimizer, model_tags, set_trainable, trainable_layers,
)

__all__ = [
    "CHECKPOINT", "CURVES", "EarlyStopping", "Evaluation", "FEW_STEPS", "LOG", "Objective", "Run", "TrainConfig",
    "TrainResult", "dev_every_for", "epoch_steps", "epochs", "evaluate_tagger", "fit", "make_optimizer", "model_tags",
    "set_trainable", "trainable_layers",
]
