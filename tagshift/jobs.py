"""The recipes of `tagshift train` and `tagshift adapt` as library functions, from files to a
saved bundle: a typed job (from a TOML file and command-line options, options winning), the
corpora read with one set of read options, a new, resumed or adapted tagger, training,
scores. The CLI only parses options into these."""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from tagshift.bundle import CONFIG, load, load_bundle, recover, save_bundle
from tagshift.corpus import Corpus, read_corpus
from tagshift.corpus.columns import MAX_SENTENCE_TOKENS
from tagshift.errors import TagshiftError
from tagshift.labelmap import LabelMap
from tagshift.lock import output_lock
from tagshift.taggers.backends import TRANSFORMER, Backend, get_backend
from tagshift.taggers.spacy_pipeline import SpacyPipeline, is_spacy_source
from tagshift.taggers.hf import import_hf
from tagshift.taggers.tagger import PRECISIONS, Tagger
from tagshift.taggers.transformer import DEFAULT_ENCODER, resolve_encoder
from tagshift.training import CHECKPOINT, TrainConfig, TrainResult, fit
from tagshift.training.world import SINGLE, World
from tagshift.training.mlm import (
    MaskingConfig, PretrainResult, encoder_source, piece_limit, pretrain, read_text, tagger_source,
)
from tagshift.transfer import (
    Prepared, adapt_config, adapt_training, few_steps_hint, prepare_with_recipe, scratch, train_prepared,
)
from tagshift.transfer.adapt import ENCODER_LR_FACTOR
from tagshift.transfer.spacy_update import SpacyUpdate, update_pipeline
from tagshift.transfer.teach import Taught, prepare_taught

_JOB_KEYS = ("backend", "train", "dev", "test", "out", "scheme")


@dataclass(frozen=True)
class ReadOptions:
    """How every command reads its corpora: declared once, here and as one group of CLI options."""

    token_col: int | None = None  # detected when None
    tag_col: int | None = None  # detected when None
    max_tokens: int = MAX_SENTENCE_TOKENS
    encoding: str = "utf-8"

    def read(self, path: str | Path) -> Corpus:
        return read_corpus(path, token_col=self.token_col, tag_col=self.tag_col, max_tokens=self.max_tokens,
                           encoding=self.encoding)


def training_precision(training: dict[str, Any], precision: str | None) -> str:
    """The precision a job trains in: the option, else a `[training] precision` a job file
    gives (where it was documented before the tagger became its home), else fp32. Taken out
    of `training`, which then holds TrainConfig fields only."""
    from_table = training.pop("precision", None)
    precision = precision or from_table or "fp32"
    if precision not in PRECISIONS:
        raise TagshiftError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    return precision


@dataclass
class TrainJob:
    """Everything one training run needs."""

    backend: str
    train: Path
    out: Path
    dev: Path | None = None
    test: Path | None = None
    scheme: str | None = None  # the backend's default when None
    model: dict[str, Any] = field(default_factory=dict)  # fields of BiLSTMConfig / TransformerConfig
    training: dict[str, Any] = field(default_factory=dict)  # fields of TrainConfig

    precision: str | None = None  # how the network computes while it trains (the tagger's setting); None: fp32

    def __post_init__(self) -> None:
        family = self.family
        self.scheme = self.scheme or family.default_scheme
        self.precision = training_precision(self.training, self.precision)
        check_model_keys(family, self.model)

    @property
    def family(self) -> Backend:
        return get_backend(self.backend)

    def model_config(self) -> Any:
        return self.family.new_config(**self.model)

    def train_config(self) -> TrainConfig:
        return TrainConfig.for_backend(self.backend, **self.training)


def check_model_keys(family: Backend, model: dict[str, Any]) -> None:
    """Refuse [model] options `family`'s config has not, naming those it has."""
    model_fields = {f.name for f in fields(family.config_class)}
    unknown = sorted(set(model) - model_fields)
    if unknown:
        raise TagshiftError(
            f"unknown [model] option(s) for {family.name}: {', '.join(unknown)}; known: {', '.join(sorted(model_fields))}"
        )


def read_job_file(
    path: str | Path,
    keys: tuple[str, ...] = _JOB_KEYS,
    tables: tuple[str, ...] = ("model", "training"),
    paths: tuple[str, ...] = ("train", "dev", "test", "out"),
) -> dict[str, Any]:
    """The TOML form of a job: top-level string `keys` (the `paths` among them relative to
    the file) and option `tables`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TagshiftError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise TagshiftError(f"{path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - set(keys) - set(tables))
    if unknown:
        known = ", ".join([*keys, *(f"[{t}]" for t in tables)])
        raise TagshiftError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {known}")
    for key in keys:
        if key in data and not isinstance(data[key], str):
            raise TagshiftError(f"{path}: '{key}' should be a string, not {data[key]!r}")
    for table in tables:
        if table in data and not isinstance(data[table], dict):
            raise TagshiftError(f"{path}: '{table}' should be a table ([{table}]), not {data[table]!r}")
    for key in paths:
        if key in data and not data[key]:
            raise TagshiftError(f"{path}: '{key}' is empty; give a path or leave the key out")
        if key in data:
            data[key] = path.parent / data[key]
    return data


def merged_options(data: dict[str, Any], tables: tuple[str, ...], **options: Any) -> dict[str, Any]:
    """A config file's values (`data`) overridden by the non-None `options`; the `tables`
    merge key by key."""
    for key in tables:
        data[key] = {**data.get(key, {}), **{k: v for k, v in options.pop(key, {}).items() if v is not None}}
    data.update({k: v for k, v in options.items() if v is not None})
    return data


@dataclass
class AdaptJob:
    """Everything one `tagshift adapt` run needs; `adapt` holds AdaptConfig fields and
    `training` TrainConfig fields."""

    source: Path
    train: Path
    out: Path
    dev: Path | None = None
    test: Path | None = None
    map: Path | None = None
    rehearse: Path | None = None  # raw text a spaCy source annotates for rehearsal (a spaCy pipeline out)
    adapt: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # the model a spaCy source teaches (--backend): BiLSTMConfig / TransformerConfig fields; an
    # adapted tagshift or Hugging Face source keeps its own model
    model: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None  # the adapted model's while it trains (the source tags in fp32); None: fp32

    def __post_init__(self) -> None:
        self.precision = training_precision(self.training, self.precision)


_ADAPT_KEYS = ("source", "train", "dev", "test", "out", "map", "rehearse")


def make_adapt_job(config_file: str | Path | None, **options: Any) -> AdaptJob:
    """An adapt job from the config file (top-level source, train, dev, test, out, map;
    [adapt], [training] and [model] tables) overridden by the non-None `options`."""
    tables = ("adapt", "training", "model")
    data = read_job_file(config_file, _ADAPT_KEYS, tables, _ADAPT_KEYS) if config_file else {}
    data = merged_options(data, tables, **options)
    missing = [k for k in ("source", "train", "out") if k not in data]
    if missing:
        raise TagshiftError(f"missing {', '.join(missing)} (give them as options or in --config)")
    optional = {k: Path(data[k]) if data.get(k) else None for k in ("dev", "test", "map", "rehearse")}
    return AdaptJob(Path(data["source"]), Path(data["train"]), Path(data["out"]), **optional,
                    adapt=data["adapt"], training=data["training"], model=data["model"],
                    precision=data.get("precision"))


def make_job(config_file: str | Path | None, **options: Any) -> TrainJob:
    """A job from the config file (if any) overridden by the non-None `options`; `model`
    and `training` options merge key by key."""
    data = merged_options(read_job_file(config_file) if config_file else {}, ("model", "training"), **options)
    missing = [k for k in ("backend", "train", "out") if k not in data]
    if missing:
        raise TagshiftError(f"missing {', '.join('--' + m for m in missing)} (give them as options or in --config)")
    return TrainJob(
        backend=data["backend"],
        train=Path(data["train"]),
        out=Path(data["out"]),
        dev=Path(data["dev"]) if data.get("dev") else None,
        test=Path(data["test"]) if data.get("test") else None,
        scheme=data.get("scheme"),
        model=data["model"],
        training=data["training"],
        precision=data.get("precision"),
    )


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start where a run would lose work: an interrupted run not resumed, a model
    not meant to be overwritten, or a resume with nothing to resume."""
    checkpoint = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise TagshiftError(f"{out} is a file; a model is saved as a directory: choose another --out")
    for bundle in (out, checkpoint):  # a save killed between its two renames left the bundle as NAME.old
        recover(bundle)
    if resume and not (checkpoint / CONFIG).is_file():
        finished = (out / CONFIG).is_file()
        raise TagshiftError(f"{out}: {'training there has finished' if finished else 'no checkpoint'}; nothing to resume")
    if not resume and checkpoint.exists():
        raise TagshiftError(f"{out} holds an interrupted run: add --resume to continue it, or remove the directory")
    if not resume and (out / CONFIG).is_file() and not overwrite:
        raise TagshiftError(f"{out} already holds a model; choose another --out, or add --overwrite")


def run_job(
    job: TrainJob, resume: bool = False, overwrite: bool = False, progress: bool = True, command: str | None = None,
    device: str = "cpu", read: ReadOptions = ReadOptions(), world: World = SINGLE,
) -> tuple[Tagger, TrainResult]:
    """Build (or resume) and train the job's tagger; the bundle ends up in `job.out`. The
    output is locked for the run: a second writer is refused. Under several processes
    (`world`) each rank runs this; rank 0 holds the lock and checks the output."""
    options = job.train_config()
    world.check_batch(options.batch_size)
    with world.main_holds(lambda: output_lock(job.out, command or "tagshift train")):
        world.from_main(lambda: check_out(job.out, resume, overwrite))
        train = read.read(job.train)
        dev = read.read(job.dev) if job.dev else None
        test = read.read(job.test) if job.test else None
        if resume:
            tagger = load_bundle(job.out / CHECKPOINT)
            check_same_model(job, tagger, job.out / CHECKPOINT)
        else:
            tagger = job.family.build(job.model_config(), train, job.scheme, options.seed, extra=dev)
        tagger.to(device)
        tagger.precision = job.precision
        result = fit(tagger, train, dev, options, job.out, resume=resume, progress=progress, command=command, test=test,
                     world=world)
    return tagger, result


def check_same_model(job: TrainJob, tagger: Tagger, checkpoint: Path) -> None:
    """Refuse to resume a checkpoint as another model than the job asks for (another family,
    scheme or model option), naming each difference: it would finish as the checkpoint's
    model while the lineage recorded the job's."""
    wanted = asdict(job.model_config())
    found = asdict(tagger.config)
    differ = [f"backend {tagger.backend.name} (now {job.family.name})"] if tagger.backend is not job.family else []
    differ += [f"scheme {tagger.scheme} (now {job.scheme})"] if tagger.scheme != job.scheme else []
    differ += [f"{name} {found.get(name)!r} (now {value!r})" for name, value in wanted.items()
               if name not in job.family.derived_options and found.get(name) != value]
    if differ:
        raise TagshiftError(f"{checkpoint}: the checkpoint is a model with another {'; '.join(differ)}; resume with "
                            "the same model options, or start afresh without --resume")


def run_adapt(
    job: AdaptJob, resume: bool = False, overwrite: bool = False, progress: bool = True, command: str | None = None,
    device: str = "cpu", read: ReadOptions = ReadOptions(), report: Callable[[str], None] = lambda text: None,
    compare_scratch: bool | None = None, world: World = SINGLE,
) -> tuple[Prepared, TrainResult]:
    """Adapt the job's source to its data: load, read, plan and operate on the head (the plan
    and the training schedule go to `report` before any epoch runs), then train; the adapted
    bundle ends up in `job.out` and the tagger is `prepared.tagger`. With `compare_scratch`
    (None: where the recipe asks for it), a target-only control trains after it
    (transfer/scratch.py): the verdict goes to `report` and into both lineages, and where the
    control is better it takes `job.out` (and `prepared.tagger`). Under several processes (`world`) each
    rank runs this (pseudo-labels are computed on each, alike); rank 0 holds the lock, checks
    the output, reports and saves."""
    if job.out.resolve() == job.source.resolve():
        raise TagshiftError(f"--out {job.out} is the source model; adapt writes a new model: choose another directory")
    options = adapt_config(job.adapt)
    if compare_scratch and job.dev is None:
        raise TagshiftError("--compare-scratch compares the adapted model with a target-only one on dev: give --dev")
    if compare_scratch and is_spacy_source(job.source) and options.backend is None:
        raise TagshiftError("--compare-scratch: a spaCy pipeline updated in place has no tagshift control to train; "
                            "give --backend to teach a tagshift model, or leave the option out")
    if is_spacy_source(job.source) and options.backend is None and world.distributed:
        raise TagshiftError(f"{world.where()}a spaCy pipeline updated in place trains in one process (spaCy's own "
                            "loop): launch without torchrun, or give --backend to teach a tagshift model")
    progress, report = progress and world.main, report if world.main else (lambda text: None)
    with world.main_holds(lambda: output_lock(job.out, command or "tagshift adapt")):
        data = AdaptData(job, read)
        prepared, result = _adapt_locked(job, options, resume, overwrite, progress, command, device, data, report,
                                         world)
        recipe = getattr(prepared, "recipe", None)  # (a spaCy teacher's run has none)
        if compare_scratch is None and recipe is not None and recipe.control:
            if data.dev is None:
                report("note: give --dev and adapt also trains a target-only control, keeping whichever is better")
            compare_scratch = data.dev is not None
        if compare_scratch:
            prepared, result = _compare_scratch(job, prepared, result, data, progress, command, report, world)
        return prepared, result


def _compare_scratch(job: AdaptJob, prepared: Prepared, result: TrainResult, data: AdaptData, progress: bool,
                     command: str | None, report: Callable[[str], None],
                     world: World) -> tuple[Prepared, TrainResult]:
    """Train the target-only control into OUT/target-only, record the verdict in both
    lineages, and swap the two where the control is better (transfer/scratch.py)."""
    comparison, control, control_result = scratch.compare_scratch(
        prepared.tagger, data.train, data.dev, result.options, job.out / scratch.CONTROL, data.test, progress, command,
        world)
    report(comparison.render())
    for tagger, where in ((prepared.tagger, job.out), (control, job.out / scratch.CONTROL)):
        tagger.lineage[-1]["compare_scratch"] = comparison.to_json()
        world.from_main(lambda tagger=tagger, where=where: save_bundle(tagger, where))
    if comparison.kept != scratch.CONTROL:
        return prepared, result
    world.from_main(lambda: scratch.swap_in_control(job.out))
    prepared.tagger = control
    return prepared, control_result


class AdaptData:
    """An adapt job's corpora, each read when first wanted and only once: the routes read
    them after their own checks, and --compare-scratch trains on the same ones."""

    def __init__(self, job: AdaptJob, read: ReadOptions):
        self.job, self.read = job, read

    @cached_property
    def train(self) -> Corpus:
        return self.read.read(self.job.train)

    @cached_property
    def dev(self) -> Corpus | None:
        return self.read.read(self.job.dev) if self.job.dev else None

    @cached_property
    def test(self) -> Corpus | None:
        return self.read.read(self.job.test) if self.job.test else None


def _adapt_locked(job: AdaptJob, options: Any, resume: bool, overwrite: bool, progress: bool, command: str | None,
                  device: str, data: AdaptData, report: Callable[[str], None],
                  world: World) -> tuple[Prepared, TrainResult]:
    if job.model and not (is_spacy_source(job.source) and options.backend is not None):
        raise TagshiftError(f"model options ({', '.join(sorted(job.model))}) build the model a spaCy pipeline teaches "
                            "(spacy:PACKAGE --backend B); an adapted model keeps its source's: drop them")
    world.from_main(lambda: check_out(job.out, resume, overwrite))
    if overwrite and not resume:  # an earlier run's --compare-scratch models are not this run's
        world.from_main(lambda: scratch.clear_comparison(job.out))
    if is_spacy_source(job.source):
        return _teach(job, options, resume, progress, command, device, data, report, world)
    if options.backend is not None:
        raise TagshiftError("--backend chooses the family of the model a spaCy pipeline teaches; "
                            "a tagshift or Hugging Face source keeps its own")
    source = load(job.source, device)
    train, dev, test = data.train, data.dev, data.test
    training = adapt_training(source.backend, **job.training)
    prepared = prepare_with_recipe(source, train, options, training, job.training,
                                   LabelMap.from_toml(job.map) if job.map else None, dev, progress)
    prepared.tagger.precision = job.precision
    report(prepared.render())
    report(_schedule(training, dev is not None))
    hint = few_steps_hint(len(prepared.train), training)
    if hint:
        report(f"note: {hint}")
    world.check_batch(training.batch_size)
    result = train_prepared(prepared, dev, training, job.out, str(job.source), resume, progress, command, test, world)
    return prepared, result


def _head_options(options: Any) -> list[str]:
    """The adapt options given that act on a source's head, scores or weights, which a spaCy pipeline has not."""
    return [flag for flag, given in (("--partial", options.partial), ("--distill", options.distill is not None),
                                     ("--anchor", options.anchor is not None),
                                     ("--keep-old-head", options.keep_old_head),
                                     (f"--labels {options.labels}", options.labels not in (None, "extend")))
            if given]


def _teach(job: AdaptJob, options: Any, resume: bool, progress: bool, command: str | None, device: str,
           data: AdaptData, report: Callable[[str], None], world: World) -> tuple[Taught, TrainResult]:
    """adapt from a spaCy pipeline: a new model of `--backend` learns the pipeline's types (by
    its pseudo-labels) and the target data's (transfer/teach.py)."""
    if options.backend is None:
        return _update_spacy(job, options, progress, command, data, report)
    family = get_backend(options.backend)
    unsupported = _head_options(options)
    if unsupported:
        raise TagshiftError(f"{', '.join(unsupported)}: a spaCy teacher gives entities, not scores, weights or a head to "
                            "operate on; its types are kept by pseudo-labels: drop the option")
    check_model_keys(family, job.model)
    config = family.new_config(**{**job.model, **({"head": options.head} if options.head else {})})
    teacher = SpacyPipeline(job.source)
    train, dev, test = data.train, data.dev, data.test
    training = TrainConfig.for_backend(family, **job.training)
    taught = prepare_taught(teacher, train, family, config, options.scheme, training.seed,
                            LabelMap.from_toml(job.map) if job.map else None, options.drop, dev, options.pseudo_label,
                            progress, job.rehearse)
    taught.tagger.to(device)
    taught.tagger.precision = job.precision
    report(taught.render())
    hint = few_steps_hint(len(taught.train), training)
    if hint:
        report(f"note: {hint}")
    result = fit(taught.tagger, taught.train, dev, training, job.out, resume=resume, progress=progress,
                 command=command, test=test, step=taught.step(str(job.source)),
                 dev_types=taught.dev_types(dev) if dev is not None else None, world=world)
    return taught, result


def _update_spacy(job: AdaptJob, options: Any, progress: bool, command: str | None, data: AdaptData,
                  report: Callable[[str], None]) -> tuple[SpacyUpdate, TrainResult]:
    """adapt a spaCy pipeline into a spaCy pipeline (transfer/spacy_update.py): its ner learns the
    new types through spaCy's training API, the old ones rehearsed."""
    given = [flag for flag, on in (("--map", job.map is not None), ("--drop", bool(options.drop)),
                                   ("--scheme", options.scheme is not None), ("--head", options.head is not None))
             if on] + _head_options(options)
    if given:
        raise TagshiftError(f"{', '.join(given)}: updating a spaCy pipeline keeps its types and adds the data's "
                            "(spaCy's ner has no head tagshift operates on); drop them, or give --backend to train a "
                            "tagshift model the pipeline teaches")
    taken = ("epochs", "seed", "batch_size", "lr", "head_lr", "encoder_lr", "patience")
    ignored = sorted(k for k, v in job.training.items() if v is not None and k not in taken)
    if ignored:
        raise TagshiftError(f"{', '.join(ignored)}: spaCy's own optimiser and schedule train its ner "
                            "(resume_training); give only --epochs, --seed, --batch-size, --lr, --encoder-lr and "
                            "--patience")
    training = TrainConfig(**job.training)  # checks them
    train, dev = data.train, data.dev
    rate = job.training.get("lr") or job.training.get("head_lr")
    epochs = job.training.get("epochs")
    update = update_pipeline(str(job.source), train, job.out, epochs=20 if epochs is None else epochs,
                             seed=training.seed, dev=dev, rehearse=job.rehearse, batch_size=training.batch_size,
                             lr=rate, encoder_lr=job.training.get("encoder_lr"), patience=training.patience,
                             command=command, report=report)
    result = TrainResult(update.history, update.best_epoch, update.best_dev, False, 0.0)
    return update, result


def _schedule(training: TrainConfig, has_dev: bool) -> str:
    """adapt's training schedule, for people."""
    return (
        f"training: {training.epochs} epochs at most, head lr {training.head_lr or training.lr:g}, encoder lr "
        f"{training.encoder_lr:g}"
        + (f" at its top layer, x{training.layer_decay:g} each layer down" if training.layer_decay < 1 else "")
        + (" (a tenth of the head's unless set: a trained encoder moves slowly)"
           if math.isclose(training.encoder_lr, (training.head_lr or training.lr) * ENCODER_LR_FACTOR) else "")
        + (f", encoder frozen for {training.freeze_epochs} epochs then unfrozen ({training.unfreeze})"
           if training.freeze_epochs else "")
        + (f"; dev scored every {training.dev_every} steps and after the last epoch" if has_dev and training.dev_every
           else "")
        + (f"; early stopping after {training.patience} {'scorings' if training.dev_every else 'epochs'} without a "
           f"better dev F1, not before step {training.min_steps}" if has_dev and training.patience else "")
    )


def run_import(source: str, out: Path, label_names: list[str] | None = None, overwrite: bool = False,
               command: str | None = None) -> Tagger:
    """`tagshift import`: a Hugging Face token classifier saved as a tagshift bundle at `out`."""
    if Path(source).resolve() == Path(out).resolve():
        raise TagshiftError(f"--out {out} is the source model; import writes a new bundle: choose another directory")
    with output_lock(out, command or "tagshift import"):
        check_out(out, resume=False, overwrite=overwrite)
        tagger = import_hf(source, label_names)
        tagger.lineage[0]["command"] = command or tagger.lineage[0]["command"]
        save_bundle(tagger, out)
    return tagger


def run_pretrain(
    text: Path,
    out: Path,
    model: Path | None = None,
    encoder: str | None = None,
    training: dict[str, Any] | None = None,
    masking: MaskingConfig = MaskingConfig(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    device: str = "cpu",
    report: Callable[[str], None] = lambda text: None,
    world: World = SINGLE,
) -> PretrainResult:
    """`tagshift pretrain`'s recipe: from the tagshift bundle `model`, or else the encoder
    `encoder` (default: the default MiniLM), masked-LM pretraining on the raw text `text`,
    saved to `out` (locked for the run: a second writer is refused). `training` holds
    TrainConfig fields over the transformer family's defaults. Under several processes
    (`world`) each rank runs this; rank 0 holds the lock, checks the output and saves."""
    if model is not None and encoder is not None:
        raise TagshiftError("give a model to pretrain or --encoder, not both: a bundle brings its own encoder")
    options = TrainConfig.for_backend(TRANSFORMER, **(training or {}))
    origin = Path(model) if model is not None else Path(resolve_encoder(encoder or DEFAULT_ENCODER))
    if origin.exists() and Path(out).resolve() == origin.resolve():
        raise TagshiftError(f"--out {out} is the source model; pretrain writes a new model: choose another directory")
    world.check_batch(options.batch_size)
    progress, report = progress and world.main, report if world.main else (lambda text: None)
    with world.main_holds(lambda: output_lock(out, command or "tagshift pretrain")):
        world.from_main(lambda: check_out(out, resume, overwrite))
        if model is not None:
            source = tagger_source(load(model, device), str(model), options.seed)
        else:
            source = encoder_source(encoder or DEFAULT_ENCODER, options.seed)
        text_read = read_text(text, source.tokenizer, masking, piece_limit(source, masking), progress)
        return pretrain(source, text_read, options, masking, out, resume, progress, command, device, report, world)
