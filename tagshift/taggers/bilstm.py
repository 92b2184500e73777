"""The BiLSTM-CRF encoder (Lample et al. 2016; the architecture of NeuroNER): per word, a
word embedding, a character BiLSTM or CNN and optionally a casing embedding, concatenated
and read in context by a word-level BiLSTM."""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tagshift.errors import BundleError, TagshiftError
from tagshift.fields import check_fields
from tagshift.taggers.heads import head_kind_named
from tagshift.taggers.vectors import embedding_matrix, load_vectors
from tagshift.taggers.vocab import Vocab, build_vocabs, vocab_from_json, vocab_to_json, word_key, word_lookup
from tagshift.taggers.words import SHAPES, word_shape

if TYPE_CHECKING:
    from tagshift.corpus import Corpus

MAX_WORD_CHARS = 50  # longer tokens (URLs, garbage) are cut for the character model only


@dataclass
class BiLSTMConfig:
    """Sizes of the BiLSTM-CRF; defaults follow Lample et al. where measured to help here."""

    word_dim: int = 100  # replaced by the vectors' size when vectors are given
    char_dim: int = 30
    char_encoder: Literal["lstm", "cnn"] = "lstm"
    char_hidden: int = 50  # per direction (lstm) or filters (cnn)
    casing_dim: int = 0
    hidden: int = 200  # per direction
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.05  # share of training words replaced by UNK, to learn UNK
    min_count: int = 2  # rarer training words are UNK unless they have a pretrained vector
    vectors: str | None = None  # text file, spacy:PACKAGE or hf:NAME_OR_PATH
    # Keep the word embeddings as loaded, so unseen test words stay in the space the BiLSTM
    # learnt. None: frozen when `vectors` are given (+2 F1 and 3x faster training on CoNLL,
    # bench/conll.py and bench/ablations.py), trained when they start random.
    freeze_vectors: bool | None = None
    # The most frequent words of the vectors that join the vocabulary beside the training and
    # dev words: all of GloVe 6B's 400,000 (50d: 80 MB in the bundle). With 50,000, 14% of
    # CoNLL test's entity words were UNK, and test F1 was 0.3 lower (bench/conll.py).
    max_vectors: int = 400_000
    head: Literal["crf", "softmax"] = "crf"
    # `adapt --labels stack`: the guide's labels, whose per-word probabilities join each word's
    # features through a linear layer of `guide_dim` outputs (taggers/guide.py); none: no guide
    guide_labels: list[str] = field(default_factory=list)
    guide_states: int = 0  # the width of the guide encoder's states read beside them; 0: none
    guide_dim: int = 25

    def __post_init__(self) -> None:
        if self.freeze_vectors is None:
            self.freeze_vectors = self.vectors is not None
        check_fields(
            self,
            positive=("word_dim", "char_dim", "char_hidden", "hidden", "layers", "min_count", "guide_dim"),
            non_negative=("casing_dim", "max_vectors", "guide_states"),
        )
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.word_dropout < 1.0:
            raise ValueError("dropout and word_dropout must lie in [0, 1)")
        head_kind_named(self.head)

    def encoder_name(self) -> str:
        return "BiLSTM"


@dataclass(frozen=True)
class WordBatch:
    """A batch of sentences as indices."""

    words: Tensor  # (batch, words) word indices, 0 = padding
    chars: Tensor  # (distinct words, chars) character indices of each distinct token
    char_lengths: Tensor  # (distinct words,)
    token_index: Tensor  # (batch, words) row of `chars` for each word
    shapes: Tensor  # (batch, words) casing class
    mask: Tensor  # (batch, words) True for real words


@dataclass(frozen=True)
class GuidedBatch(WordBatch):
    """A batch with the guide's tag probabilities of each word."""

    guide: Tensor  # (batch, words, guide labels + guide states)


def lstm_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Where an LSTM computes under `--precision bf16`: on a CPU in fp32, as oneDNN has no bf16
    LSTM on CPUs without AVX512 ("could not create a primitive descriptor" on AVX2 machines);
    elsewhere as autocast decides."""
    return torch.autocast("cpu", enabled=False) if device.type == "cpu" else contextlib.nullcontext()


class CharLSTM(nn.Module):
    """A word's spelling read both ways; the two final states are its representation."""

    def __init__(self, num_chars: int, dim: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(self.embedding(chars), lengths, batch_first=True, enforce_sorted=False)
        with lstm_precision(chars.device):
            _, (final, _) = self.lstm(packed)  # final: (2, distinct words, hidden)
        return torch.cat([final[0], final[1]], dim=-1)  # (distinct words, 2 * hidden)


class CharCNN(nn.Module):
    """Character trigrams, max-pooled over the word (Ma and Hovy 2016)."""

    def __init__(self, num_chars: int, dim: int, filters: int):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, kernel_size=3, padding=1)
        self.output_dim = filters

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        grams = self.conv(self.embedding(chars).transpose(1, 2))  # (distinct words, filters, chars)
        padding = torch.arange(chars.size(1), device=chars.device).unsqueeze(0) >= lengths.unsqueeze(1)
        return grams.masked_fill(padding.unsqueeze(1), float("-inf")).max(dim=2).values


def _word_lstm(config: BiLSTMConfig, inputs: int) -> nn.LSTM:
    """The BiLSTM over the words' features."""
    return nn.LSTM(inputs, config.hidden, num_layers=config.layers, batch_first=True, bidirectional=True,
                   dropout=config.dropout if config.layers > 1 else 0.0)


class BiLSTMEncoder(nn.Module):
    """Word features in context, (batch, words, 2 * hidden)."""

    def __init__(self, config: BiLSTMConfig, words: Vocab, chars: Vocab, embeddings: Tensor | None = None):
        super().__init__()
        self.config = config
        self.words, self.chars = words, chars
        word_dim = embeddings.size(1) if embeddings is not None else config.word_dim
        self.word_embedding = nn.Embedding(len(words), word_dim, padding_idx=0)
        if embeddings is not None:
            self.word_embedding.weight.data.copy_(embeddings)
        self.word_embedding.weight.requires_grad_(not config.freeze_vectors)
        char_model = CharLSTM if config.char_encoder == "lstm" else CharCNN
        self.char_encoder = char_model(len(chars), config.char_dim, config.char_hidden)
        self.casing = nn.Embedding(len(SHAPES), config.casing_dim, padding_idx=0) if config.casing_dim else None
        guided = bool(config.guide_labels)
        guide_size = len(config.guide_labels) + config.guide_states
        self.guide_projection = nn.Linear(guide_size, config.guide_dim) if guided else None
        self.dropout = nn.Dropout(config.dropout)
        inputs = word_dim + self.char_encoder.output_dim + config.casing_dim + (config.guide_dim if guided else 0)
        self.lstm = _word_lstm(config, inputs)
        self.output_dim = 2 * config.hidden

    def add_guide(self, guide_size: int) -> None:
        """Start reading a guide's `guide_size` features per word (transfer/stack.py's
        graft_guide): a fresh projection whose outputs join the word BiLSTM's input as its last
        columns (where forward puts them), their weights at zero, so the output is unchanged
        until training. Draws from torch's global generator."""
        old = self.lstm
        self.lstm = _word_lstm(self.config, old.input_size + self.config.guide_dim)
        with torch.no_grad():
            for (name, weight), new in zip(old.named_parameters(), self.lstm.parameters()):
                if name.startswith("weight_ih_l0"):  # (4 * hidden, inputs): the guide's columns last, at zero
                    new.zero_()
                    new[:, : weight.size(1)] = weight
                else:
                    new.copy_(weight)
        self.guide_projection = nn.Linear(guide_size, self.config.guide_dim)
        self.to(weight.device)

    def starting_point(self, seed: int) -> BiLSTMEncoder:
        """This encoder as a new one starts (for transfer/shrink.py): every layer at its own
        random initialisation drawn with `seed`, the word embedding as it is when it started
        from vectors (frozen vectors are the same in both)."""
        start = copy.deepcopy(self)
        torch.manual_seed(seed)
        for module in start.modules():
            if hasattr(module, "reset_parameters") and list(module.parameters(recurse=False)) \
                    and not (module is start.word_embedding and self.config.vectors):
                module.reset_parameters()
        return start

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the bottom up (word and character representations, then the
        word BiLSTM), for freezing and gradual unfreezing; frozen vectors stay out."""
        inputs = [] if self.config.freeze_vectors else list(self.word_embedding.parameters())
        inputs += list(self.char_encoder.parameters())
        inputs += list(self.casing.parameters()) if self.casing is not None else []
        inputs += list(self.guide_projection.parameters()) if self.guide_projection is not None else []
        return [inputs, list(self.lstm.parameters())]

    def featurize(self, sentences: list[list[str]], guide: Tensor | None = None) -> WordBatch:
        """Indices for a batch of tokenised sentences (each at least one token long); `guide`:
        the guide's features (batch, words, guide labels + guide states), which a guided encoder needs."""
        if (guide is not None) != (self.guide_projection is not None):
            raise TagshiftError("a guided BiLSTM-CRF reads its guide's tag probabilities with each batch, and only it "
                              "does: the model's guide_labels and its guide do not agree")
        width = max(len(s) for s in sentences)
        words = torch.zeros(len(sentences), width, dtype=torch.long)
        shapes = torch.zeros(len(sentences), width, dtype=torch.long)
        token_index = torch.zeros(len(sentences), width, dtype=torch.long)
        distinct: dict[str, int] = {}
        for b, tokens in enumerate(sentences):
            words[b, : len(tokens)] = torch.tensor([word_lookup(self.words, t) for t in tokens])
            shapes[b, : len(tokens)] = torch.tensor([word_shape(t) for t in tokens])
            token_index[b, : len(tokens)] = torch.tensor([distinct.setdefault(t, len(distinct)) for t in tokens])
        spellings = [token[:MAX_WORD_CHARS] or " " for token in distinct]
        lengths = torch.tensor([len(s) for s in spellings])
        chars = torch.zeros(len(spellings), int(lengths.max()), dtype=torch.long)
        for i, spelling in enumerate(spellings):
            chars[i, : len(spelling)] = torch.tensor([self.chars.index(c) for c in spelling])
        mask = torch.arange(width).unsqueeze(0) < torch.tensor([len(s) for s in sentences]).unsqueeze(1)
        if guide is not None:
            return GuidedBatch(words, chars, lengths, token_index, shapes, mask, guide)
        return WordBatch(words, chars, lengths, token_index, shapes, mask)

    def forward(self, batch: WordBatch) -> Tensor:
        words = batch.words
        if self.training and self.config.word_dropout > 0:
            dropped = torch.rand(words.shape, device=words.device) < self.config.word_dropout
            words = words.masked_fill(dropped & batch.mask, 1)  # 1 = UNK
        parts = [
            self.word_embedding(words),  # (batch, words, word_dim)
            self.char_encoder(batch.chars, batch.char_lengths)[batch.token_index],  # (batch, words, char)
        ]
        if self.casing is not None:
            parts.append(self.casing(batch.shapes))
        if self.guide_projection is not None:
            parts.append(self.guide_projection(batch.guide))  # (batch, words, guide_dim)
        inputs = self.dropout(torch.cat(parts, dim=-1))
        lengths = batch.mask.sum(dim=1)
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        with lstm_precision(inputs.device):
            output, _ = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
        return self.dropout(output)  # (batch, words, 2 * hidden)


# --- the family's part of building, saving and loading (taggers/backends.py lists it) ----

VOCAB = "vocab.json"  # the word and character vocabularies, in a bundle


def new_encoder(config: BiLSTMConfig, train: Corpus, seed: int, extra: Corpus | None = None) -> BiLSTMEncoder:
    """An untrained encoder for the words of `train`. Words of `extra` (dev data, unlabelled
    text) join the vocabulary only where a pretrained vector covers them: no label is read
    from it. Sets `config.word_dim` to the vectors' size when vectors are given."""
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
    return BiLSTMEncoder(config, words, chars, matrix)


def save_files(encoder: BiLSTMEncoder, directory: Path) -> None:
    """The vocabularies beside the weights (the embedding rows follow their order)."""
    vocab = vocab_to_json(encoder.words, encoder.chars)
    (directory / VOCAB).write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")


def load_encoder(config: BiLSTMConfig, directory: Path) -> BiLSTMEncoder:
    """An encoder shaped as the bundle in `directory` saved it (weights are loaded after)."""
    file = directory / VOCAB
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise BundleError(f"{file}: missing or unreadable ({err})") from None
    words, chars = vocab_from_json(data, file)
    return BiLSTMEncoder(config, words, chars)
