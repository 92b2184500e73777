"""The `tagshift` command. Each command parses its options and calls the library; errors the
user can fix are printed as one line (`error: file:line: what, and the fix`) with exit code 1."""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import typer

from tagshift import __version__
from tagshift.atomic import check_writable, write_text_atomic
from tagshift.charts import plot_comparison
from tagshift.bundle import bundle_size, describe_bundle, read_config, read_lineage
from tagshift.convert import convert_corpus, find_repairs, refuse_repairs
from tagshift.corpus import Corpus, output_format, read_corpus, write_corpus
from tagshift.corpus.columns import MAX_SENTENCE_TOKENS
from tagshift.jobs import check_out, make_adapt_job, make_job, run_job
from tagshift.predict import format_predictions, read_input
from tagshift.errors import TagshiftError
from tagshift.evaluate import evaluate_corpora
from tagshift.labelmap import LabelMap
from tagshift.metrics import Scores, compare
from tagshift.schemes import SCHEMES
from tagshift.stats import corpus_stats
from tagshift.taggers import DEFAULT_ENCODER, Tagger
from tagshift.taggers.tagger import PRECISIONS
from tagshift.training import CURVES, LOG
from tagshift.transfer import adapt_config, adapt_training, few_steps_hint, prepare, train_prepared
from tagshift.transfer.distill import DEFAULT_WEIGHT as DISTILL_WEIGHT
from tagshift.transfer.pseudo import DEFAULT_THRESHOLD
from tagshift.transfer.report import compare_models
from tagshift.transfer.suggest import DEFAULT_MIN_SHARE, suggest_map

app = typer.Typer(
    help="Transfer learning for named entity recognition: corpora, tag schemes, label maps, taggers, scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SchemeName = Enum("SchemeName", {name: name for name in SCHEMES}, type=str)  # type: ignore[misc]


class Mode(str, Enum):
    conlleval = "conlleval"
    strict = "strict"


class Format(str, Enum):
    conll = "conll"
    jsonl = "jsonl"
    spans = "spans"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors the user can fix into one line on stderr and exit code 1."""
    try:
        yield
    except (TagshiftError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


TOKEN_COL = typer.Option(None, "--token-col", help="Token column (0-based; negative counts from the end). Detected if not given.")
TAG_COL = typer.Option(None, "--tag-col", help="Tag column (0-based; negative counts from the end). Detected if not given.")
MAX_TOKENS = typer.Option(MAX_SENTENCE_TOKENS, "--max-tokens", help="Longest sentence accepted, in tokens.")
ENCODING = typer.Option("utf-8", "--encoding", help="Text encoding of the input files.")
# Options `train` and `adapt` share.
TRAIN_BATCH_SIZE = typer.Option(None, "--batch-size", help="Sentences per batch.")
SEED = typer.Option(None, "--seed", help="Random seed: the same seed gives the same model.")
RESUME = typer.Option(False, "--resume", help="Continue the interrupted run in --out from its last checkpoint.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a model already in --out.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # the tagger's own choices


PRECISION_HELP = ("How the network computes: fp32, or bf16 (matrix products in bfloat16; weights stay fp32): "
                  "faster on CPUs with bf16 instructions (AVX512-BF16, AMX; bench/speed.py measures it), slower on others.")
TRAIN_PRECISION = typer.Option(None, "--precision", help=PRECISION_HELP + " Default fp32; dev scoring uses the same.")
PREDICT_PRECISION = typer.Option(Precision("fp32"), "--precision", help=PRECISION_HELP)
DEVICE = typer.Option("cpu", "--device", help="Where the network runs: cpu, cuda, cuda:N (a GPU) or mps (Apple). Models save and load the same on any device.")


def _read(path: Path, token_col: Optional[int], tag_col: Optional[int], max_tokens: int, encoding: str) -> Corpus:
    return read_corpus(path, token_col=token_col, tag_col=tag_col, max_tokens=max_tokens, encoding=encoding)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagshift {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: one per core). Use 1 per job when several jobs share the cores: oversubscribed, torch slows down many times over."),
) -> None:
    """Transfer learning for named entity recognition."""
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter(f"--threads {threads}: give 1 or more")
        import torch

        torch.set_num_threads(threads)


@app.command()
def stats(
    corpus: Path = typer.Argument(..., help="A column file (CoNLL, MIT Movie, ...) or JSON lines."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any entity needs repair."),
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Count sentences, tokens, documents and entities per type; detect the tag scheme.

    Example: tagshift stats data/wikigold/wikigold.slice.conll --json
    """
    with user_errors():
        loaded = _read(corpus, token_col, tag_col, max_tokens, encoding)
        result = corpus_stats(loaded)
        if strict and result.repairs:  # only then list them again, to name the first
            scheme = result.scheme.scheme
            refuse_repairs(loaded, scheme, find_repairs(loaded, scheme), f"fix them with 'tagshift convert --to {scheme}'")
        typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.render(str(corpus)))


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Corpus to read."),
    target: Path = typer.Argument(..., help="File to write (written whole or not at all)."),
    to: Optional[SchemeName] = typer.Option(None, "--to", help="Tag scheme to write. Default: the source's."),
    from_scheme: Optional[SchemeName] = typer.Option(None, "--from", help="Source scheme, if detection should be overridden."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="TOML label map: [rename], [merge], [drop]."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Output format. Default: from OUT's suffix (.jsonl/.json, .conll/.tsv/.bio), else the source's."),
    strict: bool = typer.Option(False, "--strict", help="Fail on invalid tag sequences instead of repairing them."),
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Convert a corpus to another tag scheme, format or label set. A report goes to stderr.

    Example: tagshift convert train.conll train.iobes --to iobes --map map.toml
    """
    with user_errors():
        loaded = _read(source, token_col, tag_col, max_tokens, encoding)
        mapping = LabelMap.from_toml(label_map) if label_map is not None else None
        converted, report = convert_corpus(
            loaded,
            to=to.value if to else None,
            label_map=mapping,
            strict=strict,
            source_scheme=from_scheme.value if from_scheme else None,
        )
        out_format = fmt.value if fmt else output_format(loaded, target)
        write_corpus(converted, target, out_format)
        for line in report.lines():
            typer.echo(line, err=True)
        typer.echo(f"wrote {len(converted)} sentences to {target} ({out_format})", err=True)


def _parse_groups(groups: list[str]) -> dict[str, list[str]]:
    parsed = {}
    for group in groups:
        name, sep, types = group.partition("=")
        if not sep or not name or not types:
            raise TagshiftError(f"--group '{group}' should look like old=PER,LOC,ORG")
        parsed[name] = [t for t in types.split(",") if t]
    return parsed


@app.command()
def evaluate(
    gold: Path = typer.Argument(..., help="Gold corpus, or a model directory (then PRED is the gold test corpus)."),
    pred: Path = typer.Argument(..., help="Predicted corpus (same sentences as GOLD, in order), or the test corpus."),
    mode: Mode = typer.Option(Mode.conlleval, "--mode", help="conlleval: entities read as the CoNLL script does; strict: only scheme-valid entities."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Scheme for strict mode. Default: detected from gold."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A second prediction (or model) to compare with, type by type."),
    group: list[str] = typer.Option([], "--group", help="A named group of types for the comparison, e.g. old=PER,LOC (repeatable). Default with a baseline model: old = its types, new = the rest."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --baseline: write a per-type before/after bar chart (PNG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fractions in 0..1) instead of a table in percent."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch when a model tags the test corpus."),
    precision: Precision = PREDICT_PRECISION,
    device: str = DEVICE,
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Entity-level precision, recall and F1, per type, micro and macro: of PRED against GOLD,
    or of a model (a directory) on a test corpus.

    Example: tagshift evaluate test.conll predicted.conll --mode strict --json
    (or, with a model: tagshift evaluate models/ner test.conll)
    """
    with user_errors():
        model_mode = gold.is_dir()
        gold_corpus = _read(pred if model_mode else gold, token_col, tag_col, max_tokens, encoding)
        scheme_name = scheme.value if scheme else None

        def score(source: Path) -> Scores:
            if source.is_dir():
                predicted = Tagger.load(source, device, precision.value).predict_corpus(gold_corpus, batch_size)
            else:
                predicted = _read(source, token_col, tag_col, max_tokens, encoding)
            return evaluate_corpora(gold_corpus, predicted, mode.value, scheme_name)

        if plot is not None:
            if baseline is None:
                raise TagshiftError("--plot draws a comparison: give --baseline too")
            check_writable(plot)
        groups = _parse_groups(group)
        if model_mode and baseline is not None and baseline.is_dir() and not groups:
            # the forgetting report: the source's types (under the adapted model's names), then the rest
            comparison = compare_models(Tagger.load(gold, device, precision.value),
                                        Tagger.load(baseline, device, precision.value), gold_corpus, mode.value,
                                        scheme_name, batch_size)
        else:
            system = score(gold if model_mode else pred)
            if baseline is None:
                typer.echo(json.dumps(system.to_json(), indent=2) if as_json else system.render())
                return
            comparison = compare(system, score(baseline), groups)
        typer.echo(json.dumps(comparison.to_json(), indent=2) if as_json else comparison.render())
        if plot is not None:
            plot_comparison(comparison, plot, f"{gold if model_mode else pred} vs {baseline}")
            typer.echo(f"wrote {plot}", err=True)


class Backend(str, Enum):
    bilstm_crf = "bilstm-crf"
    transformer = "transformer"


@app.command()
def train(
    train_file: Optional[Path] = typer.Option(None, "--train", help="Training corpus."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev corpus: early stopping and the best epoch are chosen on its entity F1."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test corpus, scored once at the end and recorded in the lineage."),
    backend: Optional[Backend] = typer.Option(None, "--backend", help="Model family."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the model bundle, log, curves and checkpoints."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these options, plus [model] and [training] tables."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=f"Transformer: HF model name or local path (default {DEFAULT_ENCODER}, shipped as a package)."),
    vectors: Optional[str] = typer.Option(None, "--vectors", help="BiLSTM-CRF: word vectors, a GloVe/word2vec text file, spacy:PACKAGE or hf:MODEL."),
    freeze_vectors: Optional[bool] = typer.Option(None, "--freeze-vectors/--train-vectors", help="BiLSTM-CRF: keep the word vectors as loaded (default when --vectors is given: +2 F1 and 3x faster on CoNLL) or train them."),
    head: Optional[str] = typer.Option(None, "--head", help="crf or softmax (default: crf for the BiLSTM, softmax for transformers)."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme the model predicts in (default: iobes for the BiLSTM, iob2 for transformers)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs to train."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: Optional[int] = TRAIN_BATCH_SIZE,
    precision: Optional[Precision] = TRAIN_PRECISION,
    device: str = DEVICE,
    seed: Optional[int] = SEED,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Train a tagger; the best epoch on --dev is saved to --out with its log, learning
    curves and lineage.

    Example: tagshift train --train train.conll --dev dev.conll --backend bilstm-crf --out models/ner
    """
    with user_errors():
        if backend == Backend.bilstm_crf and encoder:
            raise TagshiftError("--encoder is for the transformer backend; the BiLSTM-CRF takes --vectors")
        if backend == Backend.transformer and (vectors or freeze_vectors is not None):
            raise TagshiftError("--vectors and --freeze-vectors/--train-vectors are for the BiLSTM-CRF; a transformer takes --encoder")
        model = {"encoder": encoder, "vectors": vectors, "freeze_vectors": freeze_vectors, "head": head}
        training = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                    "precision": precision.value if precision else None}
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
        )
        tagger, result = run_job(
            job, resume=resume, overwrite=overwrite, progress=progress, command=shlex.join(["tagshift", *sys.argv[1:]]),
            device=device, token_col=token_col, tag_col=tag_col, max_tokens=max_tokens, encoding=encoding,
        )
        typer.echo(f"trained {tagger.describe()}: {len(result.history)} epochs, best epoch {result.best_epoch}", err=True)
        if result.best_dev is not None:
            typer.echo(f"dev entity F1 (conlleval): {100 * result.best_dev.micro.f1:.2f}", err=True)
        if result.test is not None:
            typer.echo(result.test.render())
        typer.echo(f"saved to {job.out} (log: {job.out / LOG}, curves: {job.out / CURVES})", err=True)


class LabelOperation(str, Enum):
    extend = "extend"
    map = "map"
    replace = "replace"


class Init(str, Enum):
    quiet = "quiet"
    normal = "normal"


class Unfreeze(str, Enum):
    all = "all"
    gradual = "gradual"


@app.command()
def adapt(
    source: Optional[Path] = typer.Argument(None, help="The trained model to adapt (a model directory); it is not changed."),
    train_file: Optional[Path] = typer.Option(None, "--train", help="Target training corpus: may annotate only some types."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the adapted model, its log, curves and checkpoints."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Target dev corpus; its F1 over the types it annotates picks the best epoch (it may annotate more types than --train)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test corpus, scored once at the end and recorded in the lineage."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with source, train, dev, test, out, map, an [adapt] table (these options) and a [training] table; options given here win."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="TOML label map from source types to target types ([rename], [merge], [drop]), as 'tagshift convert --map' takes."),
    labels: Optional[LabelOperation] = typer.Option(None, "--labels", help="extend: keep the source's types and add the target's, copying rows (default); map: the same function through a mapping layer over the source's label scores, learnt, then folded into a plain head; replace: a fresh head for the target's types only."),
    init: Optional[Init] = typer.Option(None, "--init", help="New rows: quiet (default: the untrained model predicts exactly what the source did) or normal (drawn from N(mean, std) of the existing rows)."),
    head: Optional[str] = typer.Option(None, "--head", help="crf or softmax: the adapted model's head (default: the source's). A softmax source given a CRF head predicts what it did (its transition scores start at 0) and then learns transitions (the CrossNER benchmark compares both heads on small targets)."),
    drop: list[str] = typer.Option([], "--drop", help="A source type the adapted model will not predict (repeatable)."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme of the adapted model. Default: the source's."),
    pseudo_label: Optional[bool] = typer.Option(None, "--pseudo-label/--no-pseudo-label", help=f"Let the source tag the target data first and write in its confident entities of types the data does not annotate (--pseudo-label=T sets the threshold; default {DEFAULT_THRESHOLD}). --no-* switches off what a --config file switched on, here and below."),
    pseudo_threshold: Optional[float] = typer.Option(None, "--pseudo-threshold", help="Lowest confidence of a pseudo-label (implies --pseudo-label)."),
    partial: Optional[bool] = typer.Option(None, "--partial/--no-partial", help="Read the target data's O as 'O or a type it does not annotate', not as O."),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help=f"Keep the source's scores on its labels at O words (knowledge distillation; --distill=W sets the weight; default {DISTILL_WEIGHT})."),
    distill_weight: Optional[float] = typer.Option(None, "--distill-weight", help="Weight of the distillation term (implies --distill)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Distillation temperature (default 2)."),
    extend_vocab: Optional[bool] = typer.Option(None, "--extend-vocab/--keep-vocab", help="BiLSTM-CRF: add the target's frequent words and new characters as embedding rows (default; starting as UNK's under --init quiet, from the word vectors under normal)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs to train; 0 applies the head operation and saves, untrained."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of the head (default: training's)."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Same as --lr."),
    encoder_lr: Optional[float] = typer.Option(None, "--encoder-lr", help="Learning rate of the encoder (default: a tenth of the head's)."),
    freeze_epochs: Optional[int] = typer.Option(None, "--freeze-epochs", help="Epochs that train only the head (and CRF) before the encoder joins."),
    unfreeze: Optional[Unfreeze] = typer.Option(None, "--unfreeze", help="After the frozen epochs: all layers at once, or gradual (top layers first)."),
    batch_size: Optional[int] = TRAIN_BATCH_SIZE,
    precision: Optional[Precision] = TRAIN_PRECISION,
    device: str = DEVICE,
    seed: Optional[int] = SEED,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Adapt a trained model to target data: new domain, new types, renamed, merged or
    dropped types, another scheme. Prints the label plan before training.

    Example: tagshift adapt models/news --train med.conll --dev med.dev.conll --pseudo-label --out models/med
    """
    with user_errors():
        if head_lr is not None and lr is not None and head_lr != lr:
            raise TagshiftError("--lr and --head-lr name the same rate; give one")
        threshold = _switch_value("--pseudo-label", pseudo_label, "--pseudo-threshold", pseudo_threshold)
        weight = _switch_value("--distill", distill, "--distill-weight", distill_weight)
        job = make_adapt_job(
            config, source=source, train=train_file, out=out, dev=dev, test=test, map=label_map,
            adapt={"labels": labels.value if labels else None, "init": init.value if init else None, "head": head,
                   "scheme": scheme.value if scheme else None, "drop": list(drop) or None,
                   "pseudo_label": threshold, "partial": partial, "distill": weight,
                   "temperature": temperature, "extend_vocab": extend_vocab},
            training={"epochs": epochs, "lr": lr or head_lr, "head_lr": lr or head_lr, "encoder_lr": encoder_lr,
                      "freeze_epochs": freeze_epochs,
                      "unfreeze": unfreeze.value if unfreeze else None, "batch_size": batch_size, "seed": seed,
                      "precision": precision.value if precision else None},
        )
        if job.out.resolve() == job.source.resolve():
            raise TagshiftError(f"--out {job.out} is the source model; adapt writes a new model: choose another directory")
        options = adapt_config(job.adapt)
        check_out(job.out, resume, overwrite)
        source_tagger = Tagger.load(job.source, device)
        read = {"token_col": token_col, "tag_col": tag_col, "max_tokens": max_tokens, "encoding": encoding}
        train_corpus = _read(job.train, **read)
        dev_corpus = _read(job.dev, **read) if job.dev else None
        test_corpus = _read(job.test, **read) if job.test else None
        training = adapt_training(source_tagger.backend, **job.training)
        prepared = prepare(source_tagger, train_corpus, options, training.seed,
                           LabelMap.from_toml(job.map) if job.map else None, dev_corpus, progress)
        typer.echo(prepared.render(), err=True)
        typer.echo(
            f"training: {training.epochs} epochs at most, head lr {training.head_lr or training.lr:g}, encoder lr "
            f"{training.encoder_lr:g} (a tenth of the head's unless set: a trained encoder moves slowly)"
            + (f", encoder frozen for {training.freeze_epochs} epochs then unfrozen ({training.unfreeze})" if training.freeze_epochs else "")
            + (f"; early stopping after {training.patience} epochs without a better dev F1, not before step {training.min_steps}"
               if dev_corpus is not None and training.patience else ""),
            err=True,
        )
        hint = few_steps_hint(len(prepared.train), training)
        if hint:
            typer.echo(f"note: {hint}", err=True)
        result = train_prepared(
            prepared, dev_corpus, training, job.out, str(job.source), resume, progress,
            shlex.join(["tagshift", *sys.argv[1:]]), test_corpus,
        )
        tagger = prepared.tagger
        typer.echo(f"adapted {tagger.describe()}: {len(result.history)} epochs, best epoch {result.best_epoch}", err=True)
        if result.best_dev is not None:
            typer.echo(f"dev entity F1 (conlleval, types the target annotates): {100 * result.best_dev.micro.f1:.2f}", err=True)
        if result.test is not None:
            typer.echo(result.test.render())
        typer.echo(f"saved to {job.out}; compare with the source: tagshift evaluate {job.out} TEST --baseline {job.source}", err=True)


def _switch_value(name: str, switch: bool | None, value_name: str, value: float | None) -> float | bool | None:
    """An on/off option with an optional value: the value if given (which switches it on),
    else the switch (True: the default value; False: off even if a config file has it on;
    None: the config file decides)."""
    if value is None:
        return switch
    if switch is False:
        raise TagshiftError(f"--no-{name[2:]} and {value_name} contradict each other; give one")
    return value


labels_app = typer.Typer(help="Label sets of models and corpora.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("suggest")
def labels_suggest(
    source: Path = typer.Argument(..., help="The trained model (a model directory)."),
    target: Path = typer.Argument(..., help="A labelled target corpus, in its own types."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the proposed map (TOML) here; default: standard output."),
    min_share: float = typer.Option(DEFAULT_MIN_SHARE, "--min-share", help="Share of a source type's predictions that must land on one target type."),
    as_json: bool = typer.Option(False, "--json", help="Print the proposal and all the evidence as JSON instead."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch."),
    device: str = DEVICE,
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Propose a source -> target type map from the source's predictions on TARGET, with
    the evidence, in the label-map format that 'adapt --map' reads.

    Example: tagshift labels suggest models/news politics.conll --out politics.map.toml
    """
    with user_errors():
        if not 0 < min_share <= 1:
            raise TagshiftError(f"--min-share {min_share} should lie in (0, 1]")
        tagger = Tagger.load(source, device)
        corpus = _read(target, token_col, tag_col, max_tokens, encoding)
        suggestion = suggest_map(tagger, corpus, min_share, batch_size)
        if as_json:
            typer.echo(json.dumps(suggestion.to_json(), indent=2))
            return
        text = suggestion.to_toml(shlex.join(["tagshift", *sys.argv[1:]]) if out else "")
        if out is None:
            typer.echo(text, nl=False)
            return
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}: {len(suggestion.mapping)} of {len(suggestion.evidence.predicted)} predicted types mapped", err=True)


class InputFormat(str, Enum):
    auto = "auto"
    conll = "conll"
    jsonl = "jsonl"
    text = "text"


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Model directory."),
    input_file: Path = typer.Argument(..., help="A corpus (column file or JSONL), tokenised JSONL, or raw text (one document per line)."),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (atomically). Default: standard output."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="conll, jsonl (tokens, tags, entities with confidence) or spans (text, character spans). Default: from --out's suffix, else jsonl for text and the input's format otherwise."),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--input-format", help="How to read INPUT; auto tells JSON, columns and prose apart."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme of the output. Default: the model's."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch."),
    precision: Precision = PREDICT_PRECISION,
    device: str = DEVICE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    token_col: Optional[int] = TOKEN_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Tag a corpus or raw text with a trained model.

    Example: tagshift predict models/ner news.txt --format spans --out news.entities.jsonl
    """
    with user_errors():
        tagger = Tagger.load(model, device, precision.value)
        options: dict[str, object] = {"max_tokens": max_tokens, "encoding": encoding}
        if token_col is not None:
            options["token_col"] = token_col
        corpus, read_as = read_input(input_file, input_format.value, **options)
        default = "conll" if read_as == "conll" else "jsonl"
        chosen = fmt.value if fmt else (output_format(corpus, out) if out and out.suffix else default)
        tagged = tagger.predict(
            [s.tokens for s in corpus.sentences], batch_size, progress=progress and out is not None,
            confidence=chosen != "conll",  # CoNLL columns have no place for them
        )
        text = format_predictions(corpus, tagged, chosen, scheme.value if scheme else None)
        if out is None:
            typer.echo(text, nl=False)
        else:
            write_text_atomic(out, text)
            entities = sum(len(t.entities) for t in tagged)
            typer.echo(f"tagged {len(tagged)} {'lines' if read_as == 'text' else 'sentences'} ({read_as}): "
                       f"{entities} entities; wrote {out} ({chosen})", err=True)


@app.command()
def info(
    model: Path = typer.Argument(..., help="Model directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the config and lineage as JSON."),
) -> None:
    """What a model bundle is: backend, labels, scheme, where it came from and its scores.

    Example: tagshift info models/ner
    """
    with user_errors():
        fields = read_config(model)
        lineage = read_lineage(model)
        if as_json:
            typer.echo(json.dumps({"config": fields, "lineage": lineage, "bytes": bundle_size(model)}, indent=2))
            return
        typer.echo(describe_bundle(model, fields, lineage))


# Options that take an optional value, written --option=VALUE; bare, they are flags.
OPTIONAL_VALUES = {"--pseudo-label": "--pseudo-threshold", "--distill": "--distill-weight"}


def expand_optional_values(argv: list[str]) -> list[str]:
    """`--pseudo-label=0.8` -> `--pseudo-label --pseudo-threshold 0.8` (and so for --distill).

    >>> expand_optional_values(["adapt", "m", "--pseudo-label=0.8", "--distill"])
    ['adapt', 'm', '--pseudo-label', '--pseudo-threshold', '0.8', '--distill']
    """
    expanded = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if equals and name in OPTIONAL_VALUES:
            expanded += [name, OPTIONAL_VALUES[name], value]
        else:
            expanded.append(arg)
    return expanded


def main() -> None:
    app(args=expand_optional_values(sys.argv[1:]))
