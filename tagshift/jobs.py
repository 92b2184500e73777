"""What `tagshift train` does, from files to a saved bundle: a typed job (from a TOML file
and command-line options, options winning), a new or resumed tagger, training, scores; and
the job of `tagshift adapt`, read the same way."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tagshift.bundle import CONFIG, load_bundle
from tagshift.corpus import read_corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.taggers.build import DEFAULT_SCHEMES, bilstm_crf, transformer
from tagshift.taggers.tagger import BACKENDS, Tagger
from tagshift.taggers.transformer import TransformerConfig
from tagshift.training import CHECKPOINT, TrainConfig, TrainResult

_JOB_KEYS = ("backend", "train", "dev", "test", "out", "scheme")


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

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise TagshiftError(f"backend '{self.backend}' is not one of {', '.join(BACKENDS)}")
        self.scheme = self.scheme or DEFAULT_SCHEMES[self.backend]
        model_fields = {f.name for f in fields(self.model_config_class)}
        unknown = sorted(set(self.model) - model_fields)
        if unknown:
            raise TagshiftError(
                f"unknown [model] option(s) for {self.backend}: {', '.join(unknown)}; known: {', '.join(sorted(model_fields))}"
            )

    @property
    def model_config_class(self) -> type:
        return BiLSTMConfig if self.backend == "bilstm-crf" else TransformerConfig

    def model_config(self) -> BiLSTMConfig | TransformerConfig:
        try:
            return self.model_config_class(**self.model)
        except (TypeError, ValueError) as err:
            raise TagshiftError(f"[model] options: {err}") from None

    def train_config(self) -> TrainConfig:
        return TrainConfig.for_backend(self.backend, **self.training)


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
    adapt: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


_ADAPT_KEYS = ("source", "train", "dev", "test", "out", "map")


def make_adapt_job(config_file: str | Path | None, **options: Any) -> AdaptJob:
    """An adapt job from the config file (top-level source, train, dev, test, out, map;
    [adapt] and [training] tables) overridden by the non-None `options`."""
    tables = ("adapt", "training")
    data = read_job_file(config_file, _ADAPT_KEYS, tables, _ADAPT_KEYS) if config_file else {}
    data = merged_options(data, tables, **options)
    missing = [k for k in ("source", "train", "out") if k not in data]
    if missing:
        raise TagshiftError(f"missing {', '.join(missing)} (give them as options or in --config)")
    optional = {k: Path(data[k]) if data.get(k) else None for k in ("dev", "test", "map")}
    return AdaptJob(Path(data["source"]), Path(data["train"]), Path(data["out"]), **optional,
                    adapt=data["adapt"], training=data["training"])


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
    )


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start where a run would lose work: an interrupted run not resumed, a model
    not meant to be overwritten, or a resume with nothing to resume."""
    checkpoint = out / CHECKPOINT
    if resume and not (checkpoint / CONFIG).is_file():
        finished = (out / CONFIG).is_file()
        raise TagshiftError(f"{out}: {'training there has finished' if finished else 'no checkpoint'}; nothing to resume")
    if not resume and checkpoint.exists():
        raise TagshiftError(f"{out} holds an interrupted run: add --resume to continue it, or remove the directory")
    if not resume and (out / CONFIG).is_file() and not overwrite:
        raise TagshiftError(f"{out} already holds a model; choose another --out, or add --overwrite")


def run_job(
    job: TrainJob, resume: bool = False, overwrite: bool = False, progress: bool = True, command: str | None = None,
    device: str = "cpu", **read_options: Any,
) -> tuple[Tagger, TrainResult]:
    """Build (or resume) and train the job's tagger; the bundle ends up in `job.out`."""
    options = job.train_config()
    check_out(job.out, resume, overwrite)
    train = read_corpus(job.train, **read_options)
    dev = read_corpus(job.dev, **read_options) if job.dev else None
    test = read_corpus(job.test, **read_options) if job.test else None
    if resume:
        tagger = load_bundle(job.out / CHECKPOINT)
    elif job.backend == "bilstm-crf":
        tagger = bilstm_crf(job.model_config(), train, job.scheme, options.seed, extra=dev)
    else:
        tagger = transformer(job.model_config(), train, job.scheme, options.seed)
    tagger.to(device)
    result = tagger.train(train, dev, options, job.out, resume=resume, progress=progress, command=command, test=test)
    return tagger, result
