"""tagshift models inside spaCy (issue 23, item 3): the `tagshift_ner` component, found by
spaCy through the package's entry point, and `tagshift export --format spacy`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tagshift

spacy = pytest.importorskip("spacy", reason="spaCy is the 'spacy' extra: pip install 'tagshift[spacy]'")

MODEL = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"  # a small trained BiLSTM-CRF (4 CoNLL types)
TEXTS = ["Angela Merkel met Emmanuel Macron in Paris on Monday .",
         "The  European Union\n\nagreed with Germany and the United Nations .", "   ", ""]


def expected_entities(text: str) -> list[tuple[str, str]]:
    """What tagshift itself finds on spaCy's tokens of `text` (whitespace tokens left out)."""
    doc = spacy.blank("en")(text)
    words = [t for t in doc if not t.is_space]
    if not words:
        return []
    tagged = tagshift.load(MODEL).predict([[t.text for t in words]])[0]
    return [(doc[words[e.start].i : words[e.end - 1].i + 1].text, e.label) for e in tagged.entities]


def test_the_component_sets_doc_ents_with_confidences():
    nlp = spacy.blank("en")
    nlp.add_pipe("tagshift_ner", config={"model": str(MODEL)})
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    assert [[(e.text, e.label_) for e in doc.ents] for doc in docs] == [expected_entities(t) for t in TEXTS]
    assert sum(len(doc.ents) for doc in docs) >= 2  # the fixture model finds names here (measured: 5)
    assert all(0.0 < e._.tagshift_confidence <= 1.0 for doc in docs for e in doc.ents)
    assert "<mark" in spacy.displacy.render(docs[0], style="ent")  # displaCy shows them


def test_an_exported_pipeline_loads_with_spacy_alone_and_tags_the_same(cli, tmp_path):
    out = tmp_path / "pipeline"
    result = cli("export", MODEL, "--format", "spacy", "--out", out)
    assert result.exit_code == 0, result.stderr
    # a fresh interpreter that never imports tagshift: spaCy finds the factory by the entry point
    script = ("import json, sys, spacy\nnlp = spacy.load(sys.argv[1])\n"
              "print(json.dumps([[(e.text, e.label_) for e in nlp(t).ents] for t in json.loads(sys.argv[2])]))\n"
              "print(json.dumps(nlp.meta['tagshift']['lineage'][0]['step']))\n")
    ran = subprocess.run([sys.executable, "-c", script, str(out), json.dumps(TEXTS)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stderr
    found, step = ran.stdout.strip().splitlines()
    assert [[tuple(e) for e in doc] for doc in json.loads(found)] == [expected_entities(t) for t in TEXTS]
    assert json.loads(step) == "train"
    assert (out / "tagshift_ner" / "model.safetensors").is_file()  # its own copy, not the old path


def test_export_refuses_what_would_lose_or_mix_work(cli, tmp_path):
    out = tmp_path / "pipeline"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = cli("export", MODEL, "--format", "spacy", "--out", out)
    assert refused.exit_code == 1 and "already exists" in refused.stderr and (out / "keep.txt").is_file()
    missing = cli("export", tmp_path / "no-model", "--format", "spacy", "--out", tmp_path / "new")
    assert missing.exit_code == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()  # nothing half-written
    itself = cli("export", MODEL, "--format", "spacy", "--out", MODEL)
    assert itself.exit_code == 1 and "is the model itself" in itself.stderr
