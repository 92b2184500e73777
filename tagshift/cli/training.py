"""Commands that make a model: `train`, `adapt` and `import`. They parse options into a job and run
its recipe (tagshift/jobs.py)."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tagshift.cli.options import (
    DEV_EVERY, DEV_SAMPLE, DEVICE, ENCODER, FREEZE_VECTORS, LAYER_DECAY, MAX_MINUTES, MAX_VECTORS, OVERWRITE, PATIENCE,
    PROGRESS, RESUME, SEED, TRAIN_BATCH_SIZE, TRAIN_PRECISION, VECTORS, BackendName, Precision, SchemeName, app,
    command_line, launched, read_options, user_errors,
)
from tagshift.errors import TagshiftError
from tagshift.jobs import ReadOptions, make_adapt_job, make_job, run_adapt, run_import, run_job
from tagshift.taggers.backends import BACKENDS
from tagshift.training import CURVES, LOG
from tagshift.transfer.anchor import DEFAULT_ANCHOR as ANCHOR_WEIGHT
from tagshift.transfer.distill import DEFAULT_WEIGHT as DISTILL_WEIGHT
from tagshift.transfer.pseudo import DEFAULT_THRESHOLD


@app.command()
@read_options()
def train(
    train_file: Optional[Path] = typer.Option(None, "--train", help="Training corpus."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev corpus: early stopping and the best epoch are chosen on its entity F1."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test corpus, scored once at the end and recorded in the lineage."),
    backend: Optional[BackendName] = typer.Option(None, "--backend", help="Model family."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the model bundle, log, curves and checkpoints."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these options, plus [model] and [training] tables."),
    encoder: Optional[str] = ENCODER,
    vectors: Optional[str] = VECTORS,
    freeze_vectors: Optional[bool] = FREEZE_VECTORS,
    max_vectors: Optional[int] = MAX_VECTORS,
    head: Optional[str] = typer.Option(None, "--head", help="crf or softmax (default: crf for the BiLSTM, softmax for transformers)."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme the model predicts in (default: iobes for the BiLSTM, iob2 for transformers)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs to train."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    layer_decay: Optional[float] = LAYER_DECAY,
    batch_size: Optional[int] = TRAIN_BATCH_SIZE,
    max_minutes: Optional[float] = MAX_MINUTES,
    dev_sample: Optional[int] = DEV_SAMPLE,
    dev_every: Optional[int] = DEV_EVERY,
    patience: Optional[int] = PATIENCE,
    precision: Optional[Precision] = TRAIN_PRECISION,
    device: str = DEVICE,
    seed: Optional[int] = SEED,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
    read: ReadOptions = ReadOptions(),
) -> None:
    """Train a tagger; the best epoch on --dev is saved to --out with its log, learning
    curves and lineage.

    Example: tagshift train --train train.conll --dev dev.conll --backend bilstm-crf --out models/ner
    """
    with user_errors(), launched(device) as (world, device):
        model = {"encoder": encoder, "vectors": vectors, "freeze_vectors": freeze_vectors, "max_vectors": max_vectors,
                 "head": head}
        if backend is not None:
            _check_model_options(backend.value, model)
        training = {"epochs": epochs, "lr": lr, "layer_decay": layer_decay, "batch_size": batch_size, "seed": seed,
                    "max_minutes": max_minutes, "dev_sample": dev_sample, "dev_every": dev_every,
                    "patience": patience}
        job = make_job(
            config,
            backend=backend.value if backend else None,
            train=train_file,
            dev=dev,
            test=test,
            out=out,
            scheme=scheme.value if scheme else None,
            model=model,
            training=training,
            precision=precision.value if precision else None,
        )
        tagger, result = run_job(
            job, resume=resume, overwrite=overwrite, progress=progress, command=command_line(), device=device, read=read,
            world=world,
        )
        if not world.main:
            return
        typer.echo(f"trained {tagger.describe()}: {len(result.history)} epochs, best epoch {result.best_epoch}", err=True)
        if result.best_dev is not None:
            typer.echo(f"dev entity F1 (conlleval): {100 * result.best_dev.micro.f1:.2f}", err=True)
        if result.test is not None:
            typer.echo(result.test.render())
        typer.echo(f"saved to {job.out} (log: {job.out / LOG}, curves: {job.out / CURVES})", err=True)


MODEL_FLAGS = {"encoder": "--encoder", "vectors": "--vectors", "freeze_vectors": "--freeze-vectors/--train-vectors",
               "max_vectors": "--max-vectors", "head": "--head"}


def _check_model_options(backend: str, model: dict[str, object]) -> None:
    """Refuse a model option the chosen family does not have, naming the family that has it."""
    own = {f.name for f in fields(BACKENDS[backend].config_class)}
    for name, value in model.items():
        if value is not None and name not in own:
            owners = [b.name for b in BACKENDS.values() if name in {f.name for f in fields(b.config_class)}]
            raise TagshiftError(f"{MODEL_FLAGS[name]} is an option of {' and '.join(owners)}, not of {backend}")


class LabelOperation(str, Enum):
    extend = "extend"
    map = "map"
    replace = "replace"
    stack = "stack"


class Init(str, Enum):
    quiet = "quiet"
    related = "related"
    normal = "normal"


class Unfreeze(str, Enum):
    all = "all"
    gradual = "gradual"


@app.command()
@read_options()
def adapt(
    source: Optional[Path] = typer.Argument(None, help="The trained model to adapt: a bundle or Hugging Face token-classifier directory, or hf:NAME; it is not changed."),
    train_file: Optional[Path] = typer.Option(None, "--train", help="Target training corpus: may annotate only some types."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the adapted model, its log, curves and checkpoints."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Target dev corpus; its F1 over the types it annotates picks the best epoch (it may annotate more types than --train)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test corpus, scored once at the end and recorded in the lineage."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with source, train, dev, test, out, map, an [adapt] table (these options), a [training] table and, for the model a spaCy pipeline teaches, a [model] table; options given here win."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="TOML label map from source types to target types ([rename], [merge], [drop]), as 'tagshift convert --map' takes."),
    compare_scratch: Optional[bool] = typer.Option(None, "--compare-scratch/--no-compare-scratch", help="Also train a model of the same family on the target data alone (train's rates, the run's epochs and seed) into OUT/target-only and compare the two on dev; where it is better (and has every type the adapted model has) it takes OUT and the adapted model moves to OUT/adapted. Default: only where the recipe expects little from the source (it finds under 40% of the target's entities)."),
    rehearse: Optional[Path] = typer.Option(None, "--rehearse", help="A spaCy source: raw text the source annotates, rehearsed with the new data so the old types stay (.txt, .jsonl, PDF or a directory, read as docs/raw-text.md says)."),
    labels: Optional[LabelOperation] = typer.Option(None, "--labels", help="extend: keep the source's types and add the target's, copying rows; map: the same function through a mapping layer over the source's label scores, learnt, then folded into a plain head; replace: a fresh head for the target's types only; stack (BiLSTM-CRF): a new model for the target's types, built as training on the target alone builds it, that also reads the source's tag probabilities of each word (the source kept frozen inside it). Default (with no --map): chosen from the data and printed: map with the suggested map and livelier encoder rates for a new tag set the source finds (a new domain), else extend (docs/adapt.md)."),
    init: Optional[Init] = typer.Option(None, "--init", help="New rows: quiet (default: below O's, so the untrained model predicts exactly what the source did), related (as quiet, but a new type starts below the source type that finds most of its entities in the training data, where one finds 30% of them) or normal (drawn from N(mean, std) of the existing rows)."),
    adapt_backend: Optional[BackendName] = typer.Option(None, "--backend", help="With a spaCy pipeline as the source (spacy:PACKAGE): the family of the new tagshift model it teaches (its types by pseudo-labels, plus the data's); --encoder, --vectors, --freeze-vectors, --max-vectors and a [model] table in --config build it, as for train."),
    encoder: Optional[str] = ENCODER,
    vectors: Optional[str] = VECTORS,
    freeze_vectors: Optional[bool] = FREEZE_VECTORS,
    max_vectors: Optional[int] = MAX_VECTORS,
    head: Optional[str] = typer.Option(None, "--head", help="crf or softmax: the adapted model's head (default: the source's). A softmax source given a CRF head predicts what it did (its transition scores start at 0) and then learns transitions (the CrossNER benchmark compares both heads on small targets)."),
    drop: list[str] = typer.Option([], "--drop", help="A source type the adapted model will not predict (repeatable)."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme of the adapted model. Default: the source's."),
    pseudo_label: Optional[bool] = typer.Option(None, "--pseudo-label/--no-pseudo-label", help=f"Let the source tag the target data first and write in its confident entities of types the data does not annotate (--pseudo-label=T sets the threshold; default {DEFAULT_THRESHOLD}). --no-* switches off what a --config file switched on, here and below."),
    pseudo_threshold: Optional[float] = typer.Option(None, "--pseudo-threshold", help="Lowest confidence of a pseudo-label (implies --pseudo-label)."),
    partial: Optional[bool] = typer.Option(None, "--partial/--no-partial", help="Read the target data's O as 'O or a type it does not annotate', not as O."),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help=f"Keep the source's scores on its labels at O words (knowledge distillation; --distill=W sets the weight; default {DISTILL_WEIGHT})."),
    distill_weight: Optional[float] = typer.Option(None, "--distill-weight", help="Weight of the distillation term (implies --distill)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Distillation temperature (default 2)."),
    anchor: Optional[bool] = typer.Option(None, "--anchor/--no-anchor", help=f"Pull each encoder weight towards the source's with an L2 term (L2-SP), so the encoder can learn at a livelier rate without drifting far (--anchor=W sets the weight; default {ANCHOR_WEIGHT}). On CrossNER it lowered F1 (docs/benchmarks.md)."),
    anchor_weight: Optional[float] = typer.Option(None, "--anchor-weight", help="Weight of the anchor term (implies --anchor)."),
    guide: Optional[bool] = typer.Option(None, "--guide/--no-guide", help="BiLSTM-CRF, with --labels map, replace or extend: the adapted model also reads the frozen source's tag probabilities of each word, as --labels stack's new model does (the source travels in the bundle)."),
    guide_states: Optional[bool] = typer.Option(None, "--guide-states/--no-guide-states", help="With --labels stack or --guide: the model also reads the source encoder's states of each word, beside its tag probabilities."),
    keep_old_head: Optional[bool] = typer.Option(None, "--keep-old-head/--no-keep-old-head", help="Train only the new types' rows of the head: the rows of O and the source's types, and their CRF scores, stay as they are (the continual-NER papers' fixed old classifier); --labels extend only."),
    extend_vocab: Optional[bool] = typer.Option(None, "--extend-vocab/--keep-vocab", help="BiLSTM-CRF: add the target's frequent words and new characters as embedding rows (default; starting as UNK's under --init quiet, from the word vectors under normal)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs to train; 0 applies the head operation and saves, untrained."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the head (default: training's; updating a spaCy pipeline: its ner's, default the pipeline's own)."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Same as --lr."),
    encoder_lr: Optional[float] = typer.Option(None, "--encoder-lr", help="Learning rate of the encoder (default: a tenth of the head's; updating a spaCy pipeline: its ner's tok2vec, default 0.3 of --lr)."),
    layer_decay: Optional[float] = LAYER_DECAY,
    freeze_epochs: Optional[int] = typer.Option(None, "--freeze-epochs", help="Epochs that train only the head (and CRF) before the encoder joins."),
    unfreeze: Optional[Unfreeze] = typer.Option(None, "--unfreeze", help="After the frozen epochs: all layers at once, or gradual (top layers first)."),
    batch_size: Optional[int] = TRAIN_BATCH_SIZE,
    max_minutes: Optional[float] = MAX_MINUTES,
    dev_sample: Optional[int] = DEV_SAMPLE,
    dev_every: Optional[int] = DEV_EVERY,
    patience: Optional[int] = PATIENCE,
    precision: Optional[Precision] = TRAIN_PRECISION,
    device: str = DEVICE,
    seed: Optional[int] = SEED,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
    read: ReadOptions = ReadOptions(),
) -> None:
    """Adapt a trained model to target data: new domain, new types, renamed, merged or
    dropped types, another scheme. Prints the label plan before training.

    Example: tagshift adapt models/news --train med.conll --dev med.dev.conll --pseudo-label --out models/med
    """
    with user_errors(), launched(device) as (world, device):
        if head_lr is not None and lr is not None and head_lr != lr:
            raise TagshiftError("--lr and --head-lr name the same rate; give one")
        rate = lr if lr is not None else head_lr  # (not `lr or head_lr`: an --lr 0 must reach the check, not vanish)
        threshold = _switch_value("--pseudo-label", pseudo_label, "--pseudo-threshold", pseudo_threshold)
        model = {"encoder": encoder, "vectors": vectors, "freeze_vectors": freeze_vectors, "max_vectors": max_vectors}
        if adapt_backend is not None:
            _check_model_options(adapt_backend.value, model)
        weight = _switch_value("--distill", distill, "--distill-weight", distill_weight)
        pull = _switch_value("--anchor", anchor, "--anchor-weight", anchor_weight)
        job = make_adapt_job(
            config, source=source, train=train_file, out=out, dev=dev, test=test, map=label_map, rehearse=rehearse,
            model=model,
            adapt={"labels": labels.value if labels else None, "init": init.value if init else None, "head": head,
                   "scheme": scheme.value if scheme else None, "drop": list(drop) or None,
                   "pseudo_label": threshold, "partial": partial, "distill": weight,
                   "temperature": temperature, "extend_vocab": extend_vocab, "keep_old_head": keep_old_head,
                   "guide": guide, "guide_states": guide_states, "anchor": pull,
                   "backend": adapt_backend.value if adapt_backend else None},
            training={"epochs": epochs, "lr": rate, "head_lr": rate, "encoder_lr": encoder_lr,
                      "layer_decay": layer_decay, "freeze_epochs": freeze_epochs,
                      "unfreeze": unfreeze.value if unfreeze else None, "batch_size": batch_size, "seed": seed,
                      "max_minutes": max_minutes, "dev_sample": dev_sample, "dev_every": dev_every,
                      "patience": patience},
            precision=precision.value if precision else None,
        )
        prepared, result = run_adapt(
            job, resume=resume, overwrite=overwrite, progress=progress, command=command_line(), device=device,
            read=read, report=lambda text: typer.echo(text, err=True), compare_scratch=compare_scratch, world=world,
        )
        if not world.main:
            return
        spacy_out = not hasattr(prepared, "tagger")  # the spaCy pipeline itself was updated
        what = (f"the spaCy pipeline's ner (new types: {', '.join(prepared.new_types) or 'none'})" if spacy_out
                else prepared.tagger.describe())
        kept_control = not spacy_out and prepared.tagger.lineage[-1].get("compare_scratch", {}).get("kept") == "target-only"
        done = "kept the control trained on the target alone," if kept_control else "adapted"
        typer.echo(f"{done} {what}: {len(result.history)} epochs, best epoch {result.best_epoch}", err=True)
        if result.best_dev is not None:
            typer.echo(f"dev entity F1 (conlleval, types the target annotates): {100 * result.best_dev.micro.f1:.2f}", err=True)
        if result.test is not None:
            typer.echo(result.test.render())
        saved = f"spacy:{job.out}" if spacy_out else job.out
        typer.echo(f"saved to {job.out}; compare with the source: tagshift evaluate {saved} TEST --baseline {job.source}", err=True)


def _switch_value(name: str, switch: bool | None, value_name: str, value: float | None) -> float | bool | None:
    """An on/off option with an optional value: the value if given (which switches it on),
    else the switch (True: the default value; False: off even if a config file has it on;
    None: the config file decides)."""
    if value is None:
        return switch
    if switch is False:
        raise TagshiftError(f"--no-{name[2:]} and {value_name} contradict each other; give one")
    return value




@app.command("import")
def import_model(
    source: str = typer.Argument(..., help="A Hugging Face token classifier: a directory save_pretrained wrote, or hf:NAME (a hub name)."),
    out: Path = typer.Option(..., "--out", help="Directory for the tagshift bundle."),
    label_names: Optional[str] = typer.Option(None, "--label-names", help="The classifier's labels in row order, comma-separated, where its config names them LABEL_0, LABEL_1, ..."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Make a tagshift bundle of a Hugging Face token classifier: its labels from id2label,
    its scheme from the label strings, its lineage starting with the import.

    Example: tagshift import ./bert-finetuned-ner --out models/bert-ner
    """
    with user_errors():
        names = [n.strip() for n in label_names.split(",")] if label_names else None
        tagger = run_import(source, out, names, overwrite, command_line())
        step = tagger.lineage[0]
        added = f"; rows added for tags it lacks: {', '.join(step['rows_added'])}" if step["rows_added"] else ""
        typer.echo(f"imported {source}: {len(tagger.labels)} labels in {tagger.scheme}, types "
                   f"{', '.join(tagger.types)}{added}; saved to {out}", err=True)
