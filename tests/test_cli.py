"""The command line on the data shipped in the repo: output shapes, help, strictness."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DATA

WIKI = DATA / "wikigold" / "wikigold.slice.conll"
POLITICS = DATA / "crossner" / "politics" / "train.txt"


@pytest.mark.parametrize("command", ["stats", "convert", "evaluate", "train", "predict", "info"])
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.stdout


def test_version(cli):
    assert cli("--version").stdout.startswith("tagshift ")


def test_stats_json_shape(cli):
    result = cli("stats", WIKI, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {"sentences", "tokens", "documents", "entities", "scheme", "repairs"} <= set(data)
    assert data["scheme"] == "iob1" and data["documents"] == 40 and data["repairs"] == 0
    assert sum(data["entities"].values()) > 1000


def test_evaluate_json_shape_and_table(cli, tmp_path):
    pred = tmp_path / "pred.conll"
    assert cli("convert", WIKI, pred, "--to", "iob2").exit_code == 0
    data = json.loads(cli("evaluate", WIKI, pred, "--json").stdout)
    assert data["mode"] == "conlleval"
    assert data["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}  # n / n: exact
    assert set(data["macro"]) == {"precision", "recall", "f1"}
    assert set(data["per_type"]["PER"]) == {"precision", "recall", "f1", "support", "predicted", "correct"}
    table = cli("evaluate", WIKI, pred, "--mode", "strict").stdout
    assert "mode: strict" in table and "100.00" in table


def test_evaluate_with_a_baseline_and_groups(cli, tmp_path):
    lost = tmp_path / "map.toml"
    lost.write_text('[drop]\nlabels = ["MISC"]\n')
    system = tmp_path / "system.conll"
    cli("convert", WIKI, system, "--map", lost)
    result = cli("evaluate", WIKI, system, "--baseline", WIKI, "--group", "old=PER,LOC,ORG", "--group", "new=MISC", "--json")
    data = json.loads(result.stdout)
    assert data["groups"]["old"]["delta_micro_f1"] == 0.0  # one F1 of the same counts minus itself: exact
    assert data["groups"]["new"]["system_micro_f1"] == 0.0  # no correct entity: exact
    assert data["per_type"]["MISC"]["group"] == "new"


def test_convert_to_spans_and_back(cli, tmp_path):
    spans = tmp_path / "politics.jsonl"
    result = cli("convert", POLITICS, spans, "--format", "spans")
    assert result.exit_code == 0 and "wrote 200 sentences" in result.stderr
    record = json.loads(spans.read_text().splitlines()[0])
    assert {"text", "tokens", "spans"} <= set(record)
    back = tmp_path / "back.txt"
    cli("convert", spans, back, "--format", "conll")
    assert back.read_text().split() == POLITICS.read_text().split()


def test_strict_turns_repairs_into_an_error(cli, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("The\tO\nUN\tB-ORG\n\nsaid\tO\nParis\tI-LOC\n")
    repaired = cli("convert", bad, tmp_path / "fixed.tsv")
    assert repaired.exit_code == 0 and "repaired 1 invalid entities" in repaired.stderr
    assert (tmp_path / "fixed.tsv").read_text().split()[-1] == "B-LOC"
    failed = cli("convert", bad, tmp_path / "strict.tsv", "--strict")
    assert failed.exit_code == 1
    assert f"{bad}:5: 'I-LOC' read as one LOC entity" in failed.stderr
    assert not (tmp_path / "strict.tsv").exists()
    assert cli("stats", bad, "--strict").exit_code == 1


def test_output_format_follows_the_suffix(cli, tmp_path):
    out = tmp_path / "wiki.jsonl"
    cli("convert", WIKI, out)
    assert json.loads(out.read_text().splitlines()[0])["tokens"][0] == "010"
