"""`adapt --labels stack`: a new model that reads a frozen source's tag probabilities. The
guide must be the source's marginals, stay frozen through training, save inside the model's
bundle and load back to the same predictions; a damaged guide is refused by name."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import tagshift
from tagshift.errors import BundleError, TagshiftError
from tagshift.labelmap import LabelMap
from tagshift.taggers.backends import BILSTM_CRF, TRANSFORMER
from tagshift.taggers.guide import Guide
from tagshift.training import TrainConfig, fit
from tagshift.transfer import AdaptConfig, adapt, adapt_training, prepare
from tagshift.convert import relabel
from tests.test_bundle_training import tiny_bilstm, wiki, write_slice  # noqa: F401  (module fixture)

# the target's own names for wikigold's types: a new tag set, as a new domain brings
RENAME = {"PER": "person", "LOC": "place", "ORG": "organisation", "MISC": "misc"}


@pytest.fixture(scope="module")
def source(wiki):  # noqa: F811
    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(tagger, wiki["train150"], None, TrainConfig(epochs=2, lr=3e-2))
    return tagger


@pytest.fixture(scope="module")
def target(wiki, tmp_path_factory):  # noqa: F811
    """wikigold's sentences under other type names, each slice a file (lineage hashes them)."""
    folder, renamed = tmp_path_factory.mktemp("target"), LabelMap.from_dict({"rename": RENAME})
    return {name: write_slice(relabel(wiki[name], renamed), 0, len(wiki[name]), folder / f"{name}.conll")
            for name in ("train200", "dev40", "held_out")}


def test_the_guide_gives_the_sources_crf_marginals_and_remembers_them(source, wiki):  # noqa: F811
    sentences = [s.tokens for s in wiki["held_out"].sentences[:6]]
    guide = Guide(source)
    features = guide.features(sentences)
    emissions, mask = source.emissions(sentences)
    expected = source.head.decode(emissions, mask, True).probabilities
    assert features.shape == (6, max(len(s) for s in sentences), len(source.labels))
    assert torch.allclose(features, expected, atol=1e-6)
    # each word's marginals sum to one; padding stays zero
    assert torch.allclose(features.sum(-1)[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert features[~mask].abs().sum() == 0
    assert not any(p.requires_grad for p in source.network.parameters())
    assert torch.equal(guide.features(sentences[2:4]), features[2:4, : max(len(s) for s in sentences[2:4])])


def test_stack_builds_a_new_model_of_the_target_types_that_reads_the_source(source, target):
    prepared = prepare(source, target["train200"], AdaptConfig(labels="stack"), seed=0, dev=target["dev40"])
    tagger = prepared.tagger
    assert tagger.types == sorted(RENAME.values())
    assert tagger.guide is not None and tagger.guide.tagger is source
    assert tagger.config.guide_labels == source.labels
    # its vocabulary is the one training on the target alone builds, not the source's grown
    alone = BILSTM_CRF.build(tiny_bilstm(), target["train200"], seed=0, extra=target["dev40"])
    assert tagger.encoder.words == alone.encoder.words != source.encoder.words
    assert "stack" in prepared.plan.render() and "reads the source's tag probabilities" in prepared.plan.render()


def test_a_stacked_model_trains_its_own_weights_only_and_loads_back_to_the_same_predictions(source, target, tmp_path):
    before = {k: v.clone() for k, v in source.network.state_dict().items()}
    prepared, result = adapt(source, target["train200"], target["dev40"], AdaptConfig(labels="stack"),
                             adapt_training("bilstm-crf", epochs=2, lr=3e-2), out=tmp_path / "stacked")
    assert all(torch.equal(before[k], v) for k, v in source.network.state_dict().items())  # the guide never trains
    assert result.options.encoder_lr == result.options.head_lr  # a new encoder learns at the full rate
    assert (tmp_path / "stacked" / "guide" / "config.json").is_file()
    loaded = tagshift.load(tmp_path / "stacked")
    assert loaded.guide is not None and loaded.guide.labels == source.labels
    sentences = [s.tokens for s in target["held_out"].sentences]
    assert [t.tags for t in loaded.predict(sentences)] == [t.tags for t in prepared.tagger.predict(sentences)]
    assert loaded.lineage[-1]["adapt_options"]["labels"] == "stack"


def test_a_stacked_bundle_without_its_guide_or_with_another_one_is_refused(source, target, tmp_path):
    adapt(source, target["train200"], None, AdaptConfig(labels="stack"), adapt_training("bilstm-crf", epochs=1),
          out=tmp_path / "stacked")
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "stacked", damaged)
    config = json.loads((damaged / "guide" / "config.json").read_text())
    config["tagshift"]["labels"] = config["tagshift"]["labels"][:1] + ["B-X", "I-X"]
    (damaged / "guide" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="guide"):
        tagshift.load(damaged)
    shutil.rmtree(damaged / "guide")
    with pytest.raises(BundleError, match="holds no bundle"):
        tagshift.load(damaged)


def test_stack_is_refused_for_a_transformer_and_guide_labels_without_a_guide(target, wiki):  # noqa: F811
    with pytest.raises(TagshiftError, match="cannot; use --labels map"):
        TRANSFORMER.build(TRANSFORMER.new_config(), wiki["train150"], guide=object())  # type: ignore[arg-type]
    with pytest.raises(TagshiftError, match="guide_labels is set by 'tagshift adapt --labels stack'"):
        BILSTM_CRF.build(BILSTM_CRF.new_config(**{**vars(tiny_bilstm()), "guide_labels": ["O"]}), wiki["train150"])


def test_a_stacked_model_has_no_onnx_export(source, target, tmp_path):
    pytest.importorskip("onnx")
    from tagshift.export.onnx import export_onnx

    adapt(source, target["train200"], None, AdaptConfig(labels="stack"), adapt_training("bilstm-crf", epochs=1),
          out=tmp_path / "stacked")
    with pytest.raises(TagshiftError, match="no ONNX export for a stacked model"):
        export_onnx(tmp_path / "stacked", tmp_path / "onnx")


def test_guide_states_add_the_sources_encoder_output_and_load_back(source, target, tmp_path):
    sentences = [s.tokens for s in target["held_out"].sentences[:4]]
    guide = Guide(source, states=True)
    features = guide.features(sentences)
    batch = source.featurize(sentences)
    with torch.no_grad():
        states = source.encoder(batch)
    assert features.shape[-1] == len(source.labels) + source.encoder.output_dim == guide.size
    assert torch.allclose(features[..., len(source.labels):], states, atol=1e-6)
    prepared, _ = adapt(source, target["train200"], None, AdaptConfig(labels="stack", guide_states=True),
                        adapt_training("bilstm-crf", epochs=1), out=tmp_path / "stacked")
    assert prepared.tagger.config.guide_states == source.encoder.output_dim
    loaded = tagshift.load(tmp_path / "stacked")
    assert loaded.guide.states and [t.tags for t in loaded.predict(sentences)] == \
        [t.tags for t in prepared.tagger.predict(sentences)]


def test_a_guided_map_starts_as_the_plain_map_learns_to_read_the_source_and_loads_back(source, target, tmp_path):
    sentences = [s.tokens for s in target["held_out"].sentences[:12]]
    renamed = LabelMap.from_dict({"rename": RENAME})
    plain = prepare(source, target["train200"], AdaptConfig(labels="map"), seed=0, label_map=renamed).tagger
    prepared = prepare(source, target["train200"], AdaptConfig(labels="map", guide=True), seed=0, label_map=renamed)
    tagger = prepared.tagger
    assert tagger.config.guide_labels == source.labels and tagger.guide.tagger is source
    assert "also reads the source's tag probabilities" in prepared.render()
    with torch.no_grad():  # the guide's columns of the first BiLSTM layer start at zero
        assert torch.allclose(plain.emissions(sentences)[0], tagger.emissions(sentences)[0], atol=1e-5)
    before = {k: v.clone() for k, v in source.network.state_dict().items()}
    fit(tagger, target["train200"], None, TrainConfig(epochs=1, lr=3e-2))
    assert tagger.encoder.lstm.weight_ih_l0[:, -tagger.config.guide_dim:].abs().sum() > 0  # ... and then learn
    assert all(torch.equal(before[k], v) for k, v in source.network.state_dict().items())
    tagshift.save(tagger, tmp_path / "guided")
    guide_weights = tmp_path / "guided" / "guide" / "model.safetensors"
    written = guide_weights.stat()
    tagshift.save(tagger, tmp_path / "guided")  # as each checkpoint does: the unchanged guide is linked, not rewritten
    assert guide_weights.stat().st_ino == written.st_ino or guide_weights.stat().st_mtime_ns == written.st_mtime_ns
    loaded = tagshift.load(tmp_path / "guided")
    assert [t.tags for t in loaded.predict(sentences)] == [t.tags for t in tagger.predict(sentences)]
    assert not source.config.guide_labels  # the source itself reads no guide


def test_a_transformer_cannot_take_a_guide(wiki):  # noqa: F811
    from tagshift.transfer.stack import graft_guide

    tagger = TRANSFORMER.build(TRANSFORMER.new_config(), wiki["train150"])
    with pytest.raises(TagshiftError, match="cannot read a guide"):
        graft_guide(tagger, object(), seed=0)  # type: ignore[arg-type]
