"""The `Tagger`: the model. An encoder and a head, the labels they score and the scheme of
those labels; it computes emissions, decodes them and predicts.

Every family shares this class; they differ only in their encoder (`tagger.backend` is the
family's record, taggers/backends.py). The transfer layer works on `tagger.encoder` (freeze,
unfreeze) and `tagger.head` (swap, extend rows), and training on `tagger.network`, so nothing
here knows which family it holds. Saving and loading live in bundle.py, training in
training/: the model imports neither.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from tagshift.errors import SchemeError, TagshiftError
from tagshift.progress import progress_bar
from tagshift.schemes import Span, check_model_scheme, chunks, split_tag
from tagshift.taggers.guide import Guide
from tagshift.taggers.heads import IGNORE, CRFHead, MappingHead, SoftmaxHead

if TYPE_CHECKING:
    from tagshift.corpus import Corpus

# How the network computes (not how weights are stored: they stay fp32). bf16 runs the
# matrix products in bfloat16 under autocast: faster on CPUs with bf16 instructions
# (AVX512-BF16, AMX; bench/speed.py measures it), slower on CPUs without them.
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Entity:
    """A predicted entity over tokens [start, end), with the model's confidence in it: the
    lowest probability the model gives any of its tags (marginals under a CRF); None when
    prediction was asked to skip confidences."""

    start: int
    end: int
    label: str
    confidence: float | None


@dataclass(frozen=True)
class Tagged:
    """One sentence as the tagger sees it."""

    tokens: list[str]
    tags: list[str]
    entities: list[Entity]

    @property
    def spans(self) -> list[Span]:
        return [Span(e.start, e.end, e.label) for e in self.entities]


class Network(nn.Module):
    """The trainable part: encoder then head. `forward` gives emissions (batch, words, tags)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, batch: Any) -> Tensor:
        return self.head(self.encoder(batch))


def usable_device(name: str | torch.device) -> torch.device:
    """`name` as a torch device this machine has, or an error that says what it has."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TagshiftError(f"'{name}' is not a torch device; give cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TagshiftError(f"device '{name}': torch {torch.__version__} sees no CUDA GPU here; use cpu (--device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise TagshiftError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TagshiftError(f"device '{name}': torch sees no Apple GPU (MPS) here; use cpu (--device cpu)")
    return device


def _to(batch: Any, device: torch.device) -> Any:
    """A featurised batch (a dataclass of tensors) on `device`."""
    return type(batch)(**{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)})


class Tagger:
    """A trained (or trainable) NER model: `predict` tags sentences. It is the one home of
    where the network runs (`to`) and how it computes (`precision`): training and prediction
    use them as set and leave them so."""

    def __init__(
        self,
        backend: Any,  # the family's record (taggers/backends.py's Backend, which imports this module)
        config: Any,  # the family's config dataclass (backend.config_class)
        labels: list[str],
        scheme: str,
        network: Network,
        lineage: list[dict[str, Any]] | None = None,
        guide: Guide | None = None,
    ):
        check_model_scheme(scheme)
        if network.head.num_tags != len(labels):
            raise TagshiftError(f"the head scores {network.head.num_tags} tags but {len(labels)} labels were given")
        self.backend = backend
        self.config = config
        self.labels = list(labels)
        self.scheme = scheme
        self.network = network
        self.lineage = list(lineage or [])
        # a frozen source whose tag probabilities the encoder reads (`adapt --labels stack`)
        self.guide = guide
        self.device = torch.device("cpu")
        self._precision = "fp32"

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise TagshiftError(f"precision '{value}' is not one of {', '.join(PRECISIONS)}")
        self._precision = value

    @property
    def encoder(self) -> nn.Module:
        return self.network.encoder

    @property
    def head(self) -> CRFHead | SoftmaxHead | MappingHead:
        return self.network.head

    def fold_head(self) -> None:
        """Turn a mapping head into the plain head it equals (the same predictions)."""
        if isinstance(self.head, MappingHead):
            self.network.head = self.head.fold()

    @property
    def types(self) -> list[str]:
        """Entity types the tagger knows, sorted."""
        return sorted({split_tag(label)[1] for label in self.labels} - {""})

    def to(self, device: str | torch.device) -> Tagger:
        """Move the network to `device` (cpu, cuda, cuda:1, mps); where it trains and tags."""
        self.device = usable_device(device)
        self.network.to(self.device)
        if self.guide is not None:
            self.guide.to(self.device)
        return self

    # --- data to tensors ------------------------------------------------------------

    def featurize(self, sentences: Sequence[list[str]]) -> Any:
        if any(len(s) == 0 for s in sentences):
            raise TagshiftError("an empty sentence cannot be tagged; drop it first")
        guide = () if self.guide is None else (self.guide.features(sentences),)  # (a stacked model's input)
        return _to(self.encoder.featurize(list(sentences), *guide), self.device)

    def gold_indices(self, tag_sequences: Sequence[Sequence[str]]) -> Tensor:
        """(batch, words) label indices, IGNORE past each sentence's end; tags must be known."""
        index = {label: i for i, label in enumerate(self.labels)}
        width = max(len(t) for t in tag_sequences)
        gold = torch.full((len(tag_sequences), width), IGNORE, dtype=torch.long)
        for b, tags in enumerate(tag_sequences):
            for w, tag in enumerate(tags):
                if tag not in index:
                    raise SchemeError(
                        f"tag '{tag}' is not one of the model's labels ({', '.join(self.labels)}); "
                        "its type is new to the model: adapt it with 'tagshift adapt'"
                    )
                gold[b, w] = index[tag]
        return gold.to(self.device)

    def emissions(self, sentences: Sequence[list[str]]) -> tuple[Tensor, Tensor]:
        """Tag scores (batch, words, tags) and the mask of real words (batch, words)."""
        batch = self.featurize(sentences)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            scores = self.network(batch)
        return scores.float(), batch.mask  # the CRF and the losses always work in fp32

    def loss(self, sentences: Sequence[list[str]], gold: Tensor) -> Tensor:
        """Training loss of a batch; `gold` as `gold_indices` gives it, or a partial-label mask."""
        emissions, mask = self.emissions(sentences)
        return self.head.loss(emissions, gold, mask)

    # --- prediction -----------------------------------------------------------------

    def predict_batch(self, sentences: Sequence[list[str]], confidence: bool = True) -> list[Tagged]:
        """Tags, entities and (unless `confidence` is False) confidences for one batch."""
        # Prediction runs in eval mode (no dropout). Only the modules in training mode are
        # switched, and switched back after: `fit` scores dev mid-training and must find its
        # modes as it left them. A loaded model is in eval mode, so predicting writes no module
        # state and threads may predict with it at once (switching and restoring shared flags
        # would let one thread run another's prediction with dropout on).
        training = [module for module in self.network.modules() if module.training]
        for module in training:
            module.training = False  # what `eval()` sets, one module at a time
        try:
            with torch.no_grad():
                decoded = self.head.decode(*self.emissions(sentences), confidence)
        finally:
            for module in training:
                module.training = True
        probabilities = decoded.probabilities.cpu() if decoded.probabilities is not None else None
        results = []
        for b, (tokens, path) in enumerate(zip(sentences, decoded.paths)):
            tags = [self.labels[i] for i in path]
            if probabilities is None:
                entities = [Entity(span.start, span.end, span.label, None) for span in chunks(tags)]
            else:
                chosen = probabilities[b, torch.arange(len(path)), torch.tensor(path)].tolist()
                entities = [
                    Entity(span.start, span.end, span.label, min(chosen[span.start : span.end]))
                    for span in chunks(tags)
                ]
            results.append(Tagged(list(tokens), tags, entities))
        return results

    def predict(
        self, sentences: Sequence[list[str]], batch_size: int = 32, progress: bool = False, confidence: bool = True
    ) -> list[Tagged]:
        """Tag sentences (lists of tokens), in batches of similar length; results in input order.
        `confidence=False` skips the entity confidences (faster with a CRF head)."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        results: list[Tagged | None] = [None] * len(sentences)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for indices in progress_bar(batches, "tagging", enabled=progress, unit="batch"):
            for i, tagged in zip(indices, self.predict_batch([sentences[i] for i in indices], confidence)):
                results[i] = tagged
        return results  # type: ignore[return-value]

    def predict_corpus(self, corpus: Corpus, batch_size: int = 32, progress: bool = False) -> Corpus:
        """The corpus with the model's tags in place of its own."""
        tagged = self.predict([s.tokens for s in corpus.sentences], batch_size, progress, confidence=False)
        return corpus.with_sentences([s.with_tags(t.tags) for s, t in zip(corpus.sentences, tagged)])

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.network.parameters()

    def describe(self) -> str:
        guided = (f", reading the tag probabilities{' and states' if self.guide.states else ''} of a guide with "
                  f"{len(self.guide.tagger.types)} types") if self.guide is not None else ""
        return (f"{self.backend.name} ({self.config.encoder_name()}, {type(self.head).__name__}), "
                f"{len(self.types)} types in {self.scheme}{guided}")
