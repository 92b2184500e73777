"""Reading and writing corpora: column layouts, document boundaries, encodings, JSON shapes."""

from __future__ import annotations

import json

import pytest

from tagshift.corpus import format_corpus, read_corpus, write_corpus
from tagshift.errors import CorpusError
from tagshift.schemes import Span
from tests.conftest import DATA

CONLL = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_conll_columns_extra_columns_and_documents(tmp_path):
    corpus = read_corpus(write(tmp_path, "a.conll", CONLL))
    assert [s.tokens for s in corpus.sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert corpus.sentences[0].tags == ["I-ORG", "O"]
    assert corpus.sentences[0].extra == [("NNP", "I-NP"), ("VBZ", "I-VP")]  # POS and chunk kept
    assert corpus.documents == 1 and corpus.doc_starts[0].before == 0  # -DOCSTART- is no sentence
    assert (corpus.layout.token_col, corpus.layout.tag_col, corpus.layout.delimiter) == (0, 3, " ")
    assert corpus.sentences[1].line == 6


def test_tag_first_files_are_detected(tmp_path):
    corpus = read_corpus(write(tmp_path, "mit.bio", "O\twhat\nB-GENRE\thorror\nO\tmovies\n\nB-YEAR\t1990s\n"))
    assert corpus.sentences[0].tokens == ["what", "horror", "movies"]
    assert corpus.sentences[0].tags == ["O", "B-GENRE", "O"]
    assert (corpus.layout.token_col, corpus.layout.tag_col) == (1, 0)


def test_lines_separated_by_spaces_in_a_tab_file_are_read(tmp_path):
    """MIT trivia10k13 has a few `O   in` lines among tab-separated ones."""
    corpus = read_corpus(write(tmp_path, "t.bio", "O\ta\nO   in\nB-Plot\tghost\n"))
    assert corpus.sentences[0].tokens == ["a", "in", "ghost"]


def test_flat_labels_pick_the_column_with_few_values(tmp_path):
    corpus = read_corpus(write(tmp_path, "flat.txt", "Ada person\nLovelace person\nwent O\nto O\nLondon place\n"))
    assert corpus.sentences[0].tags == ["person", "person", "O", "O", "place"]
    assert corpus.sentences[0].spans == [Span(0, 2, "person"), Span(4, 5, "place")]


def test_explicit_columns_override_detection(tmp_path):
    path = write(tmp_path, "a.conll", CONLL)
    corpus = read_corpus(path, tag_col=2)  # read the chunk column as tags
    assert corpus.sentences[0].tags == ["I-NP", "I-VP"]
    with pytest.raises(CorpusError, match="column 7 does not exist"):
        read_corpus(path, tag_col=7)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbfJohn\tB-PER\nlives\tO\n\nParis\tB-LOC\n",  # UTF-8 BOM
        b"John\tB-PER\r\nlives\tO\r\n\r\nParis\tB-LOC\r\n",  # CRLF
        b"John\tB-PER\nlives\tO\n\nParis\tB-LOC",  # no final newline
        b"John\tB-PER\nlives\tO\n\t\nParis\tB-LOC\n\n\n",  # whitespace-only separator, extra blank lines
    ],
)
def test_encodings_and_line_ends_read_alike_and_write_back(tmp_path, raw):
    path = write(tmp_path, "x.tsv", raw)
    corpus = read_corpus(path)
    assert [s.tokens for s in corpus.sentences] == [["John", "lives"], ["Paris"]]
    assert corpus.sentences[0].tags == ["B-PER", "O"]
    if b"\t\n" not in raw:  # the normalised separator line is the one thing not kept
        assert format_corpus(corpus, "conll").encode() == raw


def test_the_shipped_wikigold_slice_round_trips_byte_for_byte(tmp_path):
    source = DATA / "wikigold" / "wikigold.slice.conll"
    out = tmp_path / "copy.conll"
    write_corpus(read_corpus(source), out)
    assert out.read_bytes() == source.read_bytes()


def test_jsonl_tokens_and_tags(tmp_path):
    lines = [{"tokens": ["John", "lives"], "tags": ["B-PER", "O"]}, {"tokens": ["Rome"], "ner_tags": ["B-LOC"]}]
    corpus = read_corpus(write(tmp_path, "a.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n"))
    assert corpus.sentences[1].tags == ["B-LOC"] and corpus.sentences[1].line == 2
    assert read_corpus(write(tmp_path, "b.jsonl", format_corpus(corpus, "jsonl"))).tag_sequences == corpus.tag_sequences


SPAN_SHAPES = {
    "tagshift": {"text": "Ada Lovelace met Babbage.", "spans": [{"start": 0, "end": 12, "label": "PER"}, {"start": 17, "end": 24, "label": "PER"}]},
    "doccano classic": {"text": "Ada Lovelace met Babbage.", "label": [[0, 12, "PER"], [17, 24, "PER"]]},
    "doccano entities": {"text": "Ada Lovelace met Babbage.", "entities": [{"start_offset": 0, "end_offset": 12, "label": "PER"}, {"start_offset": 17, "end_offset": 24, "label": "PER"}]},
    "label studio": {
        "data": {"text": "Ada Lovelace met Babbage."},
        "annotations": [{"result": [{"value": {"start": 0, "end": 13, "labels": ["PER"]}}, {"value": {"start": 17, "end": 24, "labels": ["PER"]}}]}],
    },  # a trailing space inside the first span, as tools often save it
    "prodigy": {
        "text": "Ada Lovelace met Babbage.",
        "tokens": [{"text": "Ada", "start": 0, "end": 3, "id": 0}, {"text": "Lovelace", "start": 4, "end": 12, "id": 1},
                   {"text": "met", "start": 13, "end": 16, "id": 2}, {"text": "Babbage", "start": 17, "end": 24, "id": 3},
                   {"text": ".", "start": 24, "end": 25, "id": 4}],
        "spans": [{"start": 0, "end": 12, "label": "PER", "token_start": 0, "token_end": 1},
                  {"start": 17, "end": 24, "label": "PER", "token_start": 3, "token_end": 3}],
    },
}


@pytest.mark.parametrize("shape", sorted(SPAN_SHAPES))
def test_character_spans_in_each_tools_shape(tmp_path, shape):
    corpus = read_corpus(write(tmp_path, "s.jsonl", json.dumps(SPAN_SHAPES[shape]) + "\n"))
    sentence = corpus.sentences[0]
    assert sentence.tokens == ["Ada", "Lovelace", "met", "Babbage", "."]
    assert sentence.tags == ["B-PER", "I-PER", "O", "B-PER", "O"]
    again = read_corpus(write(tmp_path, "again.jsonl", format_corpus(corpus, "spans")))
    assert again.sentences[0].tokens == sentence.tokens and again.sentences[0].tags == sentence.tags
    assert again.sentences[0].text == "Ada Lovelace met Babbage."


def test_a_label_studio_export_array(tmp_path):
    export = [SPAN_SHAPES["label studio"], {"data": {"text": "Nothing here."}, "annotations": [{"result": []}]}]
    corpus = read_corpus(write(tmp_path, "export.json", json.dumps(export)))
    assert len(corpus) == 2 and corpus.sentences[1].tags == ["O", "O", "O"]


def test_spans_inside_words_split_the_tokens(tmp_path):
    record = {"text": "iPhone15 launch", "spans": [{"start": 0, "end": 6, "label": "PRODUCT"}]}
    sentence = read_corpus(write(tmp_path, "s.jsonl", json.dumps(record))).sentences[0]
    assert sentence.tokens == ["iPhone", "15", "launch"] and sentence.tags == ["B-PRODUCT", "O", "O"]
    assert sentence.offsets == [(0, 6), (6, 8), (9, 15)]


def test_overlapping_spans_are_refused_with_both_named(tmp_path):
    record = {"text": "New York City", "spans": [[0, 8, "LOC"], [4, 13, "LOC"]]}
    with pytest.raises(CorpusError, match=r"s.jsonl:1: spans 0-8 \(LOC\) and 4-13 \(LOC\) overlap"):
        read_corpus(write(tmp_path, "s.jsonl", json.dumps(record)))


def test_tokens_with_spaces_cannot_go_to_a_column_file(tmp_path):
    corpus = read_corpus(write(tmp_path, "a.jsonl", json.dumps({"tokens": ["New York"], "tags": ["B-LOC"]})))
    with pytest.raises(CorpusError, match="write JSONL instead"):
        format_corpus(corpus, "conll")


def test_a_column_file_starting_with_a_bracket_token_is_not_json(tmp_path):
    corpus = read_corpus(write(tmp_path, "b.conll", "[ O\nRome B-LOC\n] O\n"))
    assert corpus.sentences[0].tokens == ["[", "Rome", "]"]
