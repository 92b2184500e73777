"""Bundles after a kill and damaged bundles (issue 22, items 2 and 4).

A save killed mid-write leaves `.NAME.XXXXXXXX.saving` beside the bundle; one killed between
its two renames leaves `NAME.old` and no `NAME`. The next save must tidy the first, and a
load, a save or a run's check for a checkpoint must put the second back (`recover`).
A damaged bundle must load or fail with one BundleError line that names the file and the
field — never a KeyError, TypeError or a ValueError from transformers. The states on disk are
made by hand from a real small bundle, built once per module and copied per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tagshift
import tagshift.bundle
from tagshift.bundle import BundleError, recover
from tagshift.corpus import Corpus, read_corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.backends import BILSTM_CRF, TRANSFORMER
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.taggers.tagger import Tagger
from tagshift.taggers.transformer import TransformerConfig
from tests.conftest import DATA, REPO

WIKIGOLD = DATA / "wikigold" / "wikigold.slice.conll"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(read_corpus(WIKIGOLD).sentences[:50])


@pytest.fixture(scope="module")
def small(corpus, tmp_path_factory) -> tuple[Tagger, Path]:
    """An untrained tiny BiLSTM-CRF and its bundle (a CRF head: the most fields to damage)."""
    tagger = BILSTM_CRF.build(BiLSTMConfig(hidden=8, char_hidden=4, word_dim=10), corpus, seed=0)
    path = tmp_path_factory.mktemp("small") / "model"
    tagshift.save(tagger, path)
    return tagger, path


def copy_of(bundle: Path, target: Path) -> Path:
    shutil.copytree(bundle, target)
    return target


def same_weights(a: Tagger, b: Tagger) -> bool:
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].equal(sb[k]) for k in sa)


# --- leftovers after a kill (item 2) ----------------------------------------------------


def test_a_save_removes_the_temporaries_of_killed_saves_to_its_path(small, tmp_path):
    """kill -9 mid-write left `.model.XXXXXXXX.saving`; no later save removed it, so every
    killed run left a model-sized directory behind for good."""
    tagger, bundle = small
    path = copy_of(bundle, tmp_path / "model")
    stale = copy_of(bundle, tmp_path / ".model.0a1b2c3d.saving")
    (stale / "model.safetensors").write_bytes(b"half")  # as a kill mid-write leaves it
    older = copy_of(bundle, tmp_path / ".model.k3_x9q2z.saving")  # tempfile's naming, as earlier versions left it
    neighbour = copy_of(bundle, tmp_path / ".model.v2.0a1b2c3d.saving")  # another output's save in progress
    users = tmp_path / ".model.notes.saving"  # not our naming: not ours to remove
    users.mkdir()
    tagshift.save(tagger, path)
    assert not stale.exists() and not older.exists()
    assert neighbour.is_dir() and users.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.notes.saving", ".model.v2.0a1b2c3d.saving", "model"]
    assert same_weights(tagshift.load(path), tagger)


def test_a_save_keeps_its_own_temporary_until_the_swap(small, tmp_path, monkeypatch):
    """Tidying happens before the save makes its own directory, never during the write."""
    tagger, _ = small
    path = tmp_path / "model"
    seen: list[list[str]] = []
    real_swap = tagshift.bundle._swap_in

    def swap_and_look(new: Path, target: Path) -> None:
        seen.append(sorted(p.name for p in new.iterdir()))
        real_swap(new, target)

    monkeypatch.setattr(tagshift.bundle, "_swap_in", swap_and_look)
    tagshift.save(tagger, path)
    assert seen and "model.safetensors" in seen[0] and "config.json" in seen[0]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _killed_between_renames(bundle: Path, path: Path) -> Path:
    """The disk after a kill between the swap's renames: the old bundle as NAME.old, no NAME."""
    old = copy_of(bundle, path.with_name(path.name + ".old"))
    (old / "train_log.jsonl").write_text('{"epoch": 1}\n')  # a training out dir's own file
    return old


def test_recover_moves_a_whole_old_bundle_back(small, tmp_path):
    tagger, bundle = small
    path = tmp_path / "model"
    old = _killed_between_renames(bundle, path)
    assert recover(path) is True
    assert not old.exists() and (path / "config.json").is_file() and (path / "train_log.jsonl").is_file()
    assert recover(path) is False  # nothing left to do
    assert same_weights(tagshift.load(path), tagger)


def test_recover_leaves_what_it_cannot_tell_apart(small, tmp_path):
    """Only a missing bundle beside a whole NAME.old is put back: a half-copied NAME.old, or
    a NAME that holds something else, stays as it is for the user to judge."""
    _, bundle = small
    cut = copy_of(bundle, tmp_path / "cut.old")
    (cut / "config.json").unlink()
    assert recover(tmp_path / "cut") is False and cut.is_dir() and not (tmp_path / "cut").exists()

    both = copy_of(bundle, tmp_path / "both")
    copy_of(bundle, tmp_path / "both.old")
    assert recover(both) is False and (tmp_path / "both.old").is_dir()

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    copy_of(bundle, tmp_path / "other.old")
    assert recover(other) is False and (other / "notes.txt").is_file()
    with pytest.raises(BundleError, match=r"other\.old holds the bundle .* rename it"):
        tagshift.load(other)

    empty = tmp_path / "empty"  # an empty directory is no bundle: renaming over it loses nothing
    empty.mkdir()
    copy_of(bundle, tmp_path / "empty.old")
    assert recover(empty) is True and (empty / "config.json").is_file()


def test_loading_after_a_kill_between_the_renames_finds_the_bundle(small, tmp_path):
    """Before, loading said 'rename it'; a checkpoint there meant `--resume` found nothing
    to resume and a run without it started from scratch over the user's epochs."""
    tagger, bundle = small
    checkpoint = tmp_path / "out" / "checkpoint"
    checkpoint.parent.mkdir()
    _killed_between_renames(bundle, checkpoint)
    assert same_weights(tagshift.load(checkpoint), tagger)
    assert [p.name for p in checkpoint.parent.iterdir()] == ["checkpoint"]


def test_read_config_recovers_too(small, tmp_path):
    """`tagshift info` reads the config alone: it must see the bundle as loading does."""
    _, bundle = small
    path = tmp_path / "model"
    _killed_between_renames(bundle, path)
    assert tagshift.bundle.read_config(path)["backend"] == "bilstm-crf"


def test_a_save_over_an_interrupted_save_keeps_the_out_dirs_files(small, tmp_path):
    """A save after a kill between the renames used to write a fresh directory and delete
    NAME.old, and the training log in it with it."""
    tagger, bundle = small
    path = tmp_path / "model"
    _killed_between_renames(bundle, path)
    tagshift.save(tagger, path)
    assert (path / "train_log.jsonl").read_text() == '{"epoch": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_reader_recovering_mid_swap_does_not_fail_the_save(small, tmp_path, monkeypatch):
    """A load between the writer's two renames puts the old bundle back (`recover`); the
    writer must move it aside again rather than fail with 'Directory not empty'."""
    path = copy_of(small[1], tmp_path / "model")
    changed = tagshift.load(path)
    with torch.no_grad():
        changed.head.linear.bias.add_(1.0)
    real_replace, calls = os.replace, []

    def reader_between(source: Any, target: Any) -> None:
        real_replace(source, target)
        calls.append(target)
        if len(calls) == 1:  # the old bundle was just moved aside
            assert recover(path) is True

    monkeypatch.setattr(os, "replace", reader_between)
    tagshift.save(changed, path)
    monkeypatch.undo()
    assert same_weights(tagshift.load(path), changed)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# --- damaged JSON (item 4) --------------------------------------------------------------


def _edit(file: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Damage that rewrites one JSON file of the bundle; `change` edits it in place or
    returns the new content."""

    def damage(path: Path) -> None:
        data = json.loads((path / file).read_text())
        changed = change(data)
        (path / file).write_text(json.dumps(data if changed is None else changed))

    return damage


def _section(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    return _edit("config.json", lambda config: change(config["tagshift"]))


def _to_mapping_head(**fields: Any) -> Callable[[Path], None]:
    mapping = {"head": "MappingHead", "inner_head": "CRFHead", "mapping_source_labels": ["O"], **fields}
    return _section(lambda s: s.update(mapping))


def _lineage(*steps: dict[str, Any]) -> Callable[[Path], None]:
    return _edit("lineage.json", lambda _: list(steps))


DAMAGE = {  # id: (damage, what the message must say after the bundle's path)
    "scheme-nonsense": (
        _section(lambda s: s.update(scheme="nonsense")),
        "config.json: field 'scheme' is 'nonsense'; expected one of iob2, iobes, bilou, io"),
    "scheme-not-a-string": (
        _section(lambda s: s.update(scheme=["iobes"])),
        r"config.json: field 'scheme' is \["),
    "labels-a-string": (
        _section(lambda s: s.update(labels="O B-PER")),
        "config.json: field 'labels' is 'O B-PER'; expected a list of strings"),
    "labels-not-strings": (
        _section(lambda s: s.update(labels=["O", 1, 2])),
        r"config.json: field 'labels' is \[\"O\", 1, 2\]; expected a list of strings"),
    "labels-without-O-first": (
        _section(lambda s: s.update(labels=s["labels"][1:] + ["O"])),
        "config.json: field 'labels' starts with 'B-LOC'; expected 'O' first"),
    "labels-lack-a-tag": (
        _section(lambda s: s.update(labels=s["labels"][:-1])),
        "config.json: field 'labels' lacks S-PER; expected 'O' then every iobes tag"),
    "labels-outside-the-scheme": (
        _section(lambda s: s.update(labels=[*s["labels"][:-1], "L-PER"])),
        "config.json: field 'labels' lacks S-PER; has L-PER"),
    "labels-repeated": (
        _section(lambda s: s["labels"].append("B-LOC")),
        "config.json: field 'labels' repeats B-LOC"),
    "labels-not-tags": (
        _section(lambda s: s["labels"].append("B PER")),
        "config.json: field 'labels': 'B PER' is not a tag"),
    "labels-of-another-scheme": (
        _section(lambda s: s.update(scheme="iob2")),
        "config.json: field 'labels' has E-LOC"),
    "model-option-type": (
        _section(lambda s: s["model"].update(hidden="8")),
        "config.json: field 'model' is invalid: hidden = '8' should be int"),
    "model-option-range": (
        _section(lambda s: s["model"].update(dropout=3)),
        "config.json: field 'model' is invalid"),
    "model-not-an-object": (
        _section(lambda s: s.update(model=[8, 4])),
        r"config.json: field 'model' is \[8, 4\]; expected an object"),
    "head-unknown": (
        _section(lambda s: s.update(head="LSTMHead")),
        "config.json: field 'head' is 'LSTMHead'; expected one of CRFHead, SoftmaxHead, MappingHead"),
    "inner-head-unknown": (
        _to_mapping_head(inner_head="MappingHead"),
        "config.json: field 'inner_head' is 'MappingHead'; expected one of CRFHead, SoftmaxHead"),
    "inner-head-missing": (
        _section(lambda s: s.update(head="MappingHead", mapping_source_labels=["O"])),
        "config.json: field 'inner_head' is missing"),
    "mapping-labels-a-string": (
        _to_mapping_head(mapping_source_labels="O"),
        "config.json: field 'mapping_source_labels' is 'O'; expected a list of strings"),
    "backend-not-a-string": (
        _section(lambda s: s.update(backend={"name": "bilstm-crf"})),
        "config.json: field 'backend' is .*; expected a string"),
    "checksum-not-a-string": (
        _section(lambda s: s.update(weights_sha256=1)),
        "config.json: field 'weights_sha256' is 1; expected a string"),
    "format-version-true": (
        _section(lambda s: s.update(format_version=True)),
        "config.json: no bundle format_version"),
    "vocab-words-a-number": (
        _edit("vocab.json", lambda v: {"words": 5}),
        "vocab.json: field 'words' is 5; expected a list of strings starting with '<pad>', '<unk>'"),
    "vocab-a-list": (
        _edit("vocab.json", lambda v: [v["words"], v["chars"]]),
        "vocab.json: holds .*; expected an object"),
    "vocab-chars-missing": (
        _edit("vocab.json", lambda v: {"words": v["words"]}),
        "vocab.json: field 'chars' is missing"),
    "vocab-word-not-a-string": (
        _edit("vocab.json", lambda v: v["words"].append(7)),
        "vocab.json: field 'words' is"),
    "vocab-without-pad": (
        _edit("vocab.json", lambda v: {**v, "chars": v["chars"][1:]}),
        "vocab.json: field 'chars' is"),
    "vocab-repeated-word": (
        _edit("vocab.json", lambda v: v["words"].append(v["words"][2])),
        "vocab.json: field 'words' lists .* twice"),
    "lineage-an-object": (
        _edit("lineage.json", lambda steps: {"steps": steps}),
        "lineage.json: a lineage is a JSON list"),
    "lineage-plan-a-list": (
        _lineage({"step": "adapt", "plan": ["extend"]}),
        r"lineage.json: step 1: field 'plan' is \[\"extend\"\]; expected an object or null"),
    "lineage-score-a-string": (
        _lineage({"step": "train"}, {"step": "train", "scores": {"dev": {"mode": "io", "micro": {"f1": "high"}}}}),
        "lineage.json: step 2: field 'scores.dev.micro.f1' is 'high'; expected a number"),
    "lineage-merged-not-lists": (
        _lineage({"step": "adapt", "plan": {"merged": {"ORG": "company"}}}),
        "lineage.json: step 1: field 'plan.merged.ORG' is 'company'; expected a list of strings"),
}


@pytest.mark.parametrize("damage, message", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_field_is_one_line_naming_file_and_field(small, tmp_path, damage, message):
    """Before: KeyError in predict or adapt (scheme), a misleading shape error (labels), a
    TypeError (vocab.json), or a bundle that loaded and crashed `tagshift info` (lineage)."""
    path = copy_of(small[1], tmp_path / "model")
    damage(path)
    with pytest.raises(BundleError, match=f"^{path}/{message}") as caught:
        tagshift.load(path)
    assert "\n" not in str(caught.value)


def test_info_reads_the_same_checks(small, tmp_path):
    """`tagshift info` reads config and lineage without loading: it must refuse them alike."""
    path = copy_of(small[1], tmp_path / "model")
    _section(lambda s: s.update(scheme="nonsense"))(path)
    with pytest.raises(BundleError, match="field 'scheme'"):
        tagshift.bundle.read_config(path)
    _edit("lineage.json", lambda steps: [{"step": 3}])(path)
    with pytest.raises(BundleError, match="step 1: field 'step' is 3; expected a string"):
        tagshift.bundle.read_lineage(path)


def test_a_saved_bundle_passes_its_own_checks(small):
    """The schemas describe what tagshift writes, including a trained model's lineage."""
    tagger, path = small
    assert tagshift.bundle.read_config(path)["labels"] == tagger.labels
    fixture = REPO / "tests" / "fixtures" / "bilstm-0.1.0"
    assert tagshift.bundle.read_lineage(fixture)[0]["step"] == "train"


# --- fuzz: random damage loads or is one BundleError line -------------------------------

JSON_FILES = ("config.json", "vocab.json", "lineage.json")
_SCALARS: dict[type, st.SearchStrategy[Any]] = {
    type(None): st.none(), bool: st.booleans(), int: st.integers(), float: st.floats(), str: st.text(max_size=8),
}
_JSON = st.recursive(
    st.one_of(*_SCALARS.values()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_KINDS = {**_SCALARS, list: st.lists(_JSON, max_size=3), dict: st.dictionaries(st.text(max_size=5), _JSON, max_size=3)}


def _other_kind(value: Any) -> st.SearchStrategy[Any]:
    """JSON values of any kind but `value`'s (true and 1 are two kinds here, as in JSON)."""
    return st.one_of(*(strategy for kind, strategy in _KINDS.items() if kind is not type(value)))


def _damage_json(data: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """`data` with one field deleted or replaced by a JSON value of another kind; the field
    is found by a random walk down from the top (the top itself may be replaced)."""
    parent: Any = None
    key: Any = None
    node = data
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    if parent is not None and draw(st.booleans()):
        del parent[key]
        return data
    other = draw(_other_kind(node))
    if parent is None:
        return other
    parent[key] = other
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from(JSON_FILES), how=st.sampled_from(("json", "json", "truncate", "bytes")), data=st.data())
def test_fuzzed_bundle_loads_or_is_one_bundle_error_line(small, file, how, data):
    _, bundle = small
    with tempfile.TemporaryDirectory() as folder:
        path = copy_of(bundle, Path(folder) / "model")
        target = path / file
        raw = target.read_bytes()
        if how == "json":
            damaged = _damage_json(json.loads(raw), data.draw)
            target.write_text(json.dumps(damaged))
        elif how == "truncate":
            target.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        else:
            target.write_bytes(data.draw(st.binary(max_size=64)))
        try:
            tagshift.load(path)
        except BundleError as err:
            assert "\n" not in str(err) and str(path) in str(err)


# --- a transformer's Hugging Face config ------------------------------------------------


@pytest.fixture(scope="module")
def transformer_bundle(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("transformer") / "model"
    tagshift.save(TRANSFORMER.build(TransformerConfig(), corpus), path)
    return path


def _hf_field(**fields: Any) -> Callable[[Path], None]:
    return _edit("config.json", lambda config: config.update(fields))


HF_DAMAGE = {
    "model-type-a-path": (
        _hf_field(model_type="../../etc"),
        r"config.json: field 'model_type' is '\.\./\.\./etc'; expected a Hugging Face model type"),
    "model-type-unknown": (
        _hf_field(model_type="bert_of_theseus"),
        "config.json: field 'model_type' is 'bert_of_theseus', which this transformers .* does not know"),
    "model-type-missing": (
        _edit("config.json", lambda config: {k: v for k, v in config.items() if k != "model_type"}),
        "config.json: field 'model_type' is missing"),
    "hidden-size-a-string": (
        _hf_field(hidden_size="wide"),
        "config.json: the Hugging Face config does not build a model"),
    "tokenizer-garbage": (
        lambda p: (p / "tokenizer.json").write_text('{"model": 3}'),
        "the tokenizer files do not load"),
}


@pytest.mark.parametrize("damage, message", HF_DAMAGE.values(), ids=HF_DAMAGE.keys())
def test_a_damaged_hugging_face_config_is_one_bundle_error_line(transformer_bundle, tmp_path, damage, message):
    """Before: a ValueError from transformers, with a paragraph of advice about the Hub."""
    path = copy_of(transformer_bundle, tmp_path / "model")
    damage(path)
    with pytest.raises(TagshiftError) as caught:
        tagshift.load(path)
    assert isinstance(caught.value, BundleError)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)
    assert re.search(message, str(caught.value)), str(caught.value)
