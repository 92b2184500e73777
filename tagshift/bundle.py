"""The model bundle: a directory a tagger is saved to and loaded from.

    config.json        backend, labels, scheme, sizes, format version (a transformer's is
                       also its Hugging Face config, with id2label/label2id)
    model.safetensors  the weights (a transformer's under Hugging Face names)
    encoder files      what the family saves beside them (taggers/backends.py): a BiLSTM-CRF's
                       vocab.json, a transformer's tokenizer as `save_pretrained` writes it
    lineage.json       the steps that made the model: data hashes, commands, scores

Only JSON and safetensors are read back, so loading cannot execute code; the JSON fields
tagshift reads are checked against schemas (`CONFIG_SCHEMA`, `LINEAGE_STEP_SCHEMA`) before
use, so a damaged file is one BundleError naming the file and the field.

A bundle is written to a temporary directory `.NAME.XXXXXXXX.saving` beside its destination
and swapped in with two renames (the old bundle is `NAME.old` in between): a crash leaves
the old bundle or the new one whole, and the next save or load tidies up after it
(`recover`, `_remove_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Callable

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from tagshift.atomic import default_mode
from tagshift.errors import BundleError, SchemeError, TagshiftError
from tagshift.lineage import file_sha256
from tagshift.schemes import MODEL_SCHEMES, label_set, split_tag
from tagshift.taggers.backends import Backend, get_backend
from tagshift.taggers.hf import HUB, import_hf, is_token_classifier
from tagshift.taggers.guide import Guide
from tagshift.taggers.spacy_pipeline import SpacyPipeline, is_spacy_source
from tagshift.taggers.heads import HEAD_CLASSES, MappingHead, head_kind_of_class, make_head
from tagshift.taggers.tagger import Network, Tagger
from tagshift.version import __version__

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
LINEAGE = "lineage.json"
GUIDE = "guide"  # the source a stacked model reads (taggers/guide.py), a bundle of its own

__all__ = ["BundleError", "load", "recover", "save"]  # BundleError is raised here, defined with the other errors

_FIX = "the file was edited or damaged: restore it or re-save the model"


# --- weights under the family's names ---------------------------------------------------


def _saved_names(tagger: Tagger) -> dict[str, str]:
    """Our parameter names -> the names they are saved under (a transformer's as
    `AutoModelForTokenClassification` expects them)."""
    prefixes = tagger.backend.saved_prefixes(tagger.encoder)
    names = {}
    for name in tagger.network.state_dict():
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        names[name] = prefixes[prefix] + name.removeprefix(prefix) if prefix else name
    return names


def weights_to_save(tagger: Tagger) -> dict[str, Tensor]:
    names = _saved_names(tagger)
    return {names[k]: v.detach().cpu().contiguous() for k, v in tagger.network.state_dict().items()}


def load_weights(tagger: Tagger, weights: dict[str, Tensor], source: str) -> None:
    """Put saved weights into `tagger`, checking that every name and shape fits."""
    ours = {saved: name for name, saved in _saved_names(tagger).items()}
    state = tagger.network.state_dict()
    missing = sorted(set(ours) - set(weights))
    unexpected = sorted(set(weights) - set(ours))
    if missing or unexpected:
        raise BundleError(
            f"{source}: the weights do not fit the model its config describes "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})"
        )
    for saved, tensor in weights.items():
        if tuple(tensor.shape) != tuple(state[ours[saved]].shape):
            raise BundleError(
                f"{source}: '{saved}' has shape {tuple(tensor.shape)}, the config implies {tuple(state[ours[saved]].shape)}"
            )
    tagger.network.load_state_dict({ours[k]: v for k, v in weights.items()})


def read_weights(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{path}: not a readable safetensors file ({err}); the file is damaged: re-save the model") from None


# --- saving ----------------------------------------------------------------------------


def _mapping_fields(tagger: Tagger) -> dict[str, Any]:
    """What rebuilds a mapping head (a checkpoint taken during `adapt --labels map`)."""
    if not isinstance(tagger.head, MappingHead):
        return {}
    return {"inner_head": type(tagger.head.inner).__name__, "mapping_source_labels": tagger.head.source_labels}


def bundle_config(tagger: Tagger, weights_sha256: str) -> dict[str, Any]:
    tagshift = {
        "format_version": FORMAT_VERSION,
        "version": __version__,
        "backend": tagger.backend.name,
        "labels": tagger.labels,
        "scheme": tagger.scheme,
        "head": type(tagger.head).__name__,
        "model": asdict(tagger.config),
        **_mapping_fields(tagger),
        "weights_sha256": weights_sha256,
    }
    if tagger.backend.hf_config is None:
        return {"tagshift": tagshift}
    hf, tagshift["hf_compatible"] = tagger.backend.hf_config(
        tagger.encoder, tagger.labels, type(tagger.head).__name__ == "SoftmaxHead"
    )
    hf["tagshift"] = tagshift
    return hf


def save(tagger: Tagger, path: str | Path) -> None:
    """Write `tagger` as a bundle directory at `path`, atomically: a crash leaves the old
    bundle or the new one whole."""
    save_bundle(tagger, path)


def save_bundle(tagger: Tagger, path: str | Path, extra: dict[str, str | dict[str, Tensor]] | None = None) -> None:
    """Write `tagger` as a bundle directory at `path`. `extra` adds files: JSON text, or
    tensors for a safetensors file (a checkpoint's optimizer state). Files already in `path`
    that the bundle does not write (training log, curves) are kept."""
    def write(tmp: Path) -> None:
        write_model_files(tagger, tmp, Path(path))
        write_extra(tmp, extra or {})

    write_directory(path, write)


def write_model_files(tagger: Tagger, directory: Path, previous: Path | None = None) -> str:
    """A bundle's files in `directory`; a guide (`adapt --labels stack`, `--guide`) as a bundle
    of its own in GUIDE inside it, unless `previous` (the bundle being replaced) holds the same
    one: a guide never trains, so each checkpoint of a guided run would write it again, and
    write_directory links the old one in instead. Returns the weights' hash."""
    save_file(weights_to_save(tagger), directory / WEIGHTS, metadata={"format": "pt"})
    weights = file_sha256(directory / WEIGHTS)
    config = bundle_config(tagger, weights)
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / LINEAGE).write_text(json.dumps(tagger.lineage, indent=2) + "\n", encoding="utf-8")
    tagger.backend.save_files(tagger.encoder, directory)
    guide = tagger.guide
    if guide is not None and not (guide.written and previous is not None and _guide_sha256(previous) == guide.written):
        (directory / GUIDE).mkdir()
        guide.written = write_model_files(guide.tagger, directory / GUIDE)
    return weights


def _guide_sha256(bundle: Path) -> str | None:
    """The weights hash the guide's config in `bundle` records; None where there is none."""
    try:
        return json.loads((bundle / GUIDE / CONFIG).read_text(encoding="utf-8"))["tagshift"]["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_extra(directory: Path, extra: dict[str, str | dict[str, Tensor]]) -> None:
    """Files beside a model: JSON text, or tensors as a safetensors file."""
    for name, content in extra.items():
        if isinstance(content, str):
            (directory / name).write_text(content, encoding="utf-8")
        else:
            save_file(content, directory / name)


def write_directory(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write a directory at `path` as a bundle is written: `write` fills a temporary directory
    beside it, swapped in whole (a crash leaves the old directory or the new one); files
    already in `path` that `write` does not write (training log, curves) are kept. Also how
    `tagshift pretrain` writes a Hugging Face model directory and its checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)  # so that the files an interrupted save left in NAME.old are kept too
    _remove_stale_temporaries(path)
    tmp = _new_temporary(path)
    try:
        write(tmp)
        if path.is_dir():
            _keep_others(path, tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _old(path: Path) -> Path:
    """Where the old bundle waits between the swap's two renames."""
    return path.with_name(path.name + ".old")


def _new_temporary(path: Path) -> Path:
    """A new private directory `.NAME.XXXXXXXX.saving` beside `path`: named by us rather
    than by tempfile, so that `_remove_stale_temporaries` knows the name for sure."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.saving"
        try:
            tmp.mkdir(mode=0o700)
            return tmp
        except FileExistsError:
            continue


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of saves to `path` that were killed mid-write. Safe before a
    save starts its own: only one writer writes an output at a time (jobs lock it). The
    pattern takes 8 characters of tempfile's alphabet too (earlier versions named them with
    it), and never another output's: `.NAME.v2.XXXXXXXX.saving` has a part more."""
    ours = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.saving")
    for entry in path.parent.iterdir():
        if ours.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def recover(path: str | Path) -> bool:
    """Finish what a save killed between its two renames left: when `path` holds no bundle
    and `path.old` holds a whole one, rename it back. True when it did; False when there was
    nothing to recover or it could not be done (read-only; `read_config` then says what to
    rename). Loading and saving call it; so does a run before it looks for a checkpoint."""
    path = Path(path)
    old = _old(path)
    if (path / CONFIG).is_file() or not (old / CONFIG).is_file():
        return False
    if path.is_symlink() or path.is_file() or (path.is_dir() and any(path.iterdir())):
        return False  # something else is there: leave both for the user to sort out
    try:
        os.replace(old, path)  # also over an empty directory
    except OSError:  # read-only, or another process recovered it first
        return False
    return True


def _keep_others(old: Path, new: Path) -> None:
    """Hard-link (or copy) into `new` what `old` holds and `new` does not: the old directory
    stays whole until the swap."""
    for entry in old.iterdir():
        target = new / entry.name
        if target.exists() or entry.name.endswith((".saving", ".old")):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _swap_in(new: Path, path: Path) -> None:
    """Replace `path` by `new` with two renames; between them the old bundle is `path.old`."""
    for f in [new, *new.rglob("*")]:
        os.chmod(f, default_mode(directory=f.is_dir()))
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    old = _old(path)
    for attempt in range(3):
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        try:
            os.replace(new, path)
            break
        except OSError:
            # A reader's `recover` may have moved the old bundle back between our renames:
            # move it aside again; otherwise the failure is real.
            if attempt == 2 or not (path / CONFIG).is_file():
                raise
    shutil.rmtree(old, ignore_errors=True)


# --- schemas ---------------------------------------------------------------------------

# What each JSON field may hold, by dotted path ('*': any key of an object). An entry lists
# the kinds allowed: a type as json.loads returns it (float: any number), None for null,
# list[str] for a list of strings, or literal strings for a choice. Fields not listed are not read, so not checked.
Kind = Any
_KIND_NAMES: dict[Kind, str] = {
    str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
    list: "a list", None: "null", list[str]: "a list of strings",
}
_HEAD_NAMES = tuple(c.__name__ for c in HEAD_CLASSES.values())

CONFIG_SCHEMA: dict[str, tuple[Kind, ...]] = {  # the tagshift section of config.json
    "version": (str,),
    "backend": (str,),  # which ones: get_backend says, with the families it knows
    "scheme": MODEL_SCHEMES,
    "labels": (list[str],),
    "head": (*_HEAD_NAMES, MappingHead.__name__),
    "inner_head": _HEAD_NAMES,
    "model": (dict,),  # its options: the family's config class checks them
    "mapping_source_labels": (list[str],),
    "weights_sha256": (str,),
    "hf_compatible": (bool,),
}

LINEAGE_STEP_SCHEMA: dict[str, tuple[Kind, ...]] = {  # one step of lineage.json: what is read back
    "step": (str,),
    "date": (str,),
    "tagshift": (str,),
    "command": (str, None),
    "source": (str, None),
    "source_weights_sha256": (str, None),
    "plan": (dict, None),
    "plan.operation": (str,),
    "plan.target_of": (dict,),
    "plan.target_of.*": (str,),
    "plan.renamed": (dict,),
    "plan.renamed.*": (str,),
    "plan.merged": (dict,),
    "plan.merged.*": (list[str],),
    "plan.kept": (list[str],),
    "plan.new": (list[str],),
    "plan.dropped": (list[str],),
    "pseudo_labels": (dict, None),
    "pseudo_labels.entities": (dict,),
    "pseudo_labels.entities.*": (float,),
    "data": (dict, None),
    "data.*": (dict, None),
    "data.*.sha256": (str, None),
    "scores": (dict, None),
    "scores.*": (dict, None),
    "scores.*.mode": (str,),
    "scores.*.micro": (dict,),
    "scores.*.micro.*": (float,),
}


def _fits(value: Any, kind: Kind) -> bool:
    """Whether a value json.loads gave is of `kind` (true and false are not numbers here)."""
    if isinstance(kind, str):  # one value of a choice
        return value == kind
    if kind is None:
        return value is None
    if kind == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def _expected(kinds: tuple[Kind, ...]) -> str:
    """'one of iob2, iobes' for a choice, 'a string or null' for kinds."""
    if all(isinstance(k, str) for k in kinds):
        return "one of " + ", ".join(kinds)
    return " or ".join(_KIND_NAMES[k] for k in kinds)


def _shown(value: Any) -> str:
    """A value for a one-line message ('a string' in quotes, else as JSON), cut short."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _values_at(data: Any, keys: list[str], name: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of each field at the path `keys` that `data` has."""
    if not keys:
        yield name, data
        return
    if not isinstance(data, dict):
        return
    present = data.keys() if keys[0] == "*" else [keys[0]] if keys[0] in data else []
    for key in present:
        yield from _values_at(data[key], keys[1:], f"{name}.{key}" if name else key)


def _check_schema(data: dict[str, Any], schema: dict[str, tuple[Kind, ...]], where: str) -> None:
    """Raise a BundleError for the first field of `data` that `schema` does not allow."""
    for path, kinds in schema.items():  # parents come before their fields
        for name, value in _values_at(data, path.split(".")):
            if not any(_fits(value, kind) for kind in kinds):
                raise BundleError(f"{where}field '{name}' is {_shown(value)}; expected {_expected(kinds)}: {_FIX}")


def _check_config_fields(fields: dict[str, Any], file: Path) -> None:
    """The tagshift section's fields against `CONFIG_SCHEMA`, then what ties them together:
    the labels are the scheme's tags of their types, and a mapping head names its parts."""
    _check_schema(fields, CONFIG_SCHEMA, f"{file}: ")
    _check_labels(fields["labels"], fields["scheme"], file)
    if fields.get("head") == MappingHead.__name__:
        for key in ("inner_head", "mapping_source_labels"):
            if key not in fields:
                raise BundleError(f"{file}: field '{key}' is missing; a MappingHead needs it: {_FIX}")


def _check_labels(labels: list[str], scheme: str, file: Path) -> None:
    """Labels as a model holds them: 'O', then every tag of each of their types in `scheme`
    (the head has one row per label, and decoding reads the prefixes)."""
    if not labels or labels[0] != "O":
        found = f"starts with {_shown(labels[0])}" if labels else "is []"
        raise BundleError(f"{file}: field 'labels' {found}; expected 'O' first: {_FIX}")
    try:
        types = {split_tag(label)[1] for label in labels} - {""}
    except SchemeError as err:
        raise BundleError(f"{file}: field 'labels': {err}") from None
    expected = label_set(types, scheme)
    missing = [label for label in expected if label not in labels]
    foreign = [label for label in labels if label not in expected]
    repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
    if missing or foreign or repeated:
        found = [f"{what} {', '.join(items[:5])}" for what, items in
                 (("lacks", missing), ("has", foreign), ("repeats", repeated)) if items]
        raise BundleError(
            f"{file}: field 'labels' {'; '.join(found)}; expected 'O' then every {scheme} tag of its types: {_FIX}"
        )


def _check_lineage_fields(lineage: Any, file: Path) -> None:
    """A list of steps (objects), each against `LINEAGE_STEP_SCHEMA`."""
    if not isinstance(lineage, list) or not all(isinstance(step, dict) for step in lineage):
        raise BundleError(f"{file}: a lineage is a JSON list of steps (objects); found {_shown(lineage)}")
    for number, step in enumerate(lineage, start=1):
        _check_schema(step, LINEAGE_STEP_SCHEMA, f"{file}: step {number}: ")


# --- loading ---------------------------------------------------------------------------


def _read_json(file: Path) -> Any:
    """A bundle's JSON file, or a BundleError naming it (RecursionError: nesting too deep)."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{file}: not valid JSON ({err})") from None
    except OSError as err:
        raise BundleError(f"{file}: not readable ({err.strerror or err})") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """The tagshift part of a bundle's config.json, checked for a format this version reads
    and against `CONFIG_SCHEMA`. A bundle an interrupted save left as `NAME.old` is moved
    back first (`recover`)."""
    path = Path(path)
    recover(path)
    if not (path / CONFIG).is_file():
        old = _old(path)
        if (old / CONFIG).is_file():
            raise BundleError(f"{path}: missing, but {old} holds the bundle an interrupted save left: rename it to {path}")
        if path.is_file():
            raise BundleError(f"{path}: a model is a directory (a tagshift bundle), not a file")
        if not path.exists():
            raise BundleError(f"{path}: no such model directory")
        raise BundleError(f"{path}: not a tagshift model (no {CONFIG}); train one with 'tagshift train'")
    config = _read_json(path / CONFIG)
    fields = config.get("tagshift") if isinstance(config, dict) else None
    if not isinstance(fields, dict):
        raise BundleError(f"{path / CONFIG}: no 'tagshift' section; this directory was not saved by tagshift")
    version = fields.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path / CONFIG}: no bundle format_version")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: saved by tagshift {fields.get('version', '?')} in bundle format {version}; this tagshift "
            f"({__version__}) reads format {FORMAT_VERSION} and older: upgrade tagshift to load it"
        )
    missing = [key for key in ("backend", "labels", "scheme", "model") if key not in fields]
    if missing:
        raise BundleError(f"{path / CONFIG}: the tagshift section lacks {', '.join(missing)}; the file was edited or cut")
    _check_config_fields(fields, path / CONFIG)
    return fields


def read_lineage(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path) / LINEAGE
    if not file.is_file():
        return []
    lineage = _read_json(file)
    _check_lineage_fields(lineage, file)
    return lineage


def load(path: str | Path, device: str = "cpu", precision: str = "fp32") -> Tagger:
    """The model saved at `path`, on `device`, computing in `precision`: the one entry point
    that loads any bundle (also `tagshift.load`). Only JSON and safetensors are read."""
    if is_spacy_source(path):
        raise BundleError(f"{path} is a spaCy pipeline, not a tagshift model: predict, evaluate and labels suggest "
                          "take it, and adapt with --backend trains a tagshift model it teaches")
    tagger = load_bundle(path).to(device)
    tagger.precision = precision
    return tagger


def is_hf_source(path: str | Path) -> bool:
    """A Hugging Face token classifier (a `save_pretrained` directory, or `hf:NAME`), which
    loads by import rather than as a bundle."""
    return str(path).startswith(HUB) or is_token_classifier(path)


def load_source(name: str | Path, device: str = "cpu", precision: str = "fp32") -> Tagger | SpacyPipeline:
    """What predicts for predict, evaluate and labels suggest: a spaCy pipeline
    (`spacy:PACKAGE` or `spacy:DIR`), else any model `load` reads."""
    return SpacyPipeline(name) if is_spacy_source(name) else load(name, device, precision)


def load_bundle(path: str | Path) -> Tagger:
    """The tagger saved at `path`, on the CPU, as it was saved; a Hugging Face token
    classifier is imported (taggers/hf.py)."""
    if is_hf_source(path):
        return import_hf(path)
    path = Path(path)
    fields = read_config(path)
    weights_file = path / WEIGHTS
    if not weights_file.is_file():
        if (path / "onnx.json").is_file():
            raise BundleError(f"{path}: an ONNX export, not a bundle: tag with 'tagshift predict --runtime onnx', or "
                              "load it with tagshift.export.onnx.load_onnx")
        raise BundleError(f"{path}: no {WEIGHTS}; the bundle is incomplete")
    if fields.get("weights_sha256") and file_sha256(weights_file) != fields["weights_sha256"]:
        raise BundleError(
            f"{weights_file}: changed since tagshift saved it (its checksum differs from the one in {CONFIG}); "
            "the file is damaged or was replaced: restore it or re-save the model"
        )
    weights = read_weights(weights_file)
    labels, scheme = fields["labels"], fields["scheme"]
    try:
        backend = get_backend(fields["backend"])
    except TagshiftError as err:
        raise BundleError(f"{path / CONFIG}: {err}") from None
    mapped = fields.get("head") == MappingHead.__name__  # a checkpoint of `adapt --labels map`
    head_kind = head_kind_of_class(fields.get("inner_head" if mapped else "head", "SoftmaxHead"))
    config = _model_config(backend, fields["model"], path)
    encoder = backend.load_encoder(config, path)
    head = make_head(head_kind, encoder.output_dim, labels, scheme, backend.head_dropout(encoder))
    if mapped:
        head = MappingHead(head, fields["mapping_source_labels"])
    lineage = read_lineage(path)
    guide = _load_guide(path, config)
    try:
        tagger = Tagger(backend, config, labels, scheme, Network(encoder, head), lineage, guide)
    except TagshiftError as err:
        raise BundleError(f"{path}: {err}") from None
    load_weights(tagger, weights, str(weights_file))
    tagger.network.eval()
    return tagger


def _load_guide(path: Path, config: Any) -> Guide | None:
    """The guide a stacked model's config names, from its bundle in GUIDE; None for the others."""
    wanted = getattr(config, "guide_labels", None)
    if not wanted:
        return None
    if not (path / GUIDE / CONFIG).is_file():
        raise BundleError(f"{path}: the model reads a guide's tag probabilities (guide_labels in {CONFIG}) but "
                          f"{path / GUIDE} holds no bundle; {_FIX}")
    guide = Guide(load_bundle(path / GUIDE), states=config.guide_states > 0)
    if guide.labels != wanted or guide.state_size != config.guide_states:
        raise BundleError(f"{path / GUIDE}: its labels ({', '.join(guide.labels)}) and states ({guide.state_size}) "
                          f"are not those the model reads ({', '.join(wanted)}; {config.guide_states}); {_FIX}")
    return guide


def _model_config(backend: Backend, values: dict[str, Any], path: Path) -> Any:
    """The model's config dataclass from the bundle's values (with the defaults older bundles
    were made with), or a BundleError saying why not. The config class checks each option's
    type and range, as it does for a job file's."""
    config_class = backend.config_class
    values = {**backend.legacy_options, **values}
    known = {f.name for f in dataclass_fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BundleError(
            f"{path / CONFIG}: model options {', '.join(unknown)} are unknown to this tagshift "
            f"({__version__}); the bundle was made by another version: upgrade tagshift to load it"
        )
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{path / CONFIG}: field 'model' is invalid: {err}; {_FIX}") from None


def bundle_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())



def model_record(path: str | Path, loaded: Tagger | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`tagshift info`'s facts: a bundle's tagshift config and lineage, read without building
    the model; for a Hugging Face classifier, those its import gives (`loaded`: the model
    already imported from `path`, read instead of importing it again)."""
    if not is_hf_source(path):
        return read_config(path), read_lineage(path)
    tagger = loaded if loaded is not None else import_hf(path)
    return bundle_config(tagger, tagger.lineage[0]["weights_sha256"])["tagshift"], tagger.lineage


def describe_bundle(path: str | Path, fields: dict[str, Any], lineage: list[dict[str, Any]]) -> str:
    """`tagshift info`: what the bundle holds and where it came from, for people."""
    from tagshift.schemes import split_tag

    types = sorted({split_tag(label)[1] for label in fields["labels"]} - {""})
    model = fields.get("model", {})
    encoder = model.get("encoder") or ("BiLSTM, vectors: " + str(model.get("vectors") or "none"))
    lines = [
        f"{path}: tagshift {fields['backend']} model (bundle format {fields['format_version']}, "
        f"saved by tagshift {fields.get('version', '?')}, {bundle_size(path) / 1e6:.1f} MB)",
        f"encoder: {encoder}",
        f"head: {fields.get('head')}; scheme: {fields['scheme']}; {len(fields['labels'])} labels",
        f"types ({len(types)}): {', '.join(types)}",
    ]
    if model.get("guide_labels"):  # adapt --labels stack
        guide_types = sorted({split_tag(label)[1] for label in model["guide_labels"]} - {""})
        read = "tag probabilities and encoder states" if model.get("guide_states") else "tag probabilities"
        lines.append(f"guide: reads the {read} of the source in {GUIDE}/ (types: {', '.join(guide_types)})")
    if "hf_compatible" in fields:  # a family saved in Hugging Face's layout
        hf = "yes" if fields.get("hf_compatible") else "no (it has a CRF or casing features)"
        lines.append(f"loads in transformers' AutoModelForTokenClassification: {hf}")
    for number, step in enumerate(lineage, start=1):
        lines.append(f"step {number}: {step.get('step')} on {step.get('date')} by tagshift {step.get('tagshift')}")
        if step.get("command"):
            lines.append(f"  command: {step['command']}")
        plan = step.get("plan")
        if isinstance(plan, dict):  # an adapt step
            moved = [f"{a} -> {b}" for a, b in (plan.get("renamed") or {}).items()]
            moved += [f"{'+'.join(olds)} -> {new}" for new, olds in (plan.get("merged") or {}).items()]
            lines.append(
                f"  from {step.get('source')}: {plan.get('operation')}; kept {', '.join(plan.get('kept') or []) or 'none'}; "
                + (f"renamed or merged {', '.join(moved)}; " if moved else "")
                + f"new {', '.join(plan.get('new') or []) or 'none'}; dropped {', '.join(plan.get('dropped') or []) or 'none'}"
            )
            pseudo = step.get("pseudo_labels")
            if isinstance(pseudo, dict):
                lines.append(f"  pseudo-labels: {sum(pseudo.get('entities', {}).values())} entities "
                             f"(confidence >= {pseudo.get('threshold')})")
        for role, record in (step.get("data") or {}).items():
            if isinstance(record, dict):
                digest = f", sha256 {record['sha256'][:12]}" if record.get("sha256") else ""
                lines.append(f"  {role}: {record.get('path')} ({record.get('sentences')} sentences{digest})")
        for split, scores in (step.get("scores") or {}).items():
            if scores:
                micro = scores["micro"]
                lines.append(f"  {split} entity F1 ({scores['mode']}): {100 * micro['f1']:.2f} "
                             f"(P {100 * micro['precision']:.2f}, R {100 * micro['recall']:.2f})")
    return "\n".join(lines)
