"""The transfer layer: label plans, head surgery, pseudo-labels, partial labels,
distillation and the adapt recipe. It works over taggers and training; nothing below
imports it."""

from tagshift.transfer.adapt import (
    AdaptConfig, Prepared, adapt, adapt_config, adapt_training, enough_epochs, few_steps_hint, prepare,
    prepare_with_recipe, train_prepared,
)
from tagshift.transfer.plan import LabelPlan, make_plan
from tagshift.transfer.surgery import SurgeryReport, adapt_head, rebuild_head

__all__ = [
    "AdaptConfig", "LabelPlan", "Prepared", "SurgeryReport", "adapt", "adapt_config", "adapt_head", "adapt_training",
    "enough_epochs", "few_steps_hint", "make_plan", "prepare", "prepare_with_recipe", "rebuild_head", "train_prepared",
]
