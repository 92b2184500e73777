"""The masked-LM objective: continued pretraining of a transformer encoder on raw text
(`tagshift pretrain`, issue 24), through the shared loop. Only its batches and loss differ
from tagging: word pieces of the text's sentences, some masked by transformers'
`DataCollatorForLanguageModeling`, and the cross-entropy of the masked-LM head's guesses.

The starting point is an encoder (a Hugging Face name or directory; the result is a Hugging
Face masked-LM directory that `tagshift train --encoder DIR` takes) or a tagshift transformer
bundle (the result is a bundle with the same head and labels over the pretrained encoder).

Epoch selection: every `held_out`-th sentence of the text is kept out of training and
masked once, with a fixed seed; the epoch with the lowest masked-LM loss on those sentences
is the one saved (their perplexity is logged). Without it the last epoch would be saved
however far it had overfitted a small text, and nothing would say whether the pretraining
learnt anything that carries to unseen sentences.

Memory: the text is streamed from `tagshift.rawtext.read_raw` and tokenised as it is read;
every epoch reads all of its word pieces again in another order, so they are kept for the
run, on disk: (piece id, word number) pairs of int32 (8 bytes a piece) in an unnamed
temporary file read through a memory map (`Pieces`). In memory stay one offset per example
(8 bytes) and each epoch's order, a list of the example numbers: a text larger than memory
pretrains, given TMPDIR room for 8 bytes a piece.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import shutil
import tempfile
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from tagshift.bundle import CONFIG, LINEAGE, WEIGHTS, save_bundle, write_directory, write_extra
from tagshift.corpus.model import Sentence
from tagshift.errors import TagshiftError
from tagshift.fields import check_fields
from tagshift.lineage import file_sha256, state_sha256, step_record
from tagshift.progress import progress_bar
from tagshift.taggers.backends import TRANSFORMER
from tagshift.taggers.tagger import Tagger, usable_device
from tagshift.taggers.transformer import DEFAULT_ENCODER, quiet_transformers, resolve_encoder
from tagshift.training.config import TrainConfig
from tagshift.training.loop import CHECKPOINT, Checkpoint, Evaluation, Run, train_with_checkpoints
from tagshift.training.world import SINGLE, World
from tagshift.training.ner import epoch_batches, optimizer_of

IGNORE = -100  # the label of pieces the loss skips (transformers' convention)
TOKENIZE_BATCH = 256  # sentences the fast tokenizer takes at once while the text streams in


@dataclass(frozen=True)
class MaskingConfig:
    """What `tagshift pretrain` adds to the training options: how pieces are masked, how long
    an example may be, and which sentences are held out to pick the best epoch."""

    mlm_probability: float = 0.15  # share of pieces (of words, with whole_word) masked
    whole_word: bool = False  # mask every piece of a word together (all as [MASK]: transformers' rule)
    max_length: int = 128  # pieces per example, special pieces included; longer sentences are split
    held_out: int = 20  # every held_out-th sentence scores each epoch; 0 = none (the last epoch is kept)

    def __post_init__(self) -> None:
        try:
            check_fields(self, positive=("max_length",), non_negative=("held_out",))
        except ValueError as err:
            raise TagshiftError(f"pretraining option {err}") from None
        if not 0 < self.mlm_probability < 1:
            raise TagshiftError(f"--mlm-probability {self.mlm_probability} should lie between 0 and 1 (0.15 is BERT's)")
        if self.held_out == 1:
            raise TagshiftError("--held-out 1 would hold out every sentence; give 0 (none) or 2 or more (20: one in 20)")


# --- the text, as word pieces --------------------------------------------------------------


class Pieces:
    """Examples of word pieces (without special pieces), stored flat as (piece id, word within
    its example) pairs of int32, and `starts`, where each example begins.

    The pairs are spooled to an unnamed temporary file (in TMPDIR) as the text is read and
    read back through a memory map once it is all read (`seal`): a text larger than memory
    pretrains, the operating system keeping in memory the pages an epoch reads. What stays in
    memory is 8 bytes an example and a write buffer."""

    BUFFER = 1 << 20  # int32 values written at once

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="tagshift-pieces-")  # gone when closed, even after a crash
        self._buffer, self._starts = array("i"), array("q", [0])
        self._flat: memoryview | None = None  # the pairs, once sealed
        self._count = 0

    def add(self, words: list[list[int]]) -> None:
        if self._flat is not None:
            raise RuntimeError("Pieces are sealed: no more examples")
        for number, pieces in enumerate(words):
            for piece in pieces:
                self._buffer.extend((piece, number))
        self._count += sum(map(len, words))
        self._starts.append(self._count)
        if len(self._buffer) >= self.BUFFER:
            self._buffer.tofile(self._file)
            self._buffer = array("i")

    def seal(self) -> Pieces:
        """Write what is buffered and map the file for reading; no example may be added after."""
        if self._flat is None:
            self._buffer.tofile(self._file)
            self._file.flush()
            self._buffer = array("i")
            # (an empty file cannot be mapped)
            self._flat = (memoryview(mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)).cast("i")
                          if self._count else memoryview(array("i")))
        return self

    def __len__(self) -> int:
        return len(self._starts) - 1

    @property
    def pieces(self) -> int:
        return self._count

    def lengths(self) -> list[int]:
        return [b - a for a, b in zip(self._starts, self._starts[1:])]

    def example(self, index: int) -> tuple[list[int], list[int]]:
        """Piece ids and word numbers of example `index`."""
        if self._flat is None:
            raise RuntimeError("Pieces are read once sealed")
        a, b = self._starts[index], self._starts[index + 1]
        pairs = self._flat[2 * a : 2 * b].tolist()
        return pairs[0::2], pairs[1::2]


@dataclass
class Text:
    """Raw text read for pretraining: training and held-out examples, and its record."""

    train: Pieces
    held_out: Pieces
    record: dict[str, Any]  # path, hashes and counts, for the lineage
    summary: str = ""  # what the reader read, for people


def chunks(words: list[list[int]], limit: int) -> Iterator[list[list[int]]]:
    """A sentence's words (their pieces) in runs of at most `limit` pieces, cut between words;
    a word longer than `limit` keeps its first pieces.

    >>> list(chunks([[1], [2, 3], [4, 5, 6], [7]], 3))
    [[[1], [2, 3]], [[4, 5, 6]], [[7]]]
    """
    run: list[list[int]] = []
    size = 0
    for pieces in words:
        pieces = pieces[:limit]
        if run and size + len(pieces) > limit:
            yield run
            run, size = [], 0
        run.append(pieces)
        size += len(pieces)
    if run:
        yield run


def tokenize_text(sentences: Iterable[Sentence], tokenizer: Any, limit: int, held_out: int,
                  path: str | Path | None = None) -> Text:
    """Word pieces of `sentences` as they stream in, in examples of at most `limit` pieces;
    every `held_out`-th sentence (0: none) goes to the held-out examples.

    The tokenizer reads tagshift's tokens (`is_split_into_words`), as the tagger's encoder
    does when it fine-tunes: pretraining sees the words it will tag, and whole-word masking
    masks those words. A token the tokenizer gives no piece for becomes its unknown piece."""
    train, held = Pieces(), Pieces()
    digest = hashlib.sha256()
    counts = {"sentences": 0, "tokens": 0}

    def flush(batch: list[list[str]]) -> None:
        encoded = tokenizer(batch, is_split_into_words=True, add_special_tokens=False)
        for i, tokens in enumerate(batch):
            words: list[list[int]] = [[] for _ in tokens]
            for piece, word in zip(encoded["input_ids"][i], encoded.word_ids(i)):
                if word is not None:
                    words[word].append(piece)
            words = [pieces or [tokenizer.unk_token_id] for pieces in words]
            number = counts["sentences"] - len(batch) + i + 1  # 1-based, over the whole text
            store = held if held_out and number % held_out == 0 else train
            for run in chunks(words, limit):
                store.add(run)

    batch: list[list[str]] = []
    for sentence in sentences:
        if not sentence.tokens:
            continue
        digest.update(json.dumps(sentence.tokens, ensure_ascii=False).encode("utf-8"))
        counts["sentences"] += 1
        counts["tokens"] += len(sentence.tokens)
        batch.append(sentence.tokens)
        if len(batch) == TOKENIZE_BATCH:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not len(train):
        where = f"{path}: " if path is not None else ""
        raise TagshiftError(f"{where}no text to pretrain on ({counts['sentences']} sentences read); "
                            "give a file or directory of raw text (.txt, .jsonl, PDF)")
    record = {
        "path": str(path) if path is not None else None,
        "sha256": file_sha256(path) if path is not None and Path(path).is_file() else None,
        "content_sha256": digest.hexdigest(),  # of the tokens read: also tells directories apart
        **counts,
        "pieces": train.pieces + held.pieces,
        "examples": len(train),
        "held_out_examples": len(held),
    }
    return Text(train.seal(), held.seal(), record)


def read_text(path: str | Path, tokenizer: Any, masking: MaskingConfig, limit: int, progress: bool = False) -> Text:
    """Raw text at `path` (a file or a directory, as `tagshift.rawtext` reads them), tokenised."""
    from tagshift.rawtext import RawReport, read_raw

    read = RawReport()
    sentences = (s for _, s in progress_bar(read_raw(path, read), f"reading {path}", enabled=progress, unit="sentence"))
    text = tokenize_text(sentences, tokenizer, limit, masking.held_out, path)
    text.summary = read.render()
    return text


# --- the model: an encoder with a masked-LM head --------------------------------------------


@dataclass
class Source:
    """What pretraining starts from: a masked-LM network and its tokenizer, the encoder's name
    or the bundle it came from, what happened to the LM head, and the tagger whose encoder it
    is (None when the source is an encoder)."""

    network: nn.Module  # an AutoModelForMaskedLM
    tokenizer: Any
    name: str
    head: str
    tagger: Tagger | None = None

    @property
    def base(self) -> nn.Module:
        """The encoder inside the masked-LM model (BertForMaskedLM.bert)."""
        return getattr(self.network, self.network.base_model_prefix)

    @property
    def lm_head(self) -> nn.Module | None:
        """The LM head, when it is the model's one module besides the encoder (BERT's `cls`,
        RoBERTa's `lm_head`): it reads each piece's hidden state alone, so it can be run on
        the masked pieces only. None for a model whose head is split in parts (ELECTRA's,
        DistilBERT's): those run their whole forward pass."""
        others = [module for name, module in self.network.named_children() if name != self.network.base_model_prefix]
        return others[0] if len(others) == 1 else None


def _masked_lm_class(config: Any, name: str) -> None:
    """Refuse a model type transformers has no masked-LM head for (GPT-2, T5...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise TagshiftError(f"encoder '{name}' is a {config.model_type} model, which has no masked-LM head in "
                            "transformers; masked-LM pretraining needs a BERT-like encoder (bert, roberta, "
                            "deberta-v2, electra...)")


def _head_state(network: nn.Module) -> str:
    """How a new LM head's decoder starts: as the input embeddings (tied) or drawn fresh."""
    tied = network.get_output_embeddings().weight is network.get_input_embeddings().weight
    return ("its decoder tied to the input embeddings, its transform and bias initialised as transformers does" if tied
            else "its decoder and transform initialised as transformers does (the config does not tie it to the "
                 "input embeddings)")


def _tagshift_backend(path: Path) -> str | None:
    """The family of the tagshift bundle at `path`, or None when it is not one."""
    try:
        fields = json.loads((path / CONFIG).read_text(encoding="utf-8")).get("tagshift")
    except (OSError, ValueError, AttributeError):
        return None
    return fields.get("backend", "?") if isinstance(fields, dict) else None


def encoder_source(encoder: str, seed: int) -> Source:
    """The encoder `encoder` names (a Hugging Face name or directory; the default MiniLM is
    a package) with its masked-LM head: its own where the checkpoint has one, else a new one
    (the default MiniLM ships the encoder alone). `seed` draws a new head."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    name = resolve_encoder(encoder)
    backend = _tagshift_backend(Path(name))
    if backend == TRANSFORMER.name:
        raise TagshiftError(f"--encoder {encoder} is a tagshift bundle: give it as the model to pretrain "
                            f"('tagshift pretrain {encoder} --text ...'), which keeps its head and labels")
    if backend is not None:
        raise TagshiftError(f"--encoder {encoder} is a tagshift {backend} bundle; masked-LM pretraining is for "
                            "transformer encoders")
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name)
            tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as err:  # noqa: BLE001  (transformers raises OSError, ValueError, KeyError... for a non-model)
        raise TagshiftError(f"--encoder {encoder} does not load as a Hugging Face transformer "
                            f"({' '.join(str(err).split())[:200]}); give a model name or a directory "
                            f"save_pretrained wrote (default {DEFAULT_ENCODER})") from None
    _masked_lm_class(config, encoder)
    if tokenizer.mask_token is None or not getattr(tokenizer, "is_fast", False):
        raise TagshiftError(f"encoder '{encoder}' needs a fast tokenizer with a mask token for masked-LM pretraining")
    torch.manual_seed(seed)
    with quiet_transformers():
        network, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    base = f"{network.base_model_prefix}."
    missing = set(info["missing_keys"])
    if any(key.startswith(base) for key in missing):
        raise TagshiftError(f"--encoder {encoder}: the checkpoint lacks encoder weights "
                            f"({', '.join(sorted(k for k in missing if k.startswith(base)))[:200]}); "
                            "it is not a whole encoder")
    tied = network.get_input_embeddings().weight.data_ptr()
    head = {k for k, v in network.state_dict().items() if not k.startswith(base) and v.data_ptr() != tied}
    if not missing:
        note = "the LM head is the checkpoint's own"
    elif head <= missing:
        note = f"the LM head is new ({encoder} has none): {_head_state(network)}"
    else:
        note = f"the LM head is the checkpoint's but for {', '.join(sorted(missing))}, initialised as transformers does"
    return Source(network, tokenizer, encoder, note)


def tagger_source(tagger: Tagger, name: str, seed: int) -> Source:
    """A tagshift transformer tagger's encoder under a new masked-LM head built from the
    encoder's config: the encoder's weights are copied in, every shape checked."""
    from transformers import AutoModelForMaskedLM

    if tagger.backend is not TRANSFORMER:
        raise TagshiftError(f"{name} is a {tagger.backend.name} model; masked-LM pretraining is for transformer "
                            "encoders (train a transformer with 'tagshift train --backend transformer')")
    encoder = tagger.encoder.model
    _masked_lm_class(encoder.config, name)
    torch.manual_seed(seed)
    with quiet_transformers():
        network = AutoModelForMaskedLM.from_config(encoder.config)
    source = Source(network, tagger.encoder.tokenizer, name, "", tagger)
    _copy_weights(encoder, source.base, f"{name}'s encoder")
    source.head = f"the LM head is new (a bundle keeps none): {_head_state(network)}"
    return source


def _copy_weights(source: nn.Module, target: nn.Module, what: str) -> None:
    """Load `source`'s weights into `target`, which must have the same names and shapes."""
    state, wanted = source.state_dict(), target.state_dict()
    missing, unexpected = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
    shapes = [k for k in set(state) & set(wanted) if state[k].shape != wanted[k].shape]
    if missing or unexpected or shapes:
        raise TagshiftError(f"{what} does not fit the masked-LM model its config builds (missing: "
                            f"{', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'}; "
                            f"other shapes: {', '.join(shapes[:5]) or 'none'})")
    target.load_state_dict(state)  # in place: a decoder tied to the embeddings stays tied


# --- the objective --------------------------------------------------------------------------


def special_pieces(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special pieces the tokenizer puts before and after a sentence ([CLS] and [SEP],
    <s> and </s>), read off a probe as the tagger's encoder reads them."""
    probe = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    word_ids, ids = probe.word_ids(0), probe["input_ids"][0]
    first, last = word_ids.index(0), len(word_ids) - 1 - word_ids[::-1].index(0)
    return ids[:first], ids[last + 1 :]


class MaskedLM:
    """The masked-LM objective over one network and its text (see `pretrain`)."""

    def __init__(self, source: Source, text: Text, options: TrainConfig, masking: MaskingConfig,
                 device: torch.device):
        from transformers import DataCollatorForLanguageModeling

        self.source, self.text, self.options, self.masking, self.device = source, text, options, masking, device
        self.network = source.network
        tokenizer = source.tokenizer
        # Whole-word masking in transformers replaces every masked piece by [MASK] (it warns and
        # sets this itself otherwise); said here so that it does not warn.
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if masking.whole_word else {}
        # The collator masks with torch's global generator, which the loop seeds at each epoch:
        # epoch k masks the same pieces whether or not the run was resumed before it.
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=masking.mlm_probability,
                                                        whole_word_mask=masking.whole_word, **replace)
        self.before, self.after = special_pieces(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.held_out = self._fixed_batches(options.seed)

    def _inputs(self, store: Pieces, batch: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Padded pieces with the special ones around each example: ids, attention mask,
        special-pieces mask (pads count as special: never masked), and character-like offsets
        that make each word a run of touching pieces, which is how the collator tells words
        apart for whole-word masking."""
        examples = [store.example(i) for i in batch]
        width = max(len(ids) for ids, _ in examples) + len(self.before) + len(self.after)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)  # (batch, pieces)
        attention = torch.zeros(len(batch), width, dtype=torch.long)
        special = torch.ones(len(batch), width, dtype=torch.long)
        offsets = torch.zeros(len(batch), width, 2, dtype=torch.long)  # (batch, pieces, start/end)
        for row, (pieces, words) in enumerate(examples):
            full = self.before + pieces + self.after
            ids[row, : len(full)] = torch.tensor(full)
            attention[row, : len(full)] = 1
            first = len(self.before)
            special[row, first : first + len(pieces)] = 0
            # piece p of word w spans [p + w, p + w + 1): a word's pieces touch, the next word is one apart
            starts = torch.arange(len(pieces)) + torch.tensor(words, dtype=torch.long)
            offsets[row, first : first + len(pieces), 0] = starts
            offsets[row, first : first + len(pieces), 1] = starts + 1
        return ids, attention, special, offsets

    def _masked(self, store: Pieces, batch: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        """A batch as the model reads it: masked ids, attention mask, labels (IGNORE where
        not masked). The collator's own padding cannot pad offsets, so it gets them padded."""
        ids, attention, special, offsets = self._inputs(store, batch)
        ids, labels = self.collator.torch_mask_tokens(ids, special_tokens_mask=special,
                                                      offset_mapping=offsets if self.masking.whole_word else None)
        return ids, attention, labels

    def _fixed_batches(self, seed: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """The held-out examples masked once, by a generator of their own seeded with `seed`
        (torch's global one is the training's): each epoch is scored on the same masked
        pieces. Batches as large as training's, whose memory they fit."""
        if not len(self.text.held_out):
            return []
        self.collator.generator = torch.Generator().manual_seed(seed)
        try:
            order = list(range(len(self.text.held_out)))
            size = self.options.batch_size
            return [self._masked(self.text.held_out, order[i : i + size]) for i in range(0, len(order), size)]
        finally:
            self.collator.generator = None  # training masks with the global generator, which the loop seeds

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        return epoch_batches(self.text.train.lengths(), self.options.batch_size, generator)

    def start_epoch(self, epoch: int) -> None:
        """Train everything, or only the LM head during the first `freeze_epochs` (a new head
        then learns before its gradients reach the encoder)."""
        frozen = epoch <= self.options.freeze_epochs
        for parameter in self.source.base.parameters():
            parameter.requires_grad_(not frozen)
        self.network.train()

    def _loss_sum(self, ids: Tensor, attention: Tensor, labels: Tensor) -> tuple[Tensor, int]:
        """Summed cross-entropy over the masked pieces, and how many there are (a short batch
        may have none: its loss is then 0, not the NaN a mean over nothing gives).

        The head's logits are computed for the masked pieces alone: the decoder over the
        vocabulary (30,522 x 384 for the MiniLM) costs more than the six encoder layers, and
        the loss reads 15% of its rows. Same loss as the whole forward pass, within rounding."""
        ids, attention = ids.to(self.device), attention.to(self.device)
        labels = labels.to(self.device)  # (batch, pieces)
        masked = labels != IGNORE
        head = self.source.lm_head
        if head is None:
            logits = self.network(input_ids=ids, attention_mask=attention).logits[masked]
        else:
            # hidden: (batch, pieces, width)
            hidden = self.source.base(input_ids=ids, attention_mask=attention).last_hidden_state
            logits = head(hidden[masked])  # (masked pieces, vocab)
        return nn.functional.cross_entropy(logits, labels[masked], reduction="sum"), int(masked.sum())

    def loss(self, batch: list[int]) -> Tensor:
        total, count = self._loss_sum(*self._masked(self.text.train, batch))
        return total / max(1, count)

    def evaluate(self) -> Evaluation | None:
        if not self.held_out:
            return None
        self.network.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.held_out:
                loss, masked = self._loss_sum(*batch)
                total, count = total + float(loss), count + masked
        mean = total / max(1, count)
        record = {"dev_loss": mean, "dev_perplexity": math.exp(min(mean, 700.0))}
        # the score is the inverse perplexity: higher is better, and in (0, 1] as the loop's start (-1) expects
        return Evaluation(math.exp(-mean), record, {**record, "masked_pieces": count})

    def save(self, path: Path, extra: dict[str, str | dict[str, Tensor]]) -> None:
        """The network (its config.json beside: the checkpoint is a model `check_out` sees)
        and the checkpoint's files, swapped in whole."""
        from safetensors.torch import save_model

        def write(tmp: Path) -> None:
            self.network.config.to_json_file(tmp / CONFIG)
            save_model(self.network, str(tmp / WEIGHTS))  # a tied decoder is stored once
            write_extra(tmp, extra)

        write_directory(path, write)

    def restore(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        try:
            load_model(self.network, path / WEIGHTS, device=str(self.device))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise TagshiftError(f"{path / WEIGHTS}: does not fit this run's model ({' '.join(str(err).split())[:200]}); "
                                "the checkpoint is damaged: start afresh without --resume") from None


# --- the run --------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    """What a run did: per-epoch history, the epoch kept and its held-out scores."""

    history: list[dict[str, Any]]
    best_epoch: int
    held_out: dict[str, Any] | None
    stopped_early: bool
    seconds: float
    head: str
    out_is_bundle: bool = False
    text: dict[str, Any] = field(default_factory=dict)


def _optimizer(source: Source, options: TrainConfig) -> torch.optim.Optimizer:
    """The encoder's parameters (the tied decoder among them) at encoder_lr, the LM head's
    others at head_lr, as `make_optimizer` groups a tagger's."""
    encoder = {id(p) for p in source.base.parameters()}
    head = [p for p in source.network.parameters() if id(p) not in encoder]
    return optimizer_of([list(source.base.parameters())], head, options)


def pretrain(
    source: Source,
    text: Text,
    options: TrainConfig,
    masking: MaskingConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    device: str | torch.device = "cpu",
    report: Callable[[str], None] = lambda text: None,
    world: World = SINGLE,
) -> PretrainResult:
    """Train `source`'s network on `text` with the masked-LM objective and leave it holding
    its best weights on the held-out sentences (the last epoch's without them).

    With `out`, each epoch writes the log, the learning curve and a checkpoint there, and the
    end writes the model: a Hugging Face masked-LM directory with the tokenizer and
    lineage.json, or, when the source is a tagger, that tagger with the pretrained encoder as
    a tagshift bundle (its head and labels as they were). `resume` continues from the
    checkpoint in `out` to the result an uninterrupted run gives. `report` hears what became
    of the LM head and what text was read, once the run starts. Under several processes
    (`world`), each masks and trains on its share of every batch; rank 0 scores and saves."""
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise TagshiftError("resume needs the output directory that holds the checkpoint")
    if options.layer_decay != 1:
        raise TagshiftError("layer_decay is a fine-tuning schedule; pretraining trains the whole encoder at one rate: "
                            "drop the option")
    if options.unfreeze != "all":
        raise TagshiftError("--unfreeze gradual is a tagging schedule; pretraining trains the whole encoder after "
                            "its frozen epochs: drop the option")
    device = usable_device(device)
    source.network.to(device)
    objective = MaskedLM(source, text, options, masking, device)
    starting = state_sha256(source.base.state_dict())
    fingerprint = {"raw text": text.record["content_sha256"], "options": asdict(options),
                   "masked-LM options": asdict(masking), "source": starting}
    run = Run.start(source.network, _optimizer(source, options))
    checkpoint = Checkpoint(out / CHECKPOINT, fingerprint) if out is not None else None
    if resume:
        checkpoint.restore(objective, run)  # type: ignore[union-attr]
    for line in (source.head, text.summary):  # once the run is sure to start: an error stays one line
        if line:
            report(line)
    title = f"masked-LM pretraining of {source.name}"
    train_with_checkpoints(objective, run, options, len(text.train), checkpoint, title, progress, world)

    state = run.state
    source.network.load_state_dict(run.best_weights)
    source.network.eval()
    result = PretrainResult(state.history, state.best_epoch, state.best_dev, run.stopped_early, state.seconds,
                            source.head, source.tagger is not None, text.record)
    step = step_record(
        "pretrain", command=command, source=source.name, source_weights_sha256=starting,
        data={"text": text.record}, objective="masked-LM", head=source.head, options=asdict(options),
        masking=asdict(masking), best_epoch=state.best_epoch, epochs_run=state.epoch,
        seconds=round(state.seconds, 1), ran_on=world.ran_on(device), held_out=state.best_dev,
    )
    if source.tagger is not None:  # the pretrained encoder goes back into the tagger
        _copy_weights(source.base, source.tagger.encoder.model, "the pretrained encoder")
        source.tagger.lineage.append(step)

    def finish() -> None:
        if out is not None:
            _save(source, out, step)
            shutil.rmtree(out / CHECKPOINT, ignore_errors=True)

    world.from_main(finish)  # rank 0 saves; its failure is every rank's
    return result


def _save(source: Source, out: Path, step: dict[str, Any]) -> None:
    """The tagger as a bundle, or the masked-LM model as a Hugging Face directory with its
    tokenizer and the lineage (safetensors and JSON only), written whole."""
    if source.tagger is not None:
        save_bundle(source.tagger, out)
        return

    def write(tmp: Path) -> None:
        source.network.save_pretrained(tmp, safe_serialization=True)
        source.tokenizer.save_pretrained(tmp)
        (tmp / LINEAGE).write_text(json.dumps([step], indent=2) + "\n", encoding="utf-8")

    with quiet_transformers():
        write_directory(out, write)


def piece_limit(source: Source, masking: MaskingConfig) -> int:
    """Pieces an example may hold besides the special ones, within the encoder's limit."""
    specials = sum(map(len, special_pieces(source.tokenizer)))
    limit = min(masking.max_length, source.network.config.max_position_embeddings,
                getattr(source.tokenizer, "model_max_length", None) or masking.max_length)
    if limit <= specials:
        raise TagshiftError(f"--max-length {masking.max_length} leaves no room for text: the encoder takes "
                            f"{specials + 1} to {source.network.config.max_position_embeddings} pieces")
    return limit - specials
