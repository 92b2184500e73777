"""Commands that use a model: `evaluate`, `predict`, `info`, `labels suggest`."""

from __future__ import annotations

import contextlib
import functools
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tagshift.atomic import check_writable, write_text_atomic
from tagshift.bundle import bundle_size, describe_bundle, load, load_source, model_record
from tagshift.convert import relabel
from tagshift.labelmap import LabelMap
from tagshift.taggers.spacy_pipeline import is_spacy_source
from tagshift.taggers.hf import HUB
from tagshift.charts import plot_comparison
from tagshift.cli.options import (
    DEVICE, PREDICT_PRECISION, RUNTIME, Format, Mode, Precision, Runtime, SchemeName, app, command_line,
    load_for_prediction, read_options, user_errors,
)
from tagshift.corpus import suffix_format
from tagshift.errors import TagshiftError
from tagshift.evaluate import evaluate_corpora
from tagshift.jobs import ReadOptions
from tagshift.metrics import Scores, compare
from tagshift.lock import output_lock
from tagshift.predict import input_format_of
from tagshift.streaming import CHUNK_SENTENCES, ReadSpec, predict_stream
from tagshift.transfer.report import compare_models
from tagshift.transfer.suggest import DEFAULT_MIN_SHARE, suggest_map


def _is_model(path: Path) -> bool:
    """A model (a bundle or Hugging Face directory, hf:NAME, spacy:PIPELINE) rather than a corpus file."""
    return path.is_dir() or str(path).startswith(HUB) or is_spacy_source(path)


def _parse_groups(groups: list[str]) -> dict[str, list[str]]:
    parsed = {}
    for group in groups:
        name, sep, types = group.partition("=")
        if not sep or not name or not types:
            raise TagshiftError(f"--group '{group}' should look like old=PER,LOC,ORG")
        parsed[name] = [t for t in types.split(",") if t]
    return parsed


@app.command()
@read_options()
def evaluate(
    gold: Path = typer.Argument(..., help="Gold corpus, or a model: a directory (a bundle or a Hugging Face token classifier), hf:NAME or spacy:PIPELINE (then PRED is the gold test corpus)."),
    pred: Path = typer.Argument(..., help="Predicted corpus (same sentences as GOLD, in order), or the test corpus."),
    mode: Mode = typer.Option(Mode.conlleval, "--mode", help="conlleval: entities read as the CoNLL script does; strict: only scheme-valid entities."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Scheme for strict mode. Default: detected from gold."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A second prediction (or model) to compare with, type by type."),
    group: list[str] = typer.Option([], "--group", help="A named group of types for the comparison, e.g. old=PER,LOC (repeatable). Default with a baseline model: old = its types, new = the rest."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="With --baseline: write a per-type before/after bar chart (PNG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fractions in 0..1) instead of a table in percent."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="A label map (TOML) applied to a model's predictions before scoring, e.g. data/maps/ontonotes_to_conll.toml for a spaCy pipeline on CoNLL data."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch when a model tags the test corpus."),
    precision: Precision = PREDICT_PRECISION,
    device: str = DEVICE,
    read: ReadOptions = ReadOptions(),
) -> None:
    """Entity-level precision, recall and F1, per type, micro and macro: of PRED against GOLD,
    or of a model (a directory) on a test corpus.

    Example: tagshift evaluate test.conll predicted.conll --mode strict --json
    (or, with a model: tagshift evaluate models/ner test.conll)
    """
    with user_errors():
        model_mode = _is_model(gold)
        mapping = LabelMap.from_toml(label_map) if label_map is not None else None
        if mapping is not None and not model_mode and not (baseline is not None and _is_model(baseline)):
            raise TagshiftError("--map relabels a model's predictions: GOLD (or --baseline) must be a model; "
                                "for corpus files, map them with 'tagshift convert --map' first")
        gold_corpus = read.read(pred if model_mode else gold)
        scheme_name = scheme.value if scheme else None

        def score(source: Path) -> Scores:
            if _is_model(source):
                model = load_source(source, device, precision.value)
                predicted = model.predict_corpus(gold_corpus, batch_size)
                if mapping is not None:
                    mapping.check(model.types, what=f"{source}'s types")
                    predicted = relabel(predicted, mapping)
            else:
                predicted = read.read(source)
            return evaluate_corpora(gold_corpus, predicted, mode.value, scheme_name)

        if plot is not None:
            if baseline is None:
                raise TagshiftError("--plot draws a comparison: give --baseline too")
            check_writable(plot)
        groups = _parse_groups(group)
        if (model_mode and baseline is not None and _is_model(baseline) and not groups and mapping is None
                and not is_spacy_source(gold) and not is_spacy_source(baseline)):
            # the forgetting report: the source's types (under the adapted model's names), then the rest
            comparison = compare_models(load(gold, device, precision.value),
                                        load(baseline, device, precision.value), gold_corpus, mode.value,
                                        scheme_name, batch_size)
        else:
            system = score(gold if model_mode else pred)
            if baseline is None:
                typer.echo(json.dumps(system.to_json(), indent=2) if as_json else system.render())
                return
            comparison = compare(system, score(baseline), groups)
        typer.echo(json.dumps(comparison.to_json(), indent=2) if as_json else comparison.render())
        if plot is not None:
            plot_comparison(comparison, plot, f"{gold if model_mode else pred} vs {baseline}")
            typer.echo(f"wrote {plot}", err=True)


labels_app = typer.Typer(help="Label sets of models and corpora.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("suggest")
@read_options()
def labels_suggest(
    source: Path = typer.Argument(..., help="The trained model: a bundle or Hugging Face token-classifier directory, or hf:NAME."),
    target: Path = typer.Argument(..., help="A labelled target corpus, in its own types."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the proposed map (TOML) here; default: standard output."),
    min_share: float = typer.Option(DEFAULT_MIN_SHARE, "--min-share", help="Share of a source type's predictions that must land on one target type."),
    as_json: bool = typer.Option(False, "--json", help="Print the proposal and all the evidence as JSON instead."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch."),
    device: str = DEVICE,
    read: ReadOptions = ReadOptions(),
) -> None:
    """Propose a source -> target type map from the source's predictions on TARGET, with
    the evidence, in the label-map format that 'adapt --map' reads.

    Example: tagshift labels suggest models/news politics.conll --out politics.map.toml
    """
    with user_errors():
        if not 0 < min_share <= 1:
            raise TagshiftError(f"--min-share {min_share} should lie in (0, 1]")
        if out is not None:
            check_writable(out)  # before the tagging, not after it
        tagger = load_source(source, device)
        corpus = read.read(target)
        suggestion = suggest_map(tagger, corpus, min_share, batch_size)
        if as_json:
            typer.echo(json.dumps(suggestion.to_json(), indent=2))
            return
        text = suggestion.to_toml(command_line() if out else "")
        if out is None:
            typer.echo(text, nl=False)
            return
        write_text_atomic(out, text)
        typer.echo(f"wrote {out}: {len(suggestion.mapping)} of {len(suggestion.evidence.predicted)} predicted types mapped", err=True)


class InputFormat(str, Enum):
    auto = "auto"
    conll = "conll"
    jsonl = "jsonl"
    text = "text"
    raw = "raw"


@app.command()
@read_options("token_col", "max_tokens", "encoding")
def predict(
    model: Path = typer.Argument(..., help="A bundle or Hugging Face token-classifier directory, or hf:NAME."),
    input_file: Path = typer.Argument(..., help="A corpus (column file or JSONL), tokenised JSONL, text (a sentence a line), or raw text: a PDF, or a directory of text, JSONL and PDF files (--input-format raw for one text file)."),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (atomically: it grows as OUT.partial, renamed to OUT at the end). Default: standard output."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="conll, jsonl (tokens, tags, entities with confidence) or spans (text, character spans). Default: from --out's suffix, else jsonl for text and raw text and the input's format otherwise."),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--input-format", help="How to read INPUT; auto tells JSON, columns and prose apart, and reads a PDF or a directory as raw: documents (text, {\"text\"} JSONL, PDF) split into sentences, as weak-label reads them."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Tag scheme of the output. Default: the model's."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch."),
    workers: int = typer.Option(1, "--workers", help="Processes that tag at once, each with the model loaded and its share of the CPU threads; the output keeps the input's order."),
    chunk_size: int = typer.Option(CHUNK_SENTENCES, "--chunk-size", help="Sentences (lines, for text and JSONL) read, tagged and written at a time: memory holds about twice --workers chunks, whatever the input's size."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same --out: the chunks it wrote are kept, the rest are tagged."),
    precision: Precision = PREDICT_PRECISION,
    device: str = DEVICE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (over the input's bytes; over sentences for raw text)."),
    runtime: Runtime = RUNTIME,
    read: ReadOptions = ReadOptions(),
) -> None:
    """Tag a corpus or raw text with a trained model, a chunk at a time: inputs larger than
    memory stream through, on --workers processes, and an interrupted run into --out resumes.

    Example: tagshift predict models/ner news.txt --format spans --out news.entities.jsonl --workers 2
    """
    with user_errors():
        if chunk_size < 1:
            raise TagshiftError(f"--chunk-size {chunk_size}: give 1 or more")
        if out is not None:
            check_writable(out)  # before the tagging, not after it
        read_as = input_format_of(input_file, input_format.value, read.encoding)
        default = "conll" if read_as == "conll" else "jsonl"
        chosen = fmt.value if fmt else (suffix_format(out, default) if out and out.suffix else default)
        spec = ReadSpec(str(input_file), read_as, chosen, scheme.value if scheme else None, batch_size, read.encoding,
                        read.max_tokens, read.token_col)
        load = functools.partial(load_for_prediction, model, runtime, device, precision.value)
        with output_lock(out, "tagshift predict") if out is not None else contextlib.nullcontext():
            result = predict_stream(load, spec, out, lambda text: typer.echo(text, nl=False), workers, resume,
                                    progress and out is not None, chunk_size, model)
        if result.raw is not None:
            typer.echo(result.raw.render(), err=True)
        if out is not None:
            again = f" (resumed after {result.resumed_chunks} of {result.chunks} chunks)" if result.resumed_chunks else ""
            typer.echo(f"tagged {result.sentences} {'lines' if read_as == 'text' else 'sentences'} ({read_as}): "
                       f"{result.entities} entities; wrote {out} ({chosen}){again}", err=True)


@app.command()
def info(
    model: Path = typer.Argument(..., help="A bundle or Hugging Face token-classifier directory, or hf:NAME."),
    as_json: bool = typer.Option(False, "--json", help="Print the config and lineage as JSON."),
) -> None:
    """What a model bundle is: backend, labels, scheme, where it came from and its scores.

    Example: tagshift info models/ner
    """
    with user_errors():
        fields, lineage = model_record(model)
        if as_json:
            size = bundle_size(model) if Path(model).is_dir() else None
            typer.echo(json.dumps({"config": fields, "lineage": lineage, "bytes": size}, indent=2))
            return
        typer.echo(describe_bundle(model, fields, lineage))


