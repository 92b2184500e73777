"""Label maps: rename, merge, drop, reported per rule; unknown labels explained."""

from __future__ import annotations

import pytest

from tagshift.convert import convert_corpus
from tagshift.corpus import read_corpus
from tagshift.errors import LabelMapError
from tagshift.labelmap import LabelMap

CORPUS = "Ada\tB-person\nin\tO\nParis\tB-GPE\nand\tO\nRome\tB-LOC\nat\tO\nIBM\tB-ORG\n\nJazz\tB-MISC\nFAC\tB-FAC\n"
MAP = '[rename]\nperson = "PER"\n[merge]\nLOC = ["GPE", "LOC", "FAC"]\n[drop]\nlabels = ["MISC"]\n'


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text(CORPUS)
    return read_corpus(path)


def write_map(tmp_path, text: str):
    path = tmp_path / "map.toml"
    path.write_text(text)
    return LabelMap.from_toml(path)


def test_rename_merge_drop_and_the_report(tmp_path, corpus):
    converted, report = convert_corpus(corpus, to="iobes", label_map=write_map(tmp_path, MAP))
    assert converted.sentences[0].tags == ["S-PER", "O", "S-LOC", "O", "S-LOC", "O", "S-ORG"]
    assert converted.sentences[1].tags == ["O", "S-LOC"]
    assert report.label_map.touched == {
        "rename person -> PER": 1,
        "merge GPE -> LOC": 1,
        "merge LOC -> LOC": 1,
        "merge FAC -> LOC": 1,
        "drop MISC": 1,
    }
    assert "map: drop MISC: 1 entities" in report.lines()


def test_unknown_labels_list_the_corpus_labels_and_the_map_line(tmp_path, corpus):
    label_map = write_map(tmp_path, '[rename]\nperson = "PER"\n[drop]\nlabels = ["NORP"]\n')
    with pytest.raises(LabelMapError) as err:
        convert_corpus(corpus, label_map=label_map)
    assert "map.toml:4: label 'NORP' is not in" in str(err.value)
    assert "FAC, GPE, LOC, MISC, ORG, person" in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[rename]\nA = "B"\n[drop]\nlabels = ["A"]\n', "A named by more than one rule"),
        ('[renames]\nA = "B"\n', "unknown section"),
        ("[merge]\nLOC = 'GPE'\n", r"\[merge\] entries"),
        ('[rename]\nA = "B"\nthis is not toml\n', "map.toml:3: invalid TOML"),
    ],
)
def test_malformed_maps_are_explained(tmp_path, text, message):
    with pytest.raises(LabelMapError, match=message):
        write_map(tmp_path, text)


def test_adjacent_entities_joined_by_io_are_reported(tmp_path):
    path = tmp_path / "adj.tsv"
    path.write_text("Paris\tB-GPE\nFrance\tB-LOC\n")
    merged, report = convert_corpus(read_corpus(path), to="io", label_map=write_map(tmp_path, '[merge]\nLOC = ["GPE", "LOC"]\n'))
    assert merged.sentences[0].tags == ["I-LOC", "I-LOC"]
    assert report.joined == 1
    assert any("cannot keep them apart" in line for line in report.lines())
