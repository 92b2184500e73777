"""`tagshift predict` over inputs larger than memory (issue 28): chunked, on worker processes,
resumable. The reference for every output is the same input read and tagged whole."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from tagshift.bundle import load_source, save_bundle
from tagshift.corpus import read_corpus
from tagshift.errors import CorpusError, TagshiftError
from tagshift.predict import format_predictions, read_input
from tagshift.streaming import ReadSpec, chunks, partial_path, predict_stream, progress_path
from tagshift.taggers.backends import BILSTM_CRF
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.training import TrainConfig, fit
from tests.conftest import DATA

WIKI = DATA / "wikigold" / "wikigold.slice.conll"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    corpus = read_corpus(WIKI)
    tagger = BILSTM_CRF.build(BiLSTMConfig(word_dim=20, char_dim=8, char_hidden=8, hidden=16), corpus, seed=0)
    fit(tagger, corpus, None, TrainConfig(epochs=1, lr=0.01, batch_size=16))
    out = tmp_path_factory.mktemp("model") / "bilstm"
    save_bundle(tagger, out)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The same 60 WikiGold sentences as a column file (with -DOCSTART- lines, extra blank
    lines and a missing final newline), as JSON lines, and as prose."""
    folder = tmp_path_factory.mktemp("inputs")
    sentences = read_corpus(WIKI).sentences[:60]
    blocks = ["\n".join(f"{t}\t{g}" for t, g in zip(s.tokens, s.tags)) for s in sentences]
    conll = "-DOCSTART-\tO\n\n" + "\n\n".join(blocks[:25]) + "\n\n\n-DOCSTART-\tO\n\n" + "\n\n".join(blocks[25:])
    paths = {"conll": folder / "in.conll", "jsonl": folder / "in.jsonl", "text": folder / "in.txt"}
    paths["conll"].write_text(conll, encoding="utf-8")
    paths["jsonl"].write_text("".join(json.dumps({"tokens": s.tokens}) + "\n\n" for s in sentences), encoding="utf-8")
    paths["text"].write_text("".join(" ".join(s.tokens) + "\n" for s in sentences), encoding="utf-8")
    return paths


def whole(model: Path, path: Path, fmt: str) -> str:
    """The input read and tagged whole, as the unstreamed path did."""
    corpus, _ = read_input(path)
    tagger = load_source(model)
    return format_predictions(corpus, tagger.predict([s.tokens for s in corpus.sentences], confidence=fmt != "conll"), fmt)


def streamed(model: Path, path: Path, read_as: str, fmt: str, out: Path | None = None, **options) -> str:
    written: list[str] = []
    predict_stream(functools.partial(load_source, model), ReadSpec(str(path), read_as, fmt), out, written.append,
                   model_path=model, **options)
    return "".join(written) if out is None else out.read_text(encoding="utf-8")


@pytest.mark.parametrize("read_as, fmt", [("conll", "conll"), ("conll", "jsonl"), ("jsonl", "jsonl"),
                                          ("text", "spans"), ("text", "jsonl")])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunked_output_is_the_output_of_the_input_read_whole(model, inputs, read_as, fmt, chunk_size):
    assert streamed(model, inputs[read_as], read_as, fmt, chunk_size=chunk_size) == whole(model, inputs[read_as], fmt)


ODD_FILES = {  # what real files hold, each once read whole and once a sentence a chunk
    "a separator of spaces and tabs": (b"EU B-ORG\nrejects O\n \t\nGerman B-MISC\n\nPeter B-PER\n", "conll"),
    "a -DOCSTART- line last": (b"EU B-ORG\n\nPeter B-PER\n\n-DOCSTART- -X- O O\n", "conll"),
    "CRLF and a BOM, no final newline": (b"\xef\xbb\xbfEU B-ORG\r\nrejects O\r\n\r\n\r\nPeter B-PER", "conll"),
    "a form feed inside a line of text": (b"Peter met\x0cAngela Merkel .\nEU rejects it .\n\nParis .\n", "text"),
    "JSON lines asked for as columns": (b'{"tokens": ["EU", "rejects"]}\n{"tokens": ["Peter"]}\n', "conll"),
}


@pytest.mark.parametrize("case", ODD_FILES)
def test_odd_files_give_what_reading_them_whole_gives(model, tmp_path, case):
    data, read_as = ODD_FILES[case]
    path = tmp_path / "odd.txt"
    path.write_bytes(data)
    fmt = "jsonl" if read_as == "text" else "conll"
    corpus, _ = read_input(path, read_as)
    tagger = load_source(model)
    expected = format_predictions(corpus, tagger.predict([s.tokens for s in corpus.sentences], confidence=fmt != "conll"),
                                  fmt)
    assert streamed(model, path, read_as, fmt, chunk_size=1) == expected


def test_an_empty_input_says_so_and_a_bad_one_leaves_no_partial_output(model, tmp_path):
    empty = tmp_path / "empty.conll"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="file is empty"):
        streamed(model, empty, "conll", "conll")
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\n\nrejects O O\n", encoding="utf-8")
    out = tmp_path / "out.conll"
    with pytest.raises(CorpusError, match="bad.conll:3: expected 2 columns"):
        streamed(model, bad, "conll", "conll", out, chunk_size=1)
    assert not partial_path(out).exists() and not progress_path(out).exists()  # a mended input starts afresh


def test_chunks_are_read_as_they_are_needed_not_all_at_once(inputs):
    pieces = chunks(inputs["text"], "text", size=10)
    first = next(pieces)
    assert first.first_line == 1 and first.data.count(b"\n") == 10
    assert [c.first_line for c in pieces] == [11, 21, 31, 41, 51]


def test_a_bad_line_in_a_later_chunk_is_named_by_its_line_in_the_file(model, inputs, tmp_path):
    lines = inputs["conll"].read_text(encoding="utf-8").split("\n")
    bad = len(lines) - 5
    lines[bad - 1] = "token\tB-PER\textra"
    broken = tmp_path / "broken.conll"
    broken.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"broken.conll:{bad}: expected 2 columns"):
        streamed(model, broken, "conll", "conll", chunk_size=5)
    with pytest.raises(CorpusError, match=rf"broken.conll:{bad}: expected 2 columns"):
        read_input(broken)  # as read whole


def test_two_workers_write_what_one_writes_in_input_order(model, inputs, tmp_path):
    one = streamed(model, inputs["text"], "text", "spans", tmp_path / "one.jsonl", chunk_size=7)
    two = streamed(model, inputs["text"], "text", "spans", tmp_path / "two.jsonl", chunk_size=7, workers=2)
    assert two == one
    assert not partial_path(tmp_path / "two.jsonl").exists() and not progress_path(tmp_path / "two.jsonl").exists()


class Crash(Exception):
    pass


def crashing(model: Path, after: int):
    """The model, whose tagging crashes at chunk `after` + 1 (a kill mid-run)."""
    tagger = load_source(model)
    real, calls = tagger.predict, []

    def predict(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise Crash
        return real(*args, **kwargs)

    tagger.predict = predict
    return lambda: tagger


def test_an_interrupted_run_resumes_after_its_last_written_chunk_and_ends_as_an_uninterrupted_one(model, inputs, tmp_path):
    out = tmp_path / "out.conll"
    spec = ReadSpec(str(inputs["conll"]), "conll", "conll")
    with pytest.raises(Crash):
        predict_stream(crashing(model, after=3), spec, out, print, chunk_size=7, model_path=model)
    assert not out.exists() and json.loads(progress_path(out).read_text())["chunks"] == 3
    with partial_path(out).open("a", encoding="utf-8") as handle:
        handle.write("half a chunk")  # written after the record: cut off on resume
    with pytest.raises(TagshiftError, match="add --resume to continue it"):
        predict_stream(functools.partial(load_source, model), spec, out, print, chunk_size=7, model_path=model)
    with pytest.raises(TagshiftError, match="another options"):
        predict_stream(functools.partial(load_source, model), ReadSpec(str(inputs["conll"]), "conll", "jsonl"), out,
                       print, resume=True, chunk_size=7, model_path=model)
    result = predict_stream(functools.partial(load_source, model), spec, out, print, resume=True, chunk_size=7,
                            model_path=model)
    assert result.resumed_chunks == 3 and result.sentences == 60
    assert out.read_text(encoding="utf-8") == whole(model, inputs["conll"], "conll")
    assert not partial_path(out).exists() and not progress_path(out).exists()
    with pytest.raises(TagshiftError, match="no interrupted prediction to resume"):
        predict_stream(functools.partial(load_source, model), spec, out, print, resume=True, model_path=model)


def test_predict_cli_streams_with_workers_and_says_what_it_wrote(cli, model, inputs, tmp_path):
    out = tmp_path / "tagged.conll"
    result = cli("predict", model, inputs["conll"], "--out", out, "--chunk-size", "9", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "tagged 60 sentences (conll)" in result.stderr and out.read_text() == whole(model, inputs["conll"], "conll")
    assert cli("predict", model, inputs["conll"], "--chunk-size", "0").exit_code == 1
    refused = cli("predict", model, inputs["conll"], "--resume")
    assert refused.exit_code == 1 and "--resume continues an output file: give --out" in refused.stderr


def test_raw_text_pdf_and_directories_are_tagged_as_the_raw_text_reader_splits_them(cli, model, inputs, tmp_path):
    """predict reads raw text as weak-label does (issue 24's "shared by every raw-text
    command"): a PDF (its page without a text layer named) or a directory, auto-detected, and
    a text file with --input-format raw, split into sentences; a record a sentence with
    character spans into it and its source; chunked, whole or resumed, the same output."""
    from tagshift.rawtext import read_raw
    from tests.test_rawtext import pdf

    folder = tmp_path / "docs"
    folder.mkdir()
    prose = " ".join(" ".join(s.tokens) for s in read_corpus(WIKI).sentences[:12])  # one document, several sentences
    (folder / "a.txt").write_text(prose + "\n", encoding="utf-8")
    pdf(folder / "b.pdf", ["The Golden Bears met Stanford in Palo Alto.", None])
    out = tmp_path / "tagged.jsonl"
    result = cli("predict", model, folder, "--format", "spans", "--out", out, "--chunk-size", "5", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "pages without a text layer, not read: 2" in result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = list(read_raw(folder))
    assert len(expected) > 5 and [r["text"] for r in records] == [s.text for _, s in expected]
    assert [r["meta"]["source"] for r in records] == [str(location) for location, _ in expected]
    assert records[-1]["meta"]["source"].endswith("b.pdf page 1")
    for record in records:
        assert all(record["text"][t["start"]:t["end"]] == t["text"] for t in record["tokens"])
    # the same read whole; interrupted after a chunk and resumed, the same again
    assert streamed(model, folder, "raw", "spans", chunk_size=1000) == out.read_text(encoding="utf-8")
    again, spec = tmp_path / "again.jsonl", ReadSpec(str(folder), "raw", "spans")
    with pytest.raises(Crash):
        predict_stream(crashing(model, after=1), spec, again, print, chunk_size=5, model_path=model)
    (folder / "sub").mkdir()
    (folder / "sub" / "c.txt").write_text("Added later.\n", encoding="utf-8")
    with pytest.raises(TagshiftError, match="another input"):  # a file added under the directory is seen
        predict_stream(functools.partial(load_source, model), spec, again, print, resume=True, chunk_size=5,
                       model_path=model)
    (folder / "sub" / "c.txt").unlink()
    (folder / "sub").rmdir()
    result = predict_stream(functools.partial(load_source, model), spec, again, print, resume=True, chunk_size=5,
                            model_path=model)
    assert result.resumed_chunks == 1 and again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    inside = cli("predict", model, folder, "--out", folder / "tagged.jsonl")
    assert inside.exit_code == 1 and "inside the input directory" in inside.stderr
    assert sorted(folder.iterdir()) == [folder / "a.txt", folder / "b.pdf"]  # (nothing written there)
    # a text file asked for as raw
    one = cli("predict", model, folder / "a.txt", "--input-format", "raw", "--format", "spans")
    assert one.exit_code == 0 and len(one.stdout.splitlines()) == len([1 for loc, _ in expected if loc.file.endswith("a.txt")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n\n", encoding="utf-8")
    refused = cli("predict", model, empty, "--out", tmp_path / "none.jsonl")
    assert refused.exit_code == 1 and "no text to read" in refused.stderr
    assert not (tmp_path / "none.jsonl").exists() and not partial_path(tmp_path / "none.jsonl").exists()
