"""`tagshift pretrain`: masked-LM continued pretraining of a transformer encoder on raw text
(tagshift/training/mlm.py holds the objective, jobs.py the recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tagshift.cli.options import (
    DEVICE, MAX_MINUTES, OVERWRITE, PROGRESS, RESUME, SEED, TRAIN_BATCH_SIZE, app, command_line, launched, user_errors,
)
from tagshift.cli.raw import RAW_HELP
from tagshift.taggers.backends import TRANSFORMER
from tagshift.taggers.transformer import DEFAULT_ENCODER
from tagshift.training.loop import CURVES, LOG
from tagshift.jobs import run_pretrain
from tagshift.training.mlm import MaskingConfig


@app.command()
def pretrain(
    model: Optional[Path] = typer.Argument(None, help="A tagshift transformer model whose encoder to pretrain; the result is a model with the same head and labels. Without it, --encoder is pretrained."),
    text: Path = typer.Option(..., "--text", help=RAW_HELP),
    out: Path = typer.Option(..., "--out", help="Directory for the pretrained model (a Hugging Face directory for --encoder, a tagshift model for MODEL), its log, curve and checkpoints."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=f"The encoder to pretrain: a Hugging Face model name or directory (default {DEFAULT_ENCODER}, shipped as a package)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Epochs over the text (default {TRANSFORMER.training['epochs']}, as for training a transformer)."),
    whole_word: bool = typer.Option(False, "--whole-word", help="Mask every piece of a word together (all as [MASK]) rather than pieces one by one."),
    mlm_probability: float = typer.Option(0.15, "--mlm-probability", help="Share of pieces (of words, with --whole-word) masked."),
    max_length: int = typer.Option(128, "--max-length", help="Word pieces per example, special ones included; longer sentences are split between words."),
    held_out: int = typer.Option(20, "--held-out", help="Every Nth sentence is held out and its masked-LM loss picks the epoch saved; 0: none, the last epoch is saved."),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Learning rate (default {TRANSFORMER.training['lr']:g}, with warm-up and linear decay, as for training a transformer)."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the masked-LM head (default: --lr); a new head may want a higher one."),
    freeze_epochs: Optional[int] = typer.Option(None, "--freeze-epochs", help="Epochs that train only the masked-LM head before the encoder joins in (for a new head)."),
    batch_size: Optional[int] = TRAIN_BATCH_SIZE,
    max_minutes: Optional[float] = MAX_MINUTES,
    device: str = DEVICE,
    seed: Optional[int] = SEED,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """Continue a transformer encoder's pretraining on raw text of the target domain
    (masked-LM), then fine-tune on it with 'tagshift train --encoder OUT' or, for a model,
    'tagshift adapt OUT'.

    Example: tagshift pretrain --text notes/ --out encoders/notes --epochs 2
    """
    with user_errors(), launched(device) as (world, device):
        masking = MaskingConfig(mlm_probability, whole_word, max_length, held_out)
        training = {"epochs": epochs, "lr": lr, "head_lr": head_lr, "freeze_epochs": freeze_epochs,
                    "batch_size": batch_size, "seed": seed,
                    "max_minutes": max_minutes}
        result = run_pretrain(text, out, model, encoder, training, masking, resume, overwrite, progress,
                              command_line(), device, report=lambda line: typer.echo(line, err=True), world=world)
        if not world.main:
            return
        held = result.held_out
        scored = (f"; held-out masked-LM loss {held['dev_loss']:.3f} (perplexity {held['dev_perplexity']:.1f})"
                  if held else " (no held-out sentences: the last epoch is kept)")
        typer.echo(f"pretrained on {result.text['examples']} examples ({result.text['held_out_examples']} held out; "
                   f"{result.text['pieces']} word pieces in all): {len(result.history)} epochs, best epoch "
                   f"{result.best_epoch}{scored}", err=True)
        use = ("adapt or evaluate it as any tagshift model" if result.out_is_bundle
               else f"fine-tune with: tagshift train --backend transformer --encoder {out} --train ...")
        typer.echo(f"saved to {out} (log: {out / LOG}, curve: {out / CURVES}); {use}", err=True)
