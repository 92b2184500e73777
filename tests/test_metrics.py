"""The scorer against seqeval (the reference the field uses) and against hand-checked cases."""

from __future__ import annotations

import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import sequence_labeling, v1
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import BILOU, IOB2, IOBES

from tagshift.corpus import read_corpus
from tagshift.metrics import PRF, Scores, compare, score_spans, score_tags
from tagshift.schemes import Span

SEQEVAL_SCHEMES = {"iob2": IOB2, "iobes": IOBES, "bilou": BILOU}


def seqeval_scores(gold, pred, mode: str, scheme: str | None = None) -> dict:
    """Per-type, micro and macro P/R/F1 from seqeval: default mode or strict mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on zero division; both sides use 0
        if mode == "conlleval":
            prfs = sequence_labeling.precision_recall_fscore_support
            labels = sorted({t for seq in (gold, pred) for t, _, _ in get_entities(seq)})
            kwargs = {}
        else:
            prfs = v1.precision_recall_fscore_support
            labels = v1.unique_labels(gold, pred, SEQEVAL_SCHEMES[scheme], False)
            kwargs = {"scheme": SEQEVAL_SCHEMES[scheme]}
        out = {"per_type": {}}
        if labels:
            p, r, f, s = prfs(gold, pred, average=None, **kwargs)
            out["per_type"] = {t: (p[i], r[i], f[i], s[i]) for i, t in enumerate(labels)}
        for avg in ("micro", "macro"):
            p, r, f, _ = prfs(gold, pred, average=avg, **kwargs) if labels else (0.0, 0.0, 0.0, 0)
            out[avg] = (p, r, f)
    return out


def assert_same(ours: Scores, reference: dict) -> None:
    assert set(ours.per_type) == set(reference["per_type"])
    for label, (p, r, f, s) in reference["per_type"].items():
        prf = ours.per_type[label]
        # ratios of integer counts in float64 on both sides, by other formulas: they differ by
        # ~1e-16, so pytest's default rel=1e-6 here and below holds on any CPU
        assert prf.precision == pytest.approx(p) and prf.recall == pytest.approx(r)
        assert prf.f1 == pytest.approx(f) and prf.support == s
    micro, macro = ours.micro, ours.macro
    assert (micro.precision, micro.recall, micro.f1) == pytest.approx(reference["micro"])
    assert (macro.precision, macro.recall, macro.f1) == pytest.approx(reference["macro"])


def tag_sequences(prefixes: str, types: str = "XY", max_len: int = 8):
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in types]
    sentence = st.lists(st.sampled_from(tags), min_size=1, max_size=max_len)
    return st.lists(sentence, min_size=1, max_size=6)


def pair(prefixes: str):
    """Gold and predicted sentences of equal lengths."""

    @st.composite
    def build(draw):
        gold = draw(tag_sequences(prefixes))
        tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in "XY"]
        pred = [[draw(st.sampled_from(tags)) for _ in seq] for seq in gold]
        return gold, pred

    return build()


@settings(max_examples=300, deadline=None)
@given(pair("BIES"))
def test_conlleval_mode_equals_seqeval_default_on_any_prefixes(data):
    gold, pred = data
    assert_same(score_tags(gold, pred, "conlleval"), seqeval_scores(gold, pred, "conlleval"))


@pytest.mark.parametrize("scheme, prefixes", [("iob2", "BI"), ("iobes", "BIES"), ("bilou", "BILU")])
def test_strict_mode_equals_seqeval_strict(scheme, prefixes):
    @settings(max_examples=300, deadline=None)
    @given(pair(prefixes))
    def check(data):
        gold, pred = data
        ours = score_tags(gold, pred, "strict", scheme=scheme)
        assert_same(ours, seqeval_scores(gold, pred, "strict", scheme))

    check()


@pytest.mark.issue("seqeval#23")
def test_modes_differ_on_an_entity_without_its_begin_tag():
    """`I-X I-X` against gold `B-X I-X`: conlleval reads one X (correct); strict IOB2 reads none."""
    gold, pred = [["B-X", "I-X", "O"]], [["I-X", "I-X", "O"]]
    lenient = score_tags(gold, pred, "conlleval")
    strict = score_tags(gold, pred, "strict", scheme="iob2")
    assert lenient.per_type["X"] == PRF(correct=1, predicted=1, support=1)
    assert strict.per_type["X"] == PRF(correct=0, predicted=0, support=1)
    assert (lenient.mode, strict.mode) == ("conlleval", "strict")


def test_strict_iobes_drops_an_entity_without_its_end_tag():
    """`B-X I-X` with no `E-X`: conlleval still reads X over both tokens; strict IOBES does not."""
    gold, pred = [["B-X", "E-X", "S-Y"]], [["B-X", "I-X", "S-Y"]]
    assert score_tags(gold, pred, "conlleval").per_type["X"].correct == 1
    assert score_tags(gold, pred, "strict", "iobes").per_type["X"].predicted == 0
    assert score_tags(gold, pred, "strict", "iobes").per_type["Y"].correct == 1


def test_iob1_gold_scores_like_the_conll_script():
    """IOB1 `I-PER I-PER B-PER` is two people; the second starts at the B."""
    gold = [["I-PER", "I-PER", "B-PER", "O"]]
    pred = [["B-PER", "I-PER", "B-PER", "O"]]  # the same entities in IOB2
    scores = score_tags(gold, pred, "conlleval")
    assert scores.per_type["PER"] == PRF(correct=2, predicted=2, support=2)


def test_sentences_are_never_joined():
    """An entity at the end of one sentence and one at the start of the next stay two."""
    gold = [["O", "I-X"], ["I-X", "O"]]
    pred = [["O", "I-X"], ["I-X", "O"]]
    assert score_tags(gold, pred).per_type["X"] == PRF(correct=2, predicted=2, support=2)
    shifted = [[Span(1, 2, "X")], []]
    assert score_spans([[Span(1, 2, "X")], [Span(0, 1, "X")]], shifted, "conlleval").micro == PRF(1, 1, 2)


def test_macro_and_per_type_by_hand():
    """Worked by hand:
    PER: support 2, predicted 1, correct 1 -> P 1, R .5, F 2/3
    LOC: support 2, predicted 1, correct 0 -> 0, 0, 0
    ORG: support 1, predicted 1, correct 1 -> 1, 1, 1
    MISC: support 0, predicted 1, correct 0 -> 0, 0, 0 (a type only predicted still counts in macro)
    micro: correct 2, predicted 4, support 5 -> P .5, R .4, F 4/9
    macro: P (1+0+1+0)/4 = .5, R (.5+0+1+0)/4 = .375, F (2/3+0+1+0)/4 = 5/12
    """
    gold = [
        [Span(0, 2, "PER"), Span(3, 4, "LOC")],
        [Span(0, 1, "ORG"), Span(2, 3, "LOC"), Span(4, 6, "PER")],
    ]
    pred = [
        [Span(0, 2, "PER"), Span(3, 5, "LOC")],
        [Span(0, 1, "ORG"), Span(2, 3, "MISC")],
    ]
    scores = score_spans(gold, pred, "conlleval")
    assert scores.per_type == {
        "LOC": PRF(correct=0, predicted=1, support=2),
        "MISC": PRF(correct=0, predicted=1, support=0),
        "ORG": PRF(correct=1, predicted=1, support=1),
        "PER": PRF(correct=1, predicted=1, support=2),
    }
    # float64 ratios of these counts against exact fractions: default rel=1e-6 is ~10^10 eps
    assert scores.per_type["PER"].f1 == pytest.approx(2 / 3)
    assert (scores.micro.precision, scores.micro.recall, scores.micro.f1) == pytest.approx((0.5, 0.4, 4 / 9))
    macro = scores.macro
    assert (macro.precision, macro.recall, macro.f1) == pytest.approx((0.5, 0.375, 5 / 12))
    data = scores.to_json()
    assert data["mode"] == "conlleval"
    assert set(data["per_type"]["PER"]) == {"precision", "recall", "f1", "support", "predicted", "correct"}


def test_comparison_splits_old_and_new_types():
    gold = [[Span(0, 1, "PER"), Span(2, 3, "LOC"), Span(4, 5, "NEW")]]
    baseline = score_spans(gold, [[Span(0, 1, "PER"), Span(2, 3, "LOC")]], "conlleval")
    system = score_spans(gold, [[Span(0, 1, "PER"), Span(4, 5, "NEW")]], "conlleval")
    comparison = compare(system, baseline, {"old": ["PER", "LOC"], "new": ["NEW"]})
    data = comparison.to_json()
    # F1s of 0/1 counts are exact (0.0, 1.0); 2/3 - 1 goes through float64 rounding: default rel=1e-6
    assert data["per_type"]["LOC"]["delta_f1"] == pytest.approx(-1.0)
    assert data["per_type"]["NEW"] == {
        "group": "new", "baseline_f1": 0.0, "system_f1": 1.0, "delta_f1": 1.0, "support": 1
    }
    assert data["groups"]["old"]["delta_micro_f1"] == pytest.approx(2 / 3 - 1.0)
    assert data["groups"]["new"]["system_macro_f1"] == pytest.approx(1.0)
    assert "old micro" in comparison.render()


def _perturb(tags_list, labels, rate, seed):
    rng = random.Random(seed)
    return [[rng.choice(labels) if rng.random() < rate else t for t in tags] for tags in tags_list]


@pytest.mark.parametrize(
    "name, strict_scheme",
    [("conll2003/eng.testa", None), ("wnut17/emerging.dev.conll", "iob2"), ("crossner/music/test.txt", "iob2")],
)
def test_agrees_with_seqeval_on_shared_corpora_with_perturbed_predictions(shared_data, name, strict_scheme):
    gold = read_corpus(shared_data / name).tag_sequences
    labels = sorted({t for seq in gold for t in seq})
    pred = _perturb(gold, labels, rate=0.08, seed=13)
    assert_same(score_tags(gold, pred, "conlleval"), seqeval_scores(gold, pred, "conlleval"))
    if strict_scheme:
        ours = score_tags(gold, pred, "strict", scheme=strict_scheme)
        assert_same(ours, seqeval_scores(gold, pred, "strict", strict_scheme))


def test_strict_iob1_differs_from_seqeval_on_purpose():
    """`O B-X I-X` is not valid IOB1 (B- only follows an entity of the same type). seqeval's
    strict IOB1 reads an entity over the `I-X` alone, which no one annotated; tagshift reads none."""
    from seqeval.scheme import IOB1, Tokens

    from tagshift.schemes import SCHEMES, strict_chunks

    tags = ["O", "B-X", "I-X"]
    assert [(e.tag, e.start, e.end) for e in Tokens(tags, IOB1).entities] == [("X", 2, 3)]
    assert strict_chunks(tags, SCHEMES["iob1"]) == []
    valid = ["I-X", "B-X", "I-X"]  # where both agree
    assert [(e.tag, e.start, e.end) for e in Tokens(valid, IOB1).entities] == [("X", 0, 1), ("X", 1, 3)]
    assert strict_chunks(valid, SCHEMES["iob1"]) == [Span(0, 1, "X"), Span(1, 3, "X")]
