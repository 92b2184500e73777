"""Tag schemes: reading, writing, repairing and detecting, checked against hand cases and
random entity sets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagshift.errors import SchemeError
from tagshift.schemes import (
    SCHEMES, Span, chunks, convert_tags, detect_scheme, encode, get_scheme, invalid_chunks, split_tag,
    strict_chunks,
)


@st.composite
def entity_sets(draw, max_len: int = 12):
    """A sentence length and non-overlapping entities over it."""
    length = draw(st.integers(1, max_len))
    spans, i = [], 0
    while i < length:
        if draw(st.booleans()):
            end = draw(st.integers(i + 1, min(length, i + 4)))
            spans.append(Span(i, end, draw(st.sampled_from(["PER", "LOC", "creative-work"]))))
            i = end
        else:
            i += 1
    return length, spans


def join_adjacent(spans):
    """What IO and flat labels can express: adjacent same-type entities read as one."""
    joined = []
    for span in spans:
        if joined and joined[-1].end == span.start and joined[-1].label == span.label:
            joined[-1] = Span(joined[-1].start, span.end, span.label)
        else:
            joined.append(span)
    return joined


@settings(max_examples=300, deadline=None)
@given(entity_sets(), st.sampled_from(sorted(SCHEMES)))
def test_encode_then_read_gives_the_entities_back(data, name):
    length, spans = data
    scheme = SCHEMES[name]
    tags = encode(spans, length, scheme)
    expected = spans if scheme.separates_adjacent else join_adjacent(spans)
    assert chunks(tags) == expected
    assert strict_chunks(tags, scheme) == expected  # what we write is always valid
    assert invalid_chunks(tags, scheme) == []


@settings(max_examples=200, deadline=None)
@given(entity_sets(), st.sampled_from(["iob1", "iob2", "iobes", "bilou"]), st.sampled_from(["iob1", "iob2", "iobes", "bilou"]))
def test_conversion_round_trips_between_schemes_that_separate_entities(data, a, b):
    length, spans = data
    tags = encode(spans, length, SCHEMES[a])
    assert convert_tags(convert_tags(tags, SCHEMES[b]), SCHEMES[a]) == tags


@pytest.mark.parametrize(
    "tags, scheme, repaired",
    [
        (["O", "I-X", "I-X"], "iob2", ["O", "B-X", "I-X"]),  # I- after O starts an entity
        (["B-X", "I-Y"], "iob2", ["B-X", "B-Y"]),  # a type change starts a new one
        (["O", "E-X", "O"], "iobes", ["O", "S-X", "O"]),  # E- without B- is a one-token entity
        (["B-X", "I-X", "O"], "iobes", ["B-X", "E-X", "O"]),  # B- without E- ends where the run ends
        (["O", "B-X", "I-X"], "iob1", ["O", "I-X", "I-X"]),  # IOB1 keeps B- for adjacent entities only
        (["I-X", "B-X"], "iob1", ["I-X", "B-X"]),
    ],
)
def test_repairs_read_tags_as_conlleval_does(tags, scheme, repaired):
    assert convert_tags(tags, get_scheme(scheme)) == repaired


def test_invalid_entities_are_counted_per_scheme():
    tags = ["O", "I-X", "I-X", "O", "B-Y", "O", "E-Z"]
    # I- without B-, B- without E-, E- without B-: three entities IOBES does not allow
    assert invalid_chunks(tags, SCHEMES["iobes"]) == [Span(1, 3, "X"), Span(4, 5, "Y"), Span(6, 7, "Z")]
    assert strict_chunks(["O", "I-X", "I-X", "O", "B-Y"], SCHEMES["iob2"]) == [Span(4, 5, "Y")]


def test_flat_labels_read_as_io():
    assert chunks(["person", "person", "O", "place"]) == [Span(0, 2, "person"), Span(3, 4, "place")]
    assert encode([Span(0, 2, "person")], 3, SCHEMES["flat"]) == ["person", "person", "O"]


@pytest.mark.parametrize(
    "tag, message",
    [("X-PER", "unknown prefix 'X'"), ("B-", "no entity type"), ("", "not a tag"), ("B PER", "not a tag")],
)
def test_bad_tags_are_explained(tag, message):
    with pytest.raises(SchemeError, match=message):
        split_tag(tag)


def test_prefixes_outside_the_scheme_are_an_error_with_the_fix():
    with pytest.raises(SchemeError, match="tagshift convert --to iob2"):
        strict_chunks(["S-X"], SCHEMES["iob2"])


def test_overlapping_entities_cannot_be_encoded():
    with pytest.raises(SchemeError, match="overlap"):
        encode([Span(0, 2, "X"), Span(1, 3, "Y")], 3, SCHEMES["iob2"])


@settings(max_examples=100, deadline=None)
@given(st.lists(entity_sets(), min_size=3, max_size=8), st.sampled_from(["iob2", "iobes", "bilou", "flat"]))
def test_detection_finds_the_scheme_that_wrote_the_tags(corpus, name):
    # Only corpora whose tags show what sets the schemes apart can be told apart.
    sequences = [encode(spans, length, SCHEMES[name]) for length, spans in corpus]
    tags = {t for seq in sequences for t in seq}
    if name == "iob2" and not any(t.startswith("B-") for t in tags):
        return
    if name in ("iobes", "bilou") and tags <= {"O"}:
        return
    guess = detect_scheme(sequences)
    if tags <= {"O"}:
        assert guess.confidence == 0.0
        return
    assert guess.scheme == name
    assert guess.confidence == 1.0  # valid / total with valid == total: exact


def test_detection_says_how_sure_it_is():
    mostly_iob2 = [["B-X", "I-X", "O"]] * 99 + [["O", "I-X"]]
    guess = detect_scheme(mostly_iob2)
    assert guess.scheme == "iob2"
    assert guess.confidence == pytest.approx(0.99)  # 99 / 100 in float64: default rel=1e-6 is ample
    assert "99 of 100" in guess.describe()
    assert detect_scheme([["I-X", "I-X", "B-X"]]).scheme == "iob1"
    assert detect_scheme([["I-X", "O", "I-Y"]]).scheme == "iob1"  # I- only: IOB1 and IO read the same
    assert "io 100.00%" in detect_scheme([["I-X", "O", "I-Y"]]).evidence


def test_detection_refuses_mixed_flat_and_prefixed_labels():
    with pytest.raises(SchemeError, match="mix flat labels"):
        detect_scheme([["person", "B-LOC"]])
