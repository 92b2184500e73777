"""What the commands share: the app, the one-line error handling, and options declared once
(corpus read options as one group, handed to a command as `ReadOptions`)."""

from __future__ import annotations

import functools
import inspect
import os
import shlex
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from tagshift.corpus.columns import MAX_SENTENCE_TOKENS
from tagshift.errors import TagshiftError
from tagshift.jobs import ReadOptions
from tagshift.schemes import SCHEMES
from tagshift.taggers.backends import BACKENDS
from tagshift.taggers.tagger import PRECISIONS
from tagshift.taggers.transformer import DEFAULT_ENCODER
from tagshift.training.world import World, end_world, is_peer_loss, peer_lost, start_world

app = typer.Typer(
    help="Transfer learning for named entity recognition: corpora, tag schemes, label maps, taggers, scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SchemeName = Enum("SchemeName", {name: name for name in SCHEMES}, type=str)  # type: ignore[misc]
BackendName = Enum("BackendName", {name: name for name in BACKENDS}, type=str)  # type: ignore[misc]
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]


class Mode(str, Enum):
    conlleval = "conlleval"
    strict = "strict"


class Format(str, Enum):
    conll = "conll"
    jsonl = "jsonl"
    spans = "spans"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors the user can fix into one line on stderr and exit code 1."""
    try:
        yield
    except (TagshiftError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@contextmanager
def launched(device: str) -> Iterator[tuple[World, str]]:
    """The processes of this run (torchrun's or accelerate's ranks, or this one alone) and
    this rank's device; under several, every error line says which rank it comes from, and a
    rank whose peers are gone says so instead of printing torch's traceback."""
    world, device = start_world(device)
    finished = False
    try:
        yield world, device
        finished = True
    except TagshiftError as err:
        if world.distributed and not str(err).startswith(world.where()):
            raise TagshiftError(f"{world.where()}{err}") from None
        raise
    except RuntimeError as err:
        if not (world.distributed and is_peer_loss(err)):
            raise
        raise peer_lost(world, err) from None
    finally:
        end_world(world, finished)
    if world.distributed and finished:
        # A finished rank has nothing left to do, and gloo's threads can abort it in the
        # interpreter's teardown ("terminate called without an active exception", exit -6,
        # seen about once in many test-suite runs under load, everything already saved):
        # leave without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def command_line() -> str:
    """The command as typed, for the lineage."""
    return shlex.join(["tagshift", *sys.argv[1:]])


# How every command reads corpora: one group of options, added by `read_options`.
READ_OPTIONS: dict[str, tuple[Any, Any]] = {
    "token_col": (Optional[int], typer.Option(None, "--token-col", help="Token column (0-based; negative counts from the end). Detected if not given.")),
    "tag_col": (Optional[int], typer.Option(None, "--tag-col", help="Tag column (0-based; negative counts from the end). Detected if not given.")),
    "max_tokens": (int, typer.Option(MAX_SENTENCE_TOKENS, "--max-tokens", help="Longest sentence accepted, in tokens.")),
    "encoding": (str, typer.Option("utf-8", "--encoding", help="Text encoding of the input files.")),
}


def read_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the corpus read options (all, or those `names`), after its own, and
    hand them to it as one `read: ReadOptions` argument."""
    chosen = names or tuple(READ_OPTIONS)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "read"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=READ_OPTIONS[name][1],
                                   annotation=READ_OPTIONS[name][0]) for name in chosen]

        @functools.wraps(command)
        def with_read(**kwargs: Any) -> Any:
            read = ReadOptions(**{name: kwargs.pop(name) for name in chosen})
            return command(read=read, **kwargs)

        with_read.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        with_read.__annotations__ = {**command.__annotations__, **{n: READ_OPTIONS[n][0] for n in chosen}}
        return with_read

    return decorate


# Options `train` and `adapt` share.
TRAIN_BATCH_SIZE = typer.Option(None, "--batch-size", help="Sentences per batch.")
SEED = typer.Option(None, "--seed", help="Random seed: the same seed gives the same model.")
RESUME = typer.Option(False, "--resume", help="Continue the interrupted run in --out from its last checkpoint.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a model already in --out.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
PATIENCE = typer.Option(None, "--patience", help="Early stopping: end training after N epochs (dev scorings, with --dev-every) without a better dev F1, once min_steps optimiser steps have run; 0 never stops early. Default: the family's (5 for the BiLSTM-CRF, 0 for transformers).")
DEV_EVERY = typer.Option(None, "--dev-every", help="Score dev every N optimiser steps (at the end of the epoch that crosses each multiple, and after the last epoch) instead of after every epoch; --patience then counts scorings. For a small training set, whose epochs make a few steps. Default: every epoch.")
DEV_SAMPLE = typer.Option(None, "--dev-sample", help="Score N dev sentences (a fixed draw from --seed) after each epoch to choose the best; the epoch chosen is then scored on all of dev. Default: all, every epoch.")
LAYER_DECAY = typer.Option(None, "--layer-decay", help="Layer-wise rate decay: each encoder layer down trains at this share of the rate of the one above (0.8-0.95 is usual for transformers; default 1: one rate).")
MAX_MINUTES = typer.Option(None, "--max-minutes", help="A time budget: once training has run this long, the epoch under way ends, is scored and is the last (the best epoch is still the one saved).")
# The new model's options: `train`'s, and `adapt`'s for the model a spaCy pipeline teaches (--backend)
ENCODER = typer.Option(None, "--encoder", help=f"Transformer: HF model name or local path (default {DEFAULT_ENCODER}, shipped as a package).")
VECTORS = typer.Option(None, "--vectors", help="BiLSTM-CRF: word vectors: glove (GloVe 6B 50d, the 'glove' extra), a GloVe/word2vec text file, spacy:PACKAGE or hf:MODEL.")
FREEZE_VECTORS = typer.Option(None, "--freeze-vectors/--train-vectors", help="BiLSTM-CRF: keep the word vectors as loaded (default when --vectors is given: +2 F1 and 3x faster on CoNLL) or train them.")
MAX_VECTORS = typer.Option(None, "--max-vectors", min=0, help="BiLSTM-CRF: the most frequent words of --vectors that join the vocabulary beside the corpus words (default 400000, all of GloVe 6B; lower it for large vector files).")
PRECISION_HELP = ("How the network computes: fp32, or bf16 (matrix products in bfloat16; weights stay fp32): "
                  "faster on CPUs with bf16 instructions (AVX512-BF16, AMX; bench/speed.py measures it), slower on others.")
TRAIN_PRECISION = typer.Option(None, "--precision", help=PRECISION_HELP + " Default fp32; dev scoring uses the same.")
PREDICT_PRECISION = typer.Option(Precision("fp32"), "--precision", help=PRECISION_HELP)
DEVICE = typer.Option("cpu", "--device", help="Where the network runs: cpu, cuda, cuda:N (a GPU) or mps (Apple). Models save and load the same on any device.")


class Runtime(str, Enum):
    torch = "torch"
    onnx = "onnx"


RUNTIME = typer.Option(Runtime.torch, "--runtime", help="torch: the model in torch; onnx: MODEL is a directory 'tagshift export --format onnx' wrote, run by onnxruntime on the CPU.")


def load_for_prediction(model: str | Path, runtime: Runtime, device: str, precision: str) -> Any:
    """What predict and serve tag with: the model in torch (a bundle, an HF classifier, a spaCy
    pipeline), or an ONNX export run by onnxruntime."""
    from tagshift.bundle import load_source
    from tagshift.taggers.onnx_runtime import is_onnx_export, load_onnx

    if runtime is Runtime.torch and is_onnx_export(model):
        raise TagshiftError(f"{model} is an ONNX export: tag it with --runtime onnx")
    if runtime is Runtime.onnx:
        return load_onnx(model, device, precision)
    return load_source(model, device, precision)
