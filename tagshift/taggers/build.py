"""Builders: a new, untrained tagger for a training corpus, one function per backend."""

from __future__ import annotations

import torch

from tagshift.corpus import Corpus
from tagshift.convert import entity_labels
from tagshift.taggers.bilstm import BiLSTMConfig, BiLSTMEncoder
from tagshift.taggers.tagger import Network, Tagger, check_model_scheme, label_set, make_head
from tagshift.taggers.transformer import TransformerConfig, TransformerEncoder, resolve_encoder, without_pooler
from tagshift.taggers.vectors import embedding_matrix, load_vectors
from tagshift.taggers.vocab import build_vocabs, word_key

DEFAULT_SCHEMES = {"bilstm-crf": "iobes", "transformer": "iob2"}


def bilstm_crf(
    config: BiLSTMConfig, train: Corpus, scheme: str = "iobes", seed: int = 0, extra: Corpus | None = None
) -> Tagger:
    """A BiLSTM-CRF for the types of `train`. Words of `extra` (dev data, unlabelled text) join
    the vocabulary only where a pretrained vector covers them: no label is read from it."""
    check_model_scheme(scheme)
    torch.manual_seed(seed)
    vectors = load_vectors(config.vectors) if config.vectors else None
    spelled: dict[str, str] = {}  # vocabulary key (digits as 0) -> a word spelled that way
    if vectors is not None:
        sentences = [s.tokens for s in train.sentences] + ([s.tokens for s in extra.sentences] if extra else [])
        candidates = [t for tokens in sentences for t in tokens] + vectors.common_words(config.max_vectors)
        for word in candidates:
            key = word_key(word)
            if key not in spelled and vectors.get(word) is not None:
                spelled[key] = word
        config.word_dim = vectors.dim
    words, chars = build_vocabs((s.tokens for s in train.sentences), config.min_count, spelled)
    matrix, _ = embedding_matrix(words, vectors, config.word_dim, torch.Generator().manual_seed(seed), spelled)
    encoder = BiLSTMEncoder(config, words, chars, matrix)
    labels = label_set(entity_labels(train), scheme)
    head = make_head(config.head, encoder.output_dim, labels, scheme)
    return Tagger("bilstm-crf", config, labels, scheme, Network(encoder, head))


def transformer(config: TransformerConfig, train: Corpus, scheme: str = "iob2", seed: int = 0) -> Tagger:
    """A pretrained transformer with a new head for the types of `train`."""
    from transformers import AutoModel, AutoTokenizer

    check_model_scheme(scheme)
    torch.manual_seed(seed)
    name = resolve_encoder(config.encoder)
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = without_pooler(AutoModel.from_pretrained, name)
    encoder = TransformerEncoder(config, model, tokenizer)
    labels = label_set(entity_labels(train), scheme)
    dropout = getattr(model.config, "hidden_dropout_prob", 0.1)
    head = make_head(config.head, encoder.output_dim, labels, scheme, dropout)
    return Tagger("transformer", config, labels, scheme, Network(encoder, head))
