"""Raw text in (issue 24, item 1): .txt by lines or paragraphs, .jsonl, PDF text layers and
directories of them, split into sentences with character offsets, streamed, and bad input
named by file and line."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from tagshift.rawtext import RawReport, RawTextError, read_raw, split_sentences

from tests.conftest import REPO

NEWS = REPO / "demo" / "news.txt"


def texts(path: Path, **options) -> list[str]:
    return [sentence.text for _, sentence in read_raw(path, **options)]


def pdf(path: Path, pages: list[str | None]) -> Path:
    """A real PDF written by matplotlib: a page per text, None for a page without a text layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as out:
        for text in pages:
            figure = plt.figure(figsize=(8, 2))
            if text:
                figure.text(0.05, 0.5, text)
            out.savefig(figure)
            plt.close(figure)
    return path


def test_offsets_index_each_sentences_text_and_tokens_are_the_tokenizers():
    document = "Angela Merkel met Emmanuel Macron in Paris on Monday. Talks went on (all day)! Then: rain?"
    sentences = split_sentences(document)
    assert [s.text for s in sentences] == ["Angela Merkel met Emmanuel Macron in Paris on Monday.",
                                           "Talks went on (all day)!", "Then: rain?"]
    for sentence in sentences:
        assert [sentence.text[a:b] for a, b in sentence.offsets] == sentence.tokens
        assert set(sentence.tags) == {"O"}
        assert sentence.text in document


def test_abbreviations_initials_and_lowercase_continuations_do_not_end_a_sentence():
    text = "Mr. Smith of Acme Inc. met Prof. J. R. Tolkien, e.g. at 5 p.m. in the U.S. embassy. It rained."
    assert [s.text for s in split_sentences(text)] == [text[: text.index(" It")], "It rained."]


def test_a_text_file_is_a_document_a_line_and_the_locations_say_which(tmp_path):
    report = RawReport()
    read = list(read_raw(NEWS, report))
    lines = [n for n, line in enumerate(NEWS.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
    assert sorted({location.number for location, _ in read}) == lines
    assert {location.unit for location, _ in read} == {"line"}
    assert report.documents == len(lines) and report.sentences == len(read) >= len(lines)
    assert report.tokens == sum(len(s) for _, s in read)


def test_hard_wrapped_paragraphs_are_documents(tmp_path):
    wrapped = tmp_path / "essay.txt"
    wrapped.write_text("The committee met in\nGeneva on Monday. It\nadjourned.\n\nA second\nparagraph here.\n",
                       encoding="utf-8")
    read = list(read_raw(wrapped))
    assert [s.text for _, s in read] == ["The committee met in Geneva on Monday.", "It adjourned.",
                                         "A second paragraph here."]
    assert [(loc.unit, loc.number) for loc, _ in read] == [("paragraph", 1), ("paragraph", 1), ("paragraph", 5)]
    # asked for lines: each of the five lines a document ("Geneva on Monday. It" two sentences)
    assert len(texts(wrapped, layout="lines")) == 6


def test_jsonl_pdf_and_a_directory_of_them(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text(json.dumps({"text": "Siemens rose in Frankfurt.", "id": 7}) + "\n\n"
                                    + json.dumps({"text": "Kenya voted."}) + "\n", encoding="utf-8")
    pdf(folder / "sub" / "b.pdf", ["Angela Merkel met Emmanuel Macron in Paris. The talks were long.", None,
                                    "Shares of Siemens rose."])
    (folder / "notes.docx").write_bytes(b"PK\x03\x04")
    report = RawReport()
    read = list(read_raw(folder, report))
    assert [s.text for _, s in read] == ["Siemens rose in Frankfurt.", "Kenya voted.",
                                         "Angela Merkel met Emmanuel Macron in Paris.", "The talks were long.",
                                         "Shares of Siemens rose."]
    assert [str(loc) for loc, _ in read][-1] == f"{folder / 'sub' / 'b.pdf'} page 3"
    # the page without a text layer is reported by number, never silently skipped
    assert report.pages_without_text == {str(folder / "sub" / "b.pdf"): [2]}
    assert "pages without a text layer, not read: 2" in report.render()
    assert report.skipped == [str(folder / "notes.docx")] and report.files == 2


def test_a_pdf_without_any_text_layer_is_an_error_saying_so(tmp_path):
    scanned = pdf(tmp_path / "scan.pdf", [None, None])
    with pytest.raises(RawTextError, match="no text to read.*text layer"):
        list(read_raw(scanned))


@pytest.mark.parametrize("content, says", [
    (b"", "no text to read"),
    (b"\n  \n", "no text to read"),
    (b"fine line\n\x00\x01\x02binary", "scan.txt:2: file looks binary"),
    (b"ok\nM\xfcller\n", "scan.txt:2: not UTF-8"),
])
def test_bad_text_files_name_the_file_and_line(tmp_path, content, says):
    path = tmp_path / "scan.txt"
    path.write_bytes(content)
    with pytest.raises(RawTextError, match=says.replace(".", r"\.")):
        list(read_raw(path))


@pytest.mark.parametrize("line, says", [("{not json", "not JSON"), ('{"txt": "x"}', '"text" string'),
                                        ('["text"]', '"text" string')])
def test_bad_jsonl_records_name_their_line(tmp_path, line, says):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "A fine first record."}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(RawTextError, match=f"docs.jsonl:2: .*{says}"):
        list(read_raw(path))


def test_a_missing_path_and_a_not_a_pdf_are_errors(tmp_path):
    with pytest.raises(RawTextError, match="no such file"):
        list(read_raw(tmp_path / "absent.txt"))
    fake = tmp_path / "fake.pdf"
    fake.write_text("not a pdf at all", encoding="utf-8")
    with pytest.raises(RawTextError, match="fake.pdf: not a readable PDF"):
        list(read_raw(fake))


def test_a_page_pypdf_fails_on_is_an_error_naming_it(tmp_path, monkeypatch):
    """pypdf raises more than its own errors on malformed input (a KeyError for a missing
    font resource, zlib's error for a broken stream): any of them on a page is one error that
    names the file and the page, not a traceback. The failure is injected into pypdf's page
    reader: a damaged stream pypdf itself recovers from (it then reads as a page without text)."""
    from pypdf import PageObject

    two = pdf(tmp_path / "two.pdf", ["First page.", "Second page."])
    real = PageObject.extract_text

    def second_fails(page, *args, **kwargs):
        if page.page_number == 1:
            raise KeyError("/F1")
        return real(page, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", second_fails)
    with pytest.raises(RawTextError, match=r"two.pdf: page 2 of 2 does not read: the PDF is damaged \(KeyError"):
        list(read_raw(two))


def test_a_sentence_longer_than_the_limit_is_cut_and_counted():
    report = RawReport()
    pieces = split_sentences(" ".join(["word"] * 25), max_tokens=10, report=report)
    assert [len(p) for p in pieces] == [10, 10, 5] and report.cut == 1
    assert all(p.text == " ".join(p.tokens) for p in pieces)


def test_reading_streams_a_document_at_a_time(tmp_path):
    """Memory stays that of a document, not of the file: the peak while reading a file of
    ~2 MB is bounded by a fraction of its size (measured: about 2% of it)."""
    big = tmp_path / "big.txt"
    line = NEWS.read_text(encoding="utf-8").splitlines()[0]
    big.write_text((line + "\n") * 20_000, encoding="utf-8")
    size = big.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_raw(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= 20_000
    assert peak < size / 4, f"peak {peak} bytes while reading {size}"
