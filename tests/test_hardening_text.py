"""Hardening of what reads text (issue 22): error messages that quote input stay short and on
one line; the raw-text tokenizer never cuts a character as people see it; the corpus and label
map readers, fed random input, either read it or raise a TagshiftError of one bounded line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hypothesis.strategies as st
import pytest
import regex
from hypothesis import HealthCheck, assume, given, settings

from tagshift.corpus import read_corpus
from tagshift.errors import CorpusError, LabelMapError, TagshiftError, quoted
from tagshift.labelmap import LabelMap
from tagshift.predict import read_input
from tagshift.tokenize import tokenize

TEN_MB = 10 * 2**20
GOOD = "John\tB-PER\nSmith\tI-PER\nlives\tO\n\nParis\tB-LOC\n"
MAX_MESSAGE = 600  # characters besides the file's path: a few quoted values and the fix


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def assert_short_one_line(err: TagshiftError, path: Path) -> str:
    """The message is one line, names the file, and is short however long the input was."""
    message = str(err)
    assert len(message.splitlines()) == 1, repr(message[:500])
    assert len(message) <= len(str(path)) + MAX_MESSAGE, f"{len(message)} characters: {message[:300]!r}..."
    assert str(path) in message, message
    return message


# --- item 7: quoted input is cut -------------------------------------------------------------


def test_quoted_cuts_long_text_and_says_its_length():
    assert quoted("B-PER") == "'B-PER'"
    assert quoted("x" * TEN_MB) == repr("x" * 80) + "… (10,485,760 characters)"
    assert quoted("a\nb\u2028c") == r"'a\nb\u2028c'"  # one line whatever the input holds
    assert len(quoted(list(range(TEN_MB // 100)))) <= 81


@pytest.mark.issue(22)
def test_stats_on_a_file_with_a_10_mb_line_prints_a_short_error(cli, tmp_path):
    """`tagshift stats` quoted the whole bad line: a 10 MB line made a 10 MB message."""
    source = write(tmp_path / "c.conll", GOOD.replace("lives\tO", "x" * TEN_MB))
    result = cli("stats", source)
    assert result.exit_code == 1
    (message,) = result.stderr.splitlines()
    assert message.startswith(f"error: {source}:3: expected 2 columns")
    assert message.endswith("… (10,485,760 characters)") and len(message) < 300, message[:300]


LONG = "x" * 2**20
# Each case: file name, content, the line the message names; every one quotes a 1 MB value.
LONG_VALUE_CASES = [
    pytest.param("c.conll", GOOD.replace("lives\tO", f"lives\tO {LONG}"), 3, id="mixed-separators"),
    pytest.param("c.conll", GOOD.replace("lives\tO", f"lives\t{LONG}"), 3, id="not-a-tag"),
    pytest.param("c.conll", GOOD.replace("lives\tO", f"lives\tX-{LONG}"), 3, id="unknown-prefix"),
    pytest.param("c.conll", GOOD.replace("lives\tO", f"lives\tB-{LONG}\x0b"), 3, id="tag-with-whitespace"),
    pytest.param("c.conll", f"a\tperson\nb\tO\nc\tB-{LONG}\nd\tplace\n", 3, id="prefixed-tag-among-flat"),
    pytest.param("c.jsonl", json.dumps({"tokens": ["a"], "tags": [f"X-{LONG}"]}), 1, id="jsonl-unknown-prefix"),
    pytest.param("c.jsonl", json.dumps({"tokens": ["a"], "tags": [[LONG]]}), 1, id="jsonl-tag-not-a-string"),
    pytest.param("c.jsonl", json.dumps({"text": "a b", "spans": [[0, 1, LONG + " y"]]}), 1, id="jsonl-label-space"),
    pytest.param("c.jsonl", json.dumps({"text": "a b", "spans": [LONG]}), 1, id="jsonl-unreadable-span"),
    pytest.param("c.jsonl", json.dumps({"text": "a b", "spans": [[0, 1, 2, LONG]]}), 1, id="jsonl-span-4-fields"),
    pytest.param("c.jsonl", json.dumps({"text": "a b", "spans": [{"start": 0, "end": "1", "label": LONG}]}), 1,
                 id="jsonl-span-without-integers"),
    pytest.param("c.jsonl", json.dumps({"text": "a  b", "spans": [{"start": 1, "end": 3, "label": "P", "x": LONG}]}),
                 1, id="jsonl-span-of-whitespace"),
    pytest.param("c.jsonl", json.dumps({k: 1 for k in map(str, range(10_000))} | {LONG: 1}), 1,
                 id="jsonl-record-of-unknown-keys"),
    pytest.param("c.jsonl", json.dumps({"text": "ab", "tokens": [{"start": 0, "text": LONG}]}), 1,
                 id="jsonl-given-token-without-end"),
]


@pytest.mark.issue(22)
@pytest.mark.parametrize("name, content, line", LONG_VALUE_CASES)
def test_messages_quoting_a_long_value_stay_short(tmp_path, name, content, line):
    source = write(tmp_path / name, content)
    with pytest.raises(CorpusError) as err:
        read_corpus(source)
    message = assert_short_one_line(err.value, source)
    assert message.startswith(f"{source}:{line}: "), message[:300]
    assert "…" in message or "..." in message, message  # "..." where reprlib cut inside a structure


@pytest.mark.issue(22)
def test_a_label_map_quoting_a_long_key_stays_short(tmp_path):
    path = write(tmp_path / "map.toml", f'[rename]\n"{LONG}" = 5\n')
    with pytest.raises(LabelMapError) as err:
        LabelMap.from_toml(path)
    assert assert_short_one_line(err.value, path).startswith(f"{path}:2: [rename] 'xxx")


# Each case: map text, the line of the bad key, words the message must hold (what was expected).
WRONG_TYPE_MAPS = [
    pytest.param('# people\n[rename]\nPER = 5\n', 3, ["'PER' is an integer (5)", 'old = "new"'], id="rename-integer"),
    pytest.param('[rename]\nA = "B"\n\nPER = ["PERSON"]\n', 4, ["'PER' is an array", 'old = "new"'], id="rename-list"),
    pytest.param('[rename]\n  "PER" = true # yes\n', 2, ["'PER' is a boolean", 'old = "new"'], id="rename-quoted-key"),
    pytest.param('[rename]\nPER.x = "P"\n', 2, ["'PER' is a table", 'old = "new"'], id="rename-dotted-key"),
    pytest.param('[rename]\nA = "B"\n[rename.PER]\nx = 1\n', 3, ["'PER' is a table"], id="rename-subtable"),
    pytest.param(
        '[drop]\nlabels = ["X"]\n[merge]\nLOC = "GPE"\n', 4, ["'LOC' is a string ('GPE')", 'new = ["old", ...]'],
        id="merge-string",
    ),
    pytest.param('[merge]\nLOC = ["GPE", 5]\n', 2, ["an array holding an integer (5)"], id="merge-list-of-integer"),
    pytest.param('[merge]\nLOC = []\n', 2, ["an empty array"], id="merge-empty"),
    pytest.param('[drop]\n\nlabels = "MISC"\n', 3, ["labels is a string ('MISC')", 'labels = ["old", ...]'],
                 id="drop-string"),
    pytest.param('[drop]\nlabel = ["MISC"]\n', 2, ["found 'label'", 'labels = ["old", ...]'], id="drop-other-key"),
    pytest.param('# map\nrename = 5\n', 2, ["rename is an integer (5)", "expected a table"], id="section-not-a-table"),
    pytest.param('[[merge]]\nLOC = ["GPE"]\n', 1, ["merge is an array", "expected a table"], id="array-of-tables"),
    pytest.param('rename = { PER = 5 }\n', 1, ["'PER' is an integer (5)"], id="inline-table"),
    pytest.param('[rename]\nPER = "New York"\n', 2, ["'New York' is not an entity type", "no whitespace"],
                 id="rename-to-a-label-with-space"),
    pytest.param('[merge]\nLOC = ["GPE"]\n"LOC 2" = ["FAC"]\n', 3, ["'LOC 2' is not an entity type"],
                 id="merge-to-a-label-with-space"),
    pytest.param('[rename]\n"a\\nb" = "X"\n', 2, [r"'a\nb' is not an entity type"], id="key-with-newline"),
]


@pytest.mark.issue(22)
@pytest.mark.parametrize("text, line, words", WRONG_TYPE_MAPS)
def test_a_label_map_value_of_the_wrong_type_names_its_line_and_what_was_expected(tmp_path, text, line, words):
    """`PER = 5` under [rename] gave a message without the line (or an AttributeError)."""
    path = write(tmp_path / "map.toml", text)
    with pytest.raises(LabelMapError) as err:
        LabelMap.from_toml(path)
    message = assert_short_one_line(err.value, path)
    assert message.startswith(f"{path}:{line}: "), message
    for word in words:
        assert word in message, message


def test_a_label_map_with_a_bom_or_bad_bytes(tmp_path):
    """Notepad writes a BOM; a BOM is not a TOML error. Latin-1 bytes are a LabelMapError,
    not a UnicodeDecodeError."""
    assert LabelMap.from_toml(write(tmp_path / "map.toml", '\ufeff[rename]\nA = "B"\n')).rename == {"A": "B"}
    path = write(tmp_path / "map.toml", '[rename]\nA = "Bé"\n'.encode("latin-1"))
    with pytest.raises(LabelMapError, match=r"map.toml:2: byte 0xe9 is not valid UTF-8"):
        LabelMap.from_toml(path)


# --- item 8: tokens are made of grapheme clusters --------------------------------------------

# The tokenizer before grapheme clusters: the reference for text where every cluster is one
# code point, which must split exactly as before.
OLD_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)+|\w+(?:[-'’]\w+)*|\S")
CLUSTER = regex.compile(r"\X")


def old_tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in OLD_TOKEN.finditer(text)]


def cluster_edges(text: str) -> set[int]:
    return {0, *(m.end() for m in CLUSTER.finditer(text))}


def is_space(cluster: str) -> bool:
    """Whether a cluster is whitespace: its base is, the first character after any prepended
    ones (U+0600 and a space are one cluster)."""
    return (regex.sub(r"^\p{Grapheme_Cluster_Break=Prepend}+", "", cluster) or cluster)[0].isspace()


@pytest.mark.issue(22)
@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Mari\u0301a Curie", ["Mari\u0301a", "Curie"]),  # decomposed accent
        ("la fe\u0301e\u0300s.", ["la", "fe\u0301e\u0300s", "."]),
        ("\U0001f469\u200d\U0001f469\u200d\U0001f467 ok", ["\U0001f469\u200d\U0001f469\u200d\U0001f467", "ok"]),
        ("nice\U0001f44d\U0001f3fd!", ["nice", "\U0001f44d\U0001f3fd", "!"]),  # skin tone
        ("Paris\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea", ["Paris", "\U0001f1eb\U0001f1f7", "\U0001f1e9\U0001f1ea"]),
        ("\u0928\u092e\u0938\u094d\u0924\u0947 \ud55c\uad6d", ["\u0928\u092e\u0938\u094d\u0924\u0947", "\ud55c\uad6d"]),
        ("\u1112\u1161\u11ab-\u1100\u1173\u11af", ["\u1112\u1161\u11ab-\u1100\u1173\u11af"]),  # Hangul jamo
        ("3.1\u0301 4", ["3.1\u0301", "4"]),
        ("\u06001,234 x", ["\u06001,234", "x"]),  # an Arabic number sign is prepended to its number
    ],
)
def test_tokens_never_split_a_character_as_people_see_it(text, tokens):
    assert [t for t, _, _ in tokenize(text)] == tokens
    assert all(text[s:e] == t for t, s, e in tokenize(text))


@pytest.mark.issue(22)
def test_a_bom_opening_the_text_is_no_token_and_offsets_stay_in_the_original():
    text = "\ufeffJohn lives in Paris\U0001f1eb\U0001f1f7"
    assert tokenize(text) == [
        ("John", 1, 5), ("lives", 6, 11), ("in", 12, 14), ("Paris", 15, 20), ("\U0001f1eb\U0001f1f7", 20, 22)
    ]
    assert tokenize("\ufeff") == [] and tokenize("") == []


def test_a_cluster_based_on_whitespace_is_left_out_like_whitespace():
    """A stray accent on a space, or a prepended mark before one, is one cluster with a space
    as its base: no token can hold it without holding the space."""
    assert tokenize("a \u0301b \u0600 c") == [("a", 0, 1), ("b", 3, 4), ("c", 7, 8)]


def test_cuts_inside_a_cluster_are_ignored_and_the_others_kept():
    text = "Mari\u0301a12"
    assert [t for t, _, _ in tokenize(text, cuts=[4])] == ["Mari\u0301a12"]
    assert [t for t, _, _ in tokenize(text, cuts=[3, 6])] == ["Mar", "i\u0301a", "12"]


@pytest.mark.issue(22)
def test_raw_text_for_predict_keeps_a_decomposed_name_whole(tmp_path):
    """`tagshift predict` on raw text: the tagger sees "María" as one word, offsets exact."""
    line = "Mari\u0301a vit a\u0300 Paris \U0001f1eb\U0001f1f7"
    corpus, fmt = read_input(write(tmp_path / "in.txt", f"\ufeff{line}\nOK then, see you.\n"))
    assert fmt == "text"
    sentence = corpus.sentences[0]
    assert sentence.tokens == ["Mari\u0301a", "vit", "a\u0300", "Paris", "\U0001f1eb\U0001f1f7"]
    assert [sentence.text[s:e] for s, e in sentence.offsets] == sentence.tokens


@pytest.mark.issue(22)
def test_a_span_with_an_edge_inside_a_character_names_it(tmp_path):
    """A span ending between "i" and its accent cannot be kept; say where the character is."""
    record = {"text": "Mari\u0301a Curie", "spans": [{"start": 0, "end": 4, "label": "PER"}]}
    path = write(tmp_path / "s.jsonl", json.dumps(record))
    expected = r"s.jsonl:1: span 0-4 \(PER\) has an edge inside 'i\u0301', .* \(3-5\); move the edge to 3 or 5"
    with pytest.raises(CorpusError, match=expected):
        read_corpus(path)
    record["spans"] = [{"start": 0, "end": 6, "label": "PER"}, {"start": 13, "end": 15, "label": "LOC"}]
    record["text"] += " \U0001f1eb\U0001f1f7"
    sentence = read_corpus(write(path, json.dumps(record))).sentences[0]
    assert sentence.tokens == ["Mari\u0301a", "Curie", "\U0001f1eb\U0001f1f7"]
    assert sentence.tags == ["B-PER", "O", "B-LOC"]


def test_a_span_from_0_over_a_bom_starts_after_it(tmp_path):
    record = {"text": "\ufeffJohn lives", "spans": [{"start": 0, "end": 5, "label": "PER"}]}
    sentence = read_corpus(write(tmp_path / "s.jsonl", json.dumps(record))).sentences[0]
    assert sentence.tokens == ["John", "lives"] and sentence.tags == ["B-PER", "O"]


# Text where clusters of several code points are common: bases, marks, joiners, emoji parts.
CLUSTERY = st.text(
    st.sampled_from(
        [
            *"ab1 2.,-'’_\t\n\r\x1c\u00b2",
            "\u0301", "\u0300", "\u0903", "\u094d", "\u0915",  # combining marks, a virama, a consonant
            "\u200d", "\u200b", "\ufeff", "\u0600",  # joiner, zero-width space, BOM, a prepended sign
            "\U0001f469", "\U0001f3fd", "\U0001f1eb", "\U0001f1f7",  # emoji, skin tone, regional indicators
            "\u1100", "\u1161", "\u11a8",  # Hangul jamo
        ]
    ),
    max_size=40,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(CLUSTERY, st.lists(st.integers(0, 40), max_size=4))
def test_tokens_slice_the_text_and_fall_on_cluster_edges(text, cuts):
    shift = 1 if text.startswith("\ufeff") else 0  # the opening BOM: no token, no part of one
    edges = {shift + edge for edge in cluster_edges(text[shift:])}
    covered = shift
    for token, start, end in [*tokenize(text, cuts), ("", len(text), len(text))]:
        assert text[start:end] == token and start >= covered
        assert {start, end} <= edges, (text, token)
        gap = CLUSTER.findall(text[covered:start])
        assert all(map(is_space, gap)), (text, gap)  # only whitespace is left out
        covered = end


@FAST
@given(st.text(st.characters(blacklist_categories=("Mn", "Mc", "Me", "Cs")), max_size=60))
def test_text_of_one_code_point_characters_splits_as_before(text):
    """Words still split as before on letters, digits and punctuation: only clusters changed."""
    assume(len(CLUSTER.findall(text)) == len(text))  # else a cluster of several code points: no longer split
    assume(not text.startswith("\ufeff"))
    assert tokenize(text) == old_tokenize(text)


# --- fuzz: the readers read or raise a short TagshiftError, never anything else ---------------


def assert_reads_or_explains(read, path: Path) -> None:
    try:
        read(path)
    except TagshiftError as err:
        assert_short_one_line(err, path)


TAGGY = st.lists(
    st.sampled_from(
        ["\t", " ", "\n", "\n\n", "\r\n", "\r", "O", "B-PER", "I-PER", "E-", "X-LOC", "person", "-DOCSTART-", "w",
         "[", "{", '"', "\ufeff", "\x00", "\x0b", "\u2028", "é", "\u0301", "[{", '{"tokens"']
    ),
    max_size=30,
).map("".join)


@FAST
@given(st.binary(max_size=300))
def test_fuzz_corpus_reader_on_random_bytes(tmp_path, data):
    assert_reads_or_explains(read_corpus, write(tmp_path / "fuzz.txt", data))


@FAST
@given(st.lists(TAGGY, min_size=1, max_size=8).map("\n".join))
def test_fuzz_corpus_reader_on_random_tagged_text(tmp_path, text):
    assert_reads_or_explains(read_corpus, write(tmp_path / "fuzz.conll", text))
    assert_reads_or_explains(lambda p: read_input(p, "auto"), tmp_path / "fuzz.conll")


JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.floats(allow_nan=False),
    st.sampled_from(["", "O", "B-PER", "I-PER", "X-Y", "PER", "a b", "Paris", "\u0301", "start", "end", "label"]),
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["tokens", "tags", "text", "spans", "entities", "label", "labels", "start", "end", "value",
                         "start_offset", "end_offset", "annotations", "result", "data", "ner_tags", "x"]),
        inner,
        max_size=5,
    ),
    max_leaves=12,
)
RECORD = st.fixed_dictionaries(
    {},
    optional={
        "text": st.sampled_from(["Mari\u0301a lives in Paris", "", " ", "\ufeffJohn", "a\U0001f1eb\U0001f1f7b"]),
        "tokens": JSON_VALUE, "tags": JSON_VALUE, "spans": JSON_VALUE, "label": JSON_VALUE,
        "annotations": JSON_VALUE, "data": JSON_VALUE, "ner_tags": JSON_VALUE,
    },
) | JSON_VALUE


@FAST
@given(st.lists(RECORD, min_size=1, max_size=4), st.booleans())
def test_fuzz_jsonl_reader_on_random_records(tmp_path, records, as_array):
    text = json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records)
    path = write(tmp_path / "fuzz.jsonl", text)
    assert_reads_or_explains(read_corpus, path)
    assert_reads_or_explains(lambda p: read_corpus(p, unlabelled=True), path)


TOML_LINE = st.one_of(
    st.sampled_from(["[rename]", "[merge]", "[drop]", "[[drop]]", "[rename.x]", "[other]", "", "# c", "x = ["]),
    st.builds(
        "{} = {}".format,
        st.sampled_from(["PER", '"LOC"', "labels", "a.b", '"a b"', "rename", "drop", "merge", "''"]),
        st.sampled_from(['"X"', '""', "5", "true", '["A", "B"]', '["A", 5]', "[]", '{ a = "b" }', "1979-05-27",
                         '"New York"', "[[1]]", '"\\u2028"', '["PER"]']),
    ),
)


@FAST
@given(st.lists(TOML_LINE, max_size=8).map("\n".join) | st.binary(max_size=100))
def test_fuzz_label_map_reader(tmp_path, content):
    path = write(tmp_path / "map.toml", content)
    try:
        label_map = LabelMap.from_toml(path)
    except TagshiftError as err:
        assert_short_one_line(err, path)
    else:
        try:
            label_map.check(["PER", "LOC"])
        except LabelMapError as err:
            assert_short_one_line(err, path)


# Crashes the fuzz tests (and reading the readers for what they would find) turned up: each
# raised something other than a TagshiftError before.
CRASHES = [
    pytest.param("c.jsonl", '{"tokens": null, "tags": []}', "a record needs", id="tokens-null-beside-tags"),
    pytest.param(
        "c.jsonl", '{"text": "ab", "spans": [{"value": 5}]}', "cannot read span", id="label-studio-value-not-object"
    ),
    pytest.param("c.jsonl", '{"text": "ab", "annotations": [{"result": 5}]}', None, id="label-studio-result-not-list"),
    pytest.param("c.jsonl", '{"text": "ab", "tokens": [{"start": 0}]}', "needs integer 'start' and 'end'",
                 id="prodigy-token-without-end"),
    pytest.param("c.jsonl", '{"text": "ab", "tokens": [{"start": "0", "end": 2}]}', "needs integer",
                 id="prodigy-token-offsets-not-integers"),
    pytest.param("c.jsonl", '{"text": "ab", "tokens": [{"start": 0, "end": 2, "text": 7}]}', "not a non-empty string",
                 id="prodigy-token-text-not-string"),
    pytest.param("c.jsonl", "[\n" + "[" * 100_000, "nested too deeply", id="deeply-nested-array"),
    pytest.param("c.jsonl", '{"tokens": ["a"], "tags": [' + "[" * 100_000 + "]", "nested too deeply",
                 id="deeply-nested-record"),
    pytest.param("c.jsonl", '{"text": "ab", "spans": [[0, ' + "9" * 5000 + ', "P"]]}', "cannot read JSON",
                 id="integer-of-5000-digits"),
]


@pytest.mark.parametrize("name, content, words", CRASHES)
def test_fuzz_found_crashes_are_corpus_errors(tmp_path, name, content, words):
    path = write(tmp_path / name, content)
    try:
        read_corpus(path)
    except TagshiftError as err:
        message = assert_short_one_line(err, path)
        assert words is None or words in message, message
    else:
        assert words is None, "expected an error"


def test_an_unknown_encoding_is_a_corpus_error(tmp_path):
    path = write(tmp_path / "c.conll", GOOD)
    for encoding in ("no-such-codec", "base64"):
        with pytest.raises(CorpusError, match="is not a text encoding"):
            read_corpus(path, encoding=encoding)


def test_label_map_crashes_are_label_map_errors(tmp_path):
    """`rename = 5` at the top gave AttributeError: 'int' object has no attribute 'values'."""
    for text in ("rename = 5\n", 'drop = ["MISC"]\n', 'merge = "LOC"\n', 'drop = ""\n', "[[drop]]\n"):
        with pytest.raises(LabelMapError, match="expected a table"):
            LabelMap.from_toml(write(tmp_path / "map.toml", text))
