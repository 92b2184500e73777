"""The model families tagshift can build, save, load, train and adapt, declared as data.

One `Backend` record per family: its config class, how a new encoder is built, how the
encoder's own files are saved and loaded, its default scheme, its training defaults and
adapt's rate factor. This is the only module that knows the families by name; everything
else reads a record (`get_backend(name)`, or `tagger.backend`). A new family is one module
(its encoder, config dataclass and the functions below) plus one entry in `BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tagshift.convert import entity_labels
from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.schemes import check_model_scheme, label_set
from tagshift.taggers import bilstm, transformer
from tagshift.taggers.guide import Guide
from tagshift.taggers.heads import make_head
from tagshift.taggers.tagger import Network, Tagger


@dataclass(frozen=True)
class Backend:
    """A model family: what differs between families, and nothing else."""

    name: str
    config_class: type  # the dataclass of the family's model options (`[model]` in a job file)
    # (config, training corpus, seed, extra corpus) -> an untrained encoder for that data
    new_encoder: Callable[[Any, Corpus, int, Corpus | None], nn.Module]
    save_files: Callable[[Any, Path], None]  # the encoder's files beside the weights (vocabulary, tokenizer)
    load_encoder: Callable[[Any, Path], nn.Module]  # an encoder shaped as a bundle saved it
    default_scheme: str
    training: dict[str, Any]  # TrainConfig values that differ from its defaults
    # adapt trains the head at training's rate times this (the encoder at a tenth of the head's)
    adapt_head_lr_factor: float = 1.0
    # the layer decay adapt's recipe gives a new domain (transfer/recipe.py); None: none
    new_domain_layer_decay: float | None = None
    # the epochs the recipe trains a new domain's head alone before the encoder joins in
    # (at most a quarter of training's); None: none
    new_domain_head_epochs: int | None = None
    # the recipe scores a dev set larger than the training set every ceil(dev / train) epochs
    # (training.dev_every_for) instead of after each
    new_domain_sparse_dev: bool = False
    head_dropout: Callable[[Any], float] = lambda encoder: 0.0
    # weight-name prefixes saved under other names (a transformer's, so Hugging Face loads them)
    saved_prefixes: Callable[[Any], dict[str, str]] = lambda encoder: {}
    # the encoder's part of config.json and whether Hugging Face can load the bundle; None: the
    # config holds the tagshift section alone
    hf_config: Callable[[Any, list[str], bool], tuple[dict[str, Any], bool]] | None = None
    grows_vocabulary: bool = False  # adapt can add the target's words to the encoder
    # model options older bundles lack, with the value those bundles were made with
    legacy_options: dict[str, Any] = field(default_factory=dict)
    derived_options: tuple[str, ...] = ()  # model options the build sets from the data (not the user's to compare)

    def new_config(self, **options: Any) -> Any:
        """The family's model options, checked, with a one-line error naming the bad ones."""
        try:
            return self.config_class(**options)
        except (TypeError, ValueError) as err:
            raise TagshiftError(f"{self.name} model options: {err}") from None

    def build(
        self, config: Any, train: Corpus, scheme: str | None = None, seed: int = 0, extra: Corpus | None = None,
        types: list[str] | None = None, guide: Guide | None = None,
    ) -> Tagger:
        """A new, untrained tagger for the entity types of `train` (or `types`, when a teacher
        brings some the data may not show), tagging in `scheme` (the family's default when
        None). `extra` words may join a vocabulary (see the family). `guide`: a frozen tagger
        whose tag probabilities the encoder reads (`adapt --labels stack`; sets the config's
        `guide_labels`)."""
        scheme = scheme or self.default_scheme
        check_model_scheme(scheme)
        if guide is not None and not self.takes_guide:
            raise TagshiftError(f"--labels stack builds a model that reads the source's tag probabilities, which a "
                                f"{self.name} cannot; use --labels map (adapt's choice for a new domain)")
        if self.takes_guide:
            if guide is None and config.guide_labels:
                raise TagshiftError("model option guide_labels is set by 'tagshift adapt --labels stack', with the "
                                    "source it names: remove it from the model options")
            config.guide_labels = list(guide.labels) if guide is not None else []
            config.guide_states = guide.state_size if guide is not None else 0
        torch.manual_seed(seed)
        encoder = self.new_encoder(config, train, seed, extra)
        labels = label_set(types if types is not None else entity_labels(train), scheme)
        head = make_head(config.head, encoder.output_dim, labels, scheme, self.head_dropout(encoder))
        return Tagger(self, config, labels, scheme, Network(encoder, head), guide=guide)

    @property
    def takes_guide(self) -> bool:
        """Whether the family's encoder can read a guide's tag probabilities (built so, or
        given one later by its `add_guide`, as `adapt --guide` does)."""
        return any(f.name == "guide_labels" for f in fields(self.config_class))

    def unguided(self, config: Any) -> Any:
        """`config` for the same model reading no guide (a stacked model's target-only control)."""
        return replace(config, guide_labels=[], guide_states=0) if self.takes_guide else config


BILSTM_CRF = Backend(
    name="bilstm-crf",
    config_class=bilstm.BiLSTMConfig,
    new_encoder=bilstm.new_encoder,
    save_files=bilstm.save_files,
    load_encoder=bilstm.load_encoder,
    default_scheme="iobes",
    training={},  # TrainConfig's defaults are the BiLSTM-CRF's (Adam, 2e-3, up to 30 epochs)
    grows_vocabulary=True,
    legacy_options={"freeze_vectors": False},
    derived_options=("word_dim",),  # the vectors' size, when vectors are given  # saved before the option existed, they trained their vectors
)

TRANSFORMER = Backend(
    name="transformer",
    config_class=transformer.TransformerConfig,
    new_encoder=transformer.new_encoder,
    save_files=transformer.save_files,
    load_encoder=transformer.load_encoder,
    default_scheme="iob2",
    # the BERT recipe: AdamW, warm-up then linear decay, few epochs
    training=dict(epochs=4, batch_size=16, optimizer="adamw", lr=5e-5, weight_decay=0.01, clip=1.0,
                  warmup=0.1, decay="linear", patience=0),
    # 5e-5 is an encoder's rate: a new head at that rate needs thousands of steps, where a
    # small target gives tens (on CrossNER politics a fresh head had not learnt a type after
    # 4 epochs), so adapt trains the head at ten times that rate and the encoder at it
    adapt_head_lr_factor=10.0,
    # bench/crossner.py, 3 seeds on CrossNER's five domains against the target alone: layer decay
    # 0.5 alone +0.94; with the head alone for 5 of 20-36 epochs first +1.66; decay 0.7 with the
    # head first +2.54, ahead on every domain (the lower layers livelier once the head has learnt)
    new_domain_layer_decay=0.7,
    new_domain_head_epochs=5,
    # bench/crossner.py, pair by pair with the recipe above on CrossNER (3 seeds): adapt time from
    # 0.124 of the source's training to 0.097, test F1 60.46 against 60.51 (each epoch trains
    # the same; the best is chosen among fewer)
    new_domain_sparse_dev=True,
    head_dropout=transformer.head_dropout,
    saved_prefixes=transformer.saved_prefixes,
    hf_config=transformer.hf_config,
)

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (BILSTM_CRF, TRANSFORMER)}


def get_backend(name: str | Backend) -> Backend:
    """The family called `name` (a record passes through), or an error that lists them.

    >>> get_backend("transformer").default_scheme
    'iob2'
    """
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise TagshiftError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]
