"""Bad input: every file a user can get wrong gives one line on stderr, `error: FILE:LINE: ...`,
exit code 1, no traceback, and no output file (not even a half-written or temporary one).

Each case is a small file in tmp_path: a valid corpus with one bad line at a known line number.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GOOD = "John\tB-PER\nSmith\tI-PER\nlives\tO\n\nParis\tB-LOC\n"  # sentence 2 starts on line 5
GOOD_3COL = "EU\tNNP\tB-ORG\nrejects\tVBZ\tO\nGerman\tJJ\tB-MISC\n\nPeter\tNNP\tB-PER\n"
GOOD_JSONL = (
    '{"tokens": ["John", "Smith", "lives"], "tags": ["B-PER", "I-PER", "O"]}\n'
    '{"tokens": ["Paris"], "tags": ["B-LOC"]}\n'
)


def lines_with(text: str, line: int, bad: str) -> str:
    """`text` with line number `line` (1-based) replaced by `bad`."""
    rows = text.split("\n")
    rows[line - 1] = bad
    return "\n".join(rows)


def assert_one_line_error(result, path: Path, line: int | None = None) -> str:
    """The CLI failed with exactly one `error: ` line that names `path` (and `path:line:`)."""
    assert result.exit_code != 0, f"expected failure, got exit 0; stdout={result.stdout!r}"
    assert "Traceback" not in result.stdout + result.stderr
    err_lines = result.stderr.splitlines()
    assert len(err_lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    message = err_lines[0]
    assert message.startswith("error: ") and message[len("error: ") :].strip(), message
    assert str(path) in message, f"{path} not named in {message!r}"
    if line is not None:
        assert f"{path}:{line}:" in message, f"expected {path}:{line}: in {message!r}"
    return message


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    """No output file, and no temporary file (atomic writes use `.NAME.*.tmp`) left behind."""
    assert not out.exists(), f"{out} was written although the command failed"
    stray = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert not stray, f"temporary files left behind: {stray}"


def result_files(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir()}


# Each case: file name, file content, the line the error must name (None: the path is enough),
# words the message must hold.
CORPUS_CASES = [
    pytest.param("c.conll", lines_with(GOOD, 2, "Smith"), 2, ["missing tag"], id="missing-tag"),
    pytest.param("c.conll", lines_with(GOOD, 1, "John"), 1, ["missing tag"], id="missing-tag-on-first-line"),
    pytest.param("c.conll", lines_with(GOOD, 2, "Smith\tX-PER"), 2, ["X-PER", "unknown prefix"], id="unknown-prefix"),
    pytest.param("c.conll", lines_with(GOOD, 2, "I-PER\tSmith"), 2, ["swapped"], id="tag-as-token-swapped-columns"),
    pytest.param("c.conll", lines_with(GOOD, 3, "lives\tO B-LOC"), 3, ["tab and space"], id="mixed-separators-2col"),
    pytest.param(
        "c.conll", lines_with(GOOD_3COL, 2, "rejects\tVBZ O"), 2, ["tab and space"], id="mixed-separators-3col"
    ),
    pytest.param("c.conll", "", None, ["empty"], id="empty-file"),
    pytest.param("c.conll", "  \n\n\t \n\n", None, ["only whitespace"], id="whitespace-only-file"),
    pytest.param("c.conll", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", 3, ["binary"], id="binary-png"),
    pytest.param("c.conll", GOOD.encode().replace(b"lives", b"li\x00ves"), 3, ["binary"], id="nul-byte-in-text"),
    pytest.param("c.conll", GOOD.encode().replace(b"lives", b"caf\xe9"), 3, ["0xe9", "UTF-8"], id="latin1-byte"),
    pytest.param(
        "c.conll",
        "John\tB-PER\nSmith\tI-PER\nlives\tO\n\n" + "w\tO\n" * 100_000,
        5,
        ["blank line missing", "--max-tokens"],
        id="100000-token-sentence",
    ),
    pytest.param(
        "c.jsonl",
        lines_with(GOOD_JSONL, 2, '{"tokens": ["Paris"], "tags": ["B-LOC"]'),
        2,
        ["not valid JSON"],
        id="jsonl-invalid-json",
    ),
    pytest.param(
        "c.jsonl",
        lines_with(GOOD_JSONL, 2, '{"tokens": ["in", "Paris", "today"], "tags": ["O", "B-LOC"]}'),
        2,
        ["3 tokens but 2 tags"],
        id="jsonl-3-tokens-2-tags",
    ),
    pytest.param(
        "c.jsonl",
        lines_with(GOOD_JSONL, 2, '{"tokens": ["Paris"], "tags": ["X-LOC"]}'),
        2,
        ["X-LOC", "unknown prefix"],
        id="jsonl-unknown-prefix",
    ),
]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, content, line, words", CORPUS_CASES)
@pytest.mark.parametrize("command", ["convert", "stats"])
def test_bad_corpus_gives_one_line_error_and_no_output(cli, tmp_path, command, name, content, line, words):
    """A malformed corpus must point the user at FILE:LINE in one line, and convert must write
    nothing (no OUT, no temp file) so a pipeline never picks up a half-converted corpus."""
    source = write(tmp_path / name, content)
    out = tmp_path / ("out" + source.suffix)
    args = ("convert", source, out) if command == "convert" else ("stats", source)
    message = assert_one_line_error(cli(*args), source, line)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert_nothing_written(tmp_path, out)


def test_latin1_file_reads_with_the_encoding_the_error_suggests(cli, tmp_path):
    """The non-UTF-8 message says to pass the file's encoding; doing so must work."""
    source = write(tmp_path / "c.conll", GOOD.encode().replace(b"lives", b"caf\xe9"))
    out = tmp_path / "out.conll"
    result = cli("convert", source, out, "--encoding", "latin-1")
    assert result.exit_code == 0, result.stderr
    assert "café\tO" in out.read_text(encoding="utf-8")


# A map naming a label the corpus (PER, LOC) does not hold; the error names the map's line.
MAP_CASES = [
    pytest.param(
        '# wikigold to ontonotes\n[rename]\nPER = "PERSON"\nORGANIZATION = "ORG"\n', 4, "ORGANIZATION", id="rename-key"
    ),
    pytest.param('[merge]\nPLACE = ["LOC", "GPE"]\n', 2, "GPE", id="merge-list"),
    pytest.param('[rename]\nPER = "PERSON"\n\n[drop]\nlabels = ["MISC"]\n', 5, "MISC", id="drop-list"),
    # MISC also appears on line 2, as the new name of a rename; the bad entry is the [drop] on line 4
    pytest.param('[rename]\nPER = "MISC"\n[drop]\nlabels = ["MISC"]\n', 4, "MISC", id="drop-of-a-renamed-label"),
]


@pytest.mark.parametrize("toml, line, label", MAP_CASES)
def test_label_map_naming_a_missing_label_points_at_the_map_line(cli, tmp_path, toml, line, label):
    """A typo in a label map (a label the corpus does not have) must be caught, pointing at the
    map's line, rather than silently converting nothing."""
    source = write(tmp_path / "c.conll", GOOD)
    label_map = write(tmp_path / "map.toml", toml)
    out = tmp_path / "out.conll"
    message = assert_one_line_error(cli("convert", source, out, "--map", label_map), label_map, line)
    assert f"'{label}'" in message and "LOC, PER" in message, message
    assert_nothing_written(tmp_path, out)


def test_label_map_with_toml_syntax_error_names_the_line(cli, tmp_path):
    """A TOML syntax error in the map names the map and the line, not a tomllib traceback."""
    source = write(tmp_path / "c.conll", GOOD)
    label_map = write(tmp_path / "map.toml", '[rename]\nPER = "PERSON"\nLOC "PLACE"\n')
    out = tmp_path / "out.conll"
    message = assert_one_line_error(cli("convert", source, out, "--map", label_map), label_map, 3)
    assert "invalid TOML" in message
    assert_nothing_written(tmp_path, out)


def test_pred_with_different_tokens_names_pred_line_of_the_sentence(cli, tmp_path):
    """Scoring predictions for the wrong file must fail at the first sentence that differs,
    naming the prediction file and the line where that sentence starts."""
    gold = write(tmp_path / "gold.conll", GOOD)
    pred = write(tmp_path / "pred.conll", GOOD.replace("Paris\tB-LOC", "Rome\tB-LOC"))
    message = assert_one_line_error(cli("evaluate", gold, pred), pred, 5)
    assert "sentence 2" in message and "'Paris'" in message and "'Rome'" in message
    assert f"{gold}:5" in message
    assert not result_files(tmp_path) - {"gold.conll", "pred.conll"}


@pytest.mark.parametrize(
    "pred_text, where, line",
    [
        (GOOD + "\nextra\tO\n", "pred", 7),  # the extra sentence
        (GOOD.replace("lives\tO\n\n", "lives\tO\n"), "pred", 1),  # sentence 1 swallowed sentence 2
        (GOOD.split("\n\n")[0] + "\n", "gold", 5),  # the gold sentence the prediction lacks
    ],
    ids=["extra-sentence", "missing-blank-line", "missing-last-sentence"],
)
def test_pred_with_different_sentence_count_names_the_first_unmatched_sentence(cli, tmp_path, pred_text, where, line):
    """A prediction with a sentence too many or too few (often a lost blank line) must fail in one
    line at the first sentence without a counterpart, naming both files."""
    gold = write(tmp_path / "gold.conll", GOOD)
    pred = write(tmp_path / "pred.conll", pred_text)
    message = assert_one_line_error(cli("evaluate", gold, pred), gold if where == "gold" else pred, line)
    assert str(gold) in message and str(pred) in message, message
    assert result_files(tmp_path) == {"gold.conll", "pred.conll"}


@pytest.mark.parametrize(
    "name, content, extra_args, line",
    [
        ("c.conll", lines_with(GOOD, 5, "Paris\tX-LOC"), (), 5),
        # fails while formatting (a token with a space cannot go in a column file), after reading
        ("c.jsonl", lines_with(GOOD_JSONL, 2, '{"tokens": ["New York"], "tags": ["B-LOC"]}'), ("--format", "conll"), 2),
    ],
    ids=["bad-tag-while-reading", "unwritable-token-while-formatting"],
)
def test_failed_convert_leaves_existing_output_byte_identical(cli, tmp_path, name, content, extra_args, line):
    """Re-running a conversion over last week's output must not destroy it when the new input is
    bad: the old OUT stays byte for byte, and no temporary file is left beside it."""
    source = write(tmp_path / name, content)
    out = tmp_path / "out.conll"
    before = b"old\tO\r\ncontent\tB-PER\n\xff not even utf-8\n"
    out.write_bytes(before)
    assert_one_line_error(cli("convert", source, out, *extra_args), source, line)
    assert out.read_bytes() == before
    assert result_files(tmp_path) == {name, "out.conll"}
