"""The real corpora in ../shared/data: reading, statistics, scheme conversion and writing.

Every test takes the `shared_data` fixture, so the whole file skips with a clear message in a
fresh checkout without that folder. The files are a hard-coded list (checked against the
README's "Statistics" table by `test_readme_table_lists_exactly_these_files`); the README is
parsed at test time, never at import or collection time.

Failure messages point at the first differing line or sentence instead of letting pytest
diff texts and lists of hundreds of thousands of items.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest

from tagshift.corpus import Corpus, format_corpus, read_corpus
from tagshift.schemes import SCHEMES, chunks, convert_tags, split_tag, strict_chunks

# Every file of the README's statistics table, in the table's order.
FILES = (
    "conll2003/eng.testa",
    "conll2003/eng.testb",
    "conll2003/eng.train",
    "crossner/ai/dev.txt",
    "crossner/ai/test.txt",
    "crossner/ai/train.txt",
    "crossner/conll2003/dev.txt",
    "crossner/conll2003/test.txt",
    "crossner/conll2003/train.txt",
    "crossner/literature/dev.txt",
    "crossner/literature/test.txt",
    "crossner/literature/train.txt",
    "crossner/music/dev.txt",
    "crossner/music/test.txt",
    "crossner/music/train.txt",
    "crossner/politics/dev.txt",
    "crossner/politics/test.txt",
    "crossner/politics/train.txt",
    "crossner/science/dev.txt",
    "crossner/science/test.txt",
    "crossner/science/train.txt",
    "mit_movie/engtest.bio",
    "mit_movie/engtrain.bio",
    "mit_movie/trivia10k13test.bio",
    "mit_movie/trivia10k13train.bio",
    "wnut17/emerging.dev.conll",
    "wnut17/emerging.test.annotated",
    "wnut17/wnut17train.conll",
    "conll2002/esp.testa",
    "conll2002/esp.testb",
    "conll2002/esp.train",
    "ncbi_disease/devel.tsv",
    "ncbi_disease/test.tsv",
    "ncbi_disease/train.tsv",
    "wikigold/wikigold.conll.txt",
)

# Files with -DOCSTART- lines (documents = their number); every other file is one document.
DOCSTART_FILES = ("conll2003/eng.testa", "conll2003/eng.testb", "conll2003/eng.train", "wikigold/wikigold.conll.txt")

# The README's statistics table notes repairs only for conll2002 ("IOB2 (with 1 I- tags not
# preceded by same-type tag)"), but eng.train has two entities that are invalid IOB1 as well:
# `B-MISC I-MISC` after `O` (the tokens "Atlanta Games" on line 152428 and "Urdu-speaking Moslems"
# on line 175436). IOB1 uses B- only right after an entity of the same type, so the stats command
# is right to count them; `test_eng_train_has_two_invalid_iob1_entities` checks them in the raw
# file, independently of tagshift.
REPAIRS_NOT_IN_README = {"conll2003/eng.train": 2}
ENG_TRAIN_INVALID_IOB1_LINES = (152428, 175436)


def _no_whitespace_only_lines(text: str) -> str:
    return re.sub(r"(?m)^[ \t]+$", "", text)


def _single_blank_lines(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text)


def _tab_separated(text: str) -> str:
    return "\n".join(
        line if "\t" in line or not line.strip() else "\t".join(line.split()) for line in text.split("\n")
    )


# Files whose layout the reader normalises, and what the writer is expected to make of them.
NORMALISED: dict[str, Callable[[str], str]] = {
    "wnut17/wnut17train.conll": _no_whitespace_only_lines,  # separator lines holding a tab
    "crossner/conll2003/dev.txt": _single_blank_lines,  # double blank lines
    "crossner/conll2003/test.txt": _single_blank_lines,
    "crossner/conll2003/train.txt": _single_blank_lines,
    "mit_movie/trivia10k13test.bio": _tab_separated,  # a few space-separated lines in a tab file
    "mit_movie/trivia10k13train.bio": _tab_separated,
}

# CLI conversions: IOB1 with -DOCSTART- and extra columns, tag-first MIT Movie (the trivia file
# also has space-separated lines), IOB1 WikiGold.
CLI_CONVERT_FILES = (
    "conll2003/eng.testa",
    "mit_movie/engtest.bio",
    "mit_movie/trivia10k13test.bio",
    "wikigold/wikigold.conll.txt",
)

# JSON lines round trips: IOB1 with extra columns, tag-first queries, social media text.
JSONL_FILES = ("conll2003/eng.testb", "mit_movie/engtest.bio", "wnut17/emerging.dev.conll")


def corpus_path(shared_data: Path, rel: str) -> Path:
    """The path of one shared corpus file; fails (not skips) when the folder is there but the file is not."""
    path = shared_data / rel
    assert path.is_file(), f"{path} is listed in the README's statistics table but does not exist"
    return path


@dataclass(frozen=True)
class ReadmeRow:
    file: str
    sentences: int
    tokens: int
    entities: int
    scheme: str  # lowercase: iob1, iob2
    repairs: int  # from "(with N I- tags not preceded by same-type tag)", else 0
    types: dict[str, int]


_SCHEME_CELL = re.compile(r"^(IOB1|IOB2)(?:\s*\(with (\d+) I- tags? not preceded by same-type tag\))?$")


def _parse_types(cell: str) -> dict[str, int]:
    types: dict[str, int] = {}
    for item in cell.split(","):
        name, _, count = item.strip().rpartition(" ")
        assert name and count.isdigit(), f"cannot read type count {item!r} in README cell {cell!r}"
        assert name not in types, f"type {name} listed twice in README cell {cell!r}"
        types[name] = int(count)
    return types


@lru_cache(maxsize=4)
def _readme_rows(readme: Path) -> dict[str, ReadmeRow]:
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Statistics.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"{readme} has no '## Statistics' section"
    rows: dict[str, ReadmeRow] = {}
    for line in match.group(1).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "file" or set("".join(cells)) <= {"-", ":"}:
            continue
        assert len(cells) == 6, f"README statistics row has {len(cells)} cells, expected 6: {line!r}"
        name, sentences, tokens, entities, scheme, types = cells
        scheme_match = _SCHEME_CELL.match(scheme)
        assert scheme_match, f"README scheme cell {scheme!r} (row {name}) is not IOB1/IOB2 with an optional repair note"
        rows[name] = ReadmeRow(
            name,
            int(sentences),
            int(tokens),
            int(entities),
            scheme_match.group(1).lower(),
            int(scheme_match.group(2) or 0),
            _parse_types(types),
        )
    return rows


def readme_row(shared_data: Path, rel: str) -> ReadmeRow:
    rows = _readme_rows(shared_data / "README.md")
    assert rel in rows, f"{rel} has no row in the README's statistics table"
    return rows[rel]


def _first_text_difference(expected: str, actual: str) -> str:
    """Where two long texts first differ, by line, for a readable failure message."""
    want, got = expected.split("\n"), actual.split("\n")
    for number, (a, b) in enumerate(zip(want, got), start=1):
        if a != b:
            return f"line {number}: expected {a!r}, got {b!r}"
    return f"same first {min(len(want), len(got))} lines; expected {len(want)} lines, got {len(got)}"


def _corpus_difference(expected: Corpus, actual: Corpus, *, tags: bool = True, extra: bool = True) -> str | None:
    """The first difference between two corpora's sentences, or None."""
    if len(expected) != len(actual):
        return f"{len(expected)} sentences became {len(actual)}"
    for index, (a, b) in enumerate(zip(expected.sentences, actual.sentences)):
        where = f"sentence {index + 1} ({expected.location(index)})"
        if a.tokens != b.tokens:
            return f"{where}: tokens {a.tokens} became {b.tokens}"
        if tags and a.tags != b.tags:
            return f"{where}: tags {a.tags} became {b.tags}"
        if not tags and chunks(a.tags) != chunks(b.tags):
            return f"{where}: entities {chunks(a.tags)} became {chunks(b.tags)}"
        if extra and a.extra != b.extra:
            return f"{where}: extra columns {a.extra[:3]}... became {b.extra[:3]}..."
    return None


# --- the README itself ------------------------------------------------------------------


def test_readme_table_lists_exactly_these_files(shared_data: Path) -> None:
    rows = _readme_rows(shared_data / "README.md")
    assert sorted(rows) == sorted(FILES)
    for row in rows.values():
        assert sum(row.types.values()) == row.entities, f"README row {row.file}: types do not add up to entities"
    for rel in FILES:
        corpus_path(shared_data, rel)


# --- 1. reading and statistics ----------------------------------------------------------


@pytest.mark.parametrize("rel", FILES)
def test_stats_match_readme(shared_data: Path, cli, rel: str) -> None:
    path = corpus_path(shared_data, rel)
    row = readme_row(shared_data, rel)
    raw = path.read_bytes()
    docstarts = sum(1 for line in raw.split(b"\n") if line.startswith(b"-DOCSTART-"))
    assert (docstarts > 0) == (rel in DOCSTART_FILES)

    corpus = read_corpus(path)
    assert corpus.layout is not None, "a column file should read as one"
    assert len(corpus) == row.sentences
    assert sum(len(s) for s in corpus.sentences) == row.tokens
    assert len(corpus.doc_starts) == docstarts

    result = cli("stats", path, "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["sentences"] == row.sentences
    assert stats["tokens"] == row.tokens
    assert sum(stats["entities"].values()) == row.entities
    assert stats["entities"] == row.types
    counts = list(stats["entities"].values())
    assert counts == sorted(counts, reverse=True), "entity types should be listed most frequent first"
    assert stats["scheme"] == row.scheme
    expected_repairs = REPAIRS_NOT_IN_README.get(rel, row.repairs)
    assert stats["repairs"] == expected_repairs
    # the JSON rounds this share (at most 1) to 6 decimals: it is off by at most 5e-7
    assert stats["scheme_confidence"] == pytest.approx((row.entities - expected_repairs) / row.entities, abs=1e-6)
    assert stats["documents"] == (docstarts if docstarts else 1)


def test_eng_train_has_two_invalid_iob1_entities(shared_data: Path) -> None:
    """The repairs the README does not mention are in the raw file (read here without tagshift)."""
    path = corpus_path(shared_data, "conll2003/eng.train")
    invalid = []
    previous = "O"
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            previous = "O"
            continue
        tag = line.split(" ")[-1]
        # IOB1: B-X only directly after an X entity; anything else after O/another type is fine as I-X.
        if tag.startswith("B-") and previous[2:] != tag[2:]:
            invalid.append(number)
        previous = tag
    assert tuple(invalid) == ENG_TRAIN_INVALID_IOB1_LINES


# --- 2. scheme conversions --------------------------------------------------------------


@pytest.mark.parametrize("rel", FILES)
def test_scheme_conversions_round_trip(shared_data: Path, rel: str) -> None:
    path = corpus_path(shared_data, rel)
    row = readme_row(shared_data, rel)
    corpus = read_corpus(path)
    iob2, iobes, bilou = SCHEMES["iob2"], SCHEMES["iobes"], SCHEMES["bilou"]
    problems: list[str] = []
    changed_tags = 0  # tags that differ between the original and its IOB2 conversion
    for index, sentence in enumerate(corpus.sentences):
        where = corpus.location(index)
        entities = chunks(sentence.tags)
        as_iob2 = convert_tags(sentence.tags, iob2)
        changed_tags += sum(a != b for a, b in zip(sentence.tags, as_iob2))
        if strict_chunks(as_iob2, iob2) != entities:
            problems.append(f"{where}: iob2 {as_iob2} does not spell the entities {entities}")
        for scheme in (iobes, bilou):
            converted = convert_tags(as_iob2, scheme)
            if strict_chunks(converted, scheme) != entities:
                problems.append(f"{where}: {scheme.name} {converted} does not spell the entities {entities}")
            back = convert_tags(converted, iob2)
            if back != as_iob2:
                problems.append(f"{where}: iob2 -> {scheme.name} -> iob2 gave {back}, expected {as_iob2}")
        if len(problems) >= 5:
            break
    assert not problems, "\n".join(problems)
    if row.scheme == "iob2":
        # A valid IOB2 file converts to itself; each repair rewrites one I- tag as B-.
        assert changed_tags == REPAIRS_NOT_IN_README.get(rel, row.repairs)


@pytest.mark.parametrize("rel", CLI_CONVERT_FILES)
def test_cli_convert_round_trip(shared_data: Path, cli, tmp_path: Path, rel: str) -> None:
    source = corpus_path(shared_data, rel)
    a, b, c = tmp_path / "a.iobes", tmp_path / "b.iob2", tmp_path / "c.iob2"

    to_iobes = cli("convert", source, a, "--to", "iobes")
    assert to_iobes.exit_code == 0, to_iobes.stderr
    back = cli("convert", a, b, "--to", "iob2")
    assert back.exit_code == 0, back.stderr
    assert back.stderr.startswith("scheme: iobes "), back.stderr
    assert "repaired 0 invalid entities" in back.stderr, back.stderr
    direct = cli("convert", source, c, "--to", "iob2")
    assert direct.exit_code == 0, direct.stderr

    prefixes = {split_tag(tag)[0] for s in read_corpus(a).sentences for tag in s.tags}
    assert prefixes <= {"O", "B", "I", "E", "S"} and prefixes & {"E", "S"}, prefixes

    b_text, c_text = b.read_text(encoding="utf-8"), c.read_text(encoding="utf-8")
    assert b_text == c_text, _first_text_difference(c_text, b_text)
    original = source.read_text(encoding="utf-8")
    if readme_row(shared_data, rel).scheme == "iob2":  # valid IOB2 already: only the layout normalisation remains
        expected = NORMALISED.get(rel, lambda text: text)(original)
        assert c_text == expected, _first_text_difference(expected, c_text)
    else:
        assert c_text != original


# --- 3. writing -------------------------------------------------------------------------


@pytest.mark.parametrize("rel", FILES)
def test_conll_writer_round_trip(shared_data: Path, tmp_path: Path, rel: str) -> None:
    path = corpus_path(shared_data, rel)
    raw = path.read_bytes()
    corpus = read_corpus(path)
    written = format_corpus(corpus, "conll")
    if rel not in NORMALISED:
        same = written.encode("utf-8") == raw
        assert same, _first_text_difference(raw.decode("utf-8"), written)
        return

    # The reader normalised the layout: the writer changes exactly that, and nothing read changes.
    expected = NORMALISED[rel](raw.decode("utf-8"))
    assert written == expected, _first_text_difference(expected, written)
    copy = tmp_path / path.name
    copy.write_bytes(written.encode("utf-8"))
    reread = read_corpus(copy)
    difference = _corpus_difference(corpus, reread)
    assert difference is None, difference
    assert reread.doc_starts == corpus.doc_starts
    assert reread.layout == corpus.layout


@pytest.mark.parametrize("fmt", ["jsonl", "spans"])
@pytest.mark.parametrize("rel", JSONL_FILES)
def test_jsonl_round_trip(shared_data: Path, tmp_path: Path, rel: str, fmt: str) -> None:
    corpus = read_corpus(corpus_path(shared_data, rel))
    copy = tmp_path / f"corpus.{fmt}.jsonl"
    copy.write_bytes(format_corpus(corpus, fmt).encode("utf-8"))
    reread = read_corpus(copy)
    assert reread.layout is None, "JSON lines should read as JSON, not as a column file"
    # `jsonl` keeps the tags themselves; `spans` keeps the entities (read back as IOB2).
    difference = _corpus_difference(corpus, reread, tags=fmt == "jsonl", extra=False)
    assert difference is None, difference
    if fmt == "spans":
        for index, sentence in enumerate(reread.sentences):
            assert sentence.text == " ".join(sentence.tokens), corpus.location(index)
            assert sentence.tags == convert_tags(corpus.sentences[index].tags, SCHEMES["iob2"]), corpus.location(index)
