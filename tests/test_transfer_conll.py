"""A real transfer run on CoNLL-2003 (shared data): the transfer paper's third task. A source
trained on PER, LOC and ORG is adapted with data annotated only for MISC. With
pseudo-labels it gains MISC and keeps the old types; naively, the new data's O teaches
them away (what spaCy users report as catastrophic forgetting, spaCy #3611)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagshift.corpus import Corpus, read_corpus
from tagshift.schemes import SCHEMES, chunks, encode
from tagshift.taggers.backends import BILSTM_CRF
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.training import TrainConfig, evaluate_tagger, fit
from tagshift.transfer import AdaptConfig, adapt, adapt_training

OLD = ["LOC", "ORG", "PER"]


def only(corpus: Corpus, types: set[str], start: int, end: int) -> Corpus:
    """Sentences [start, end) with only `types` annotated (the rest O), as partial data is."""
    sentences = [
        s.with_tags(encode([x for x in chunks(s.tags) if x.label in types], len(s), SCHEMES["iob2"]))
        for s in corpus.sentences[start:end]
    ]
    return Corpus(sentences, corpus.path)


@pytest.fixture
def conll(shared_data: Path) -> dict[str, Corpus]:
    train = read_corpus(shared_data / "conll2003" / "eng.train")
    testa = read_corpus(shared_data / "conll2003" / "eng.testa")
    return {
        "source_train": only(train, set(OLD), 0, 2000),
        "source_dev": only(testa, set(OLD), 0, 300),
        "target_train": only(train, {"MISC"}, 2000, 3000),
        "target_dev": only(testa, {"MISC"}, 300, 600),
        "test": Corpus(testa.sentences[600:1100], testa.path),  # every type annotated
    }


def test_pseudo_labels_keep_the_old_types_while_a_new_one_is_learned(conll):
    source = BILSTM_CRF.build(BiLSTMConfig(), conll["source_train"], seed=0)
    fit(source, conll["source_train"], conll["source_dev"], TrainConfig(epochs=8))
    before = evaluate_tagger(source, conll["test"])
    training = adapt_training("bilstm-crf", epochs=8)
    runs = {}
    for name, options in (("naive", AdaptConfig()), ("pseudo", AdaptConfig(pseudo_label=0.5))):
        prepared, _ = adapt(source, conll["target_train"], conll["target_dev"], options, training)
        runs[name] = evaluate_tagger(prepared.tagger, conll["test"])
    old_before = before.restrict(OLD).micro.f1
    # Measured, seed 0 (this test) with AVX512 / AVX2 kernels, then seeds 1 and 2: source old-type
    # micro F1 0.710 / 0.710 / 0.702 / 0.714; with pseudo-labels it moves +0.006 / -0.009 / +0.004 /
    # +0.006 (MISC 0.41 / 0.42 / 0.28 / 0.39); naive forgets every old type (0.009 / 0.006 / 0.000 /
    # 0.000; MISC 0.35 / 0.44 / 0.54 / 0.39). Training rounds differently on another CPU: 0.09 of
    # MISC F1 between the two kernel sets. So pseudo may lose 0.05 (3x the spread seen; naive loses
    # 0.70), and MISC must reach 0.15 (half the lowest run; the source has none).
    assert runs["pseudo"].restrict(OLD).micro.f1 >= old_before - 0.05
    assert runs["naive"].restrict(OLD).micro.f1 <= old_before - 0.30
    assert runs["pseudo"].per_type["MISC"].f1 >= 0.15 and runs["naive"].per_type["MISC"].f1 >= 0.15
