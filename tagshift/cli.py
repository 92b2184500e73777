"""The `tagshift` command. Each command parses its options and calls the library; errors the
user can fix are printed as one line (`error: file:line: what, and the fix`) with exit code 1."""

from __future__ import annotations

import json
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import typer

from tagshift import __version__
from tagshift.convert import convert_corpus, find_repairs, refuse_repairs
from tagshift.corpus import Corpus, output_format, read_corpus, write_corpus
from tagshift.corpus.columns import MAX_SENTENCE_TOKENS
from tagshift.errors import TagshiftError
from tagshift.evaluate import evaluate_corpora
from tagshift.labelmap import LabelMap
from tagshift.metrics import Scores, compare
from tagshift.schemes import SCHEMES
from tagshift.stats import corpus_stats

app = typer.Typer(
    help="Transfer learning for named entity recognition: corpora, tag schemes, label maps, scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SchemeName = Enum("SchemeName", {name: name for name in SCHEMES}, type=str)  # type: ignore[misc]


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


TOKEN_COL = typer.Option(None, "--token-col", help="Token column (0-based; negative counts from the end). Detected if not given.")
TAG_COL = typer.Option(None, "--tag-col", help="Tag column (0-based; negative counts from the end). Detected if not given.")
MAX_TOKENS = typer.Option(MAX_SENTENCE_TOKENS, "--max-tokens", help="Longest sentence accepted, in tokens.")
ENCODING = typer.Option("utf-8", "--encoding", help="Text encoding of the input files.")


def _read(path: Path, token_col: Optional[int], tag_col: Optional[int], max_tokens: int, encoding: str) -> Corpus:
    return read_corpus(path, token_col=token_col, tag_col=tag_col, max_tokens=max_tokens, encoding=encoding)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagshift {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Transfer learning for named entity recognition."""


@app.command()
def stats(
    corpus: Path = typer.Argument(..., help="A column file (CoNLL, MIT Movie, ...) or JSON lines."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any entity needs repair."),
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Count sentences, tokens, documents and entities per type; detect the tag scheme.

    Example: tagshift stats data/wikigold/wikigold.slice.conll --json
    """
    with user_errors():
        loaded = _read(corpus, token_col, tag_col, max_tokens, encoding)
        result = corpus_stats(loaded)
        if strict and result.repairs:  # only then list them again, to name the first
            scheme = result.scheme.scheme
            refuse_repairs(loaded, scheme, find_repairs(loaded, scheme), f"fix them with 'tagshift convert --to {scheme}'")
        typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.render(str(corpus)))


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Corpus to read."),
    target: Path = typer.Argument(..., help="File to write (written whole or not at all)."),
    to: Optional[SchemeName] = typer.Option(None, "--to", help="Tag scheme to write. Default: the source's."),
    from_scheme: Optional[SchemeName] = typer.Option(None, "--from", help="Source scheme, if detection should be overridden."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="TOML label map: [rename], [merge], [drop]."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Output format. Default: from OUT's suffix (.jsonl/.json, .conll/.tsv/.bio), else the source's."),
    strict: bool = typer.Option(False, "--strict", help="Fail on invalid tag sequences instead of repairing them."),
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Convert a corpus to another tag scheme, format or label set. A report goes to stderr.

    Example: tagshift convert train.conll train.iobes --to iobes --map map.toml
    """
    with user_errors():
        loaded = _read(source, token_col, tag_col, max_tokens, encoding)
        mapping = LabelMap.from_toml(label_map) if label_map is not None else None
        converted, report = convert_corpus(
            loaded,
            to=to.value if to else None,
            label_map=mapping,
            strict=strict,
            source_scheme=from_scheme.value if from_scheme else None,
        )
        out_format = fmt.value if fmt else output_format(loaded, target)
        write_corpus(converted, target, out_format)
        for line in report.lines():
            typer.echo(line, err=True)
        typer.echo(f"wrote {len(converted)} sentences to {target} ({out_format})", err=True)


def _parse_groups(groups: list[str]) -> dict[str, list[str]]:
    parsed = {}
    for group in groups:
        name, sep, types = group.partition("=")
        if not sep or not name or not types:
            raise TagshiftError(f"--group '{group}' should look like old=PER,LOC,ORG")
        parsed[name] = [t for t in types.split(",") if t]
    return parsed


@app.command()
def evaluate(
    gold: Path = typer.Argument(..., help="Gold corpus."),
    pred: Path = typer.Argument(..., help="Predicted corpus: the same sentences and tokens, in order."),
    mode: Mode = typer.Option(Mode.conlleval, "--mode", help="conlleval: entities read as the CoNLL script does; strict: only scheme-valid entities."),
    scheme: Optional[SchemeName] = typer.Option(None, "--scheme", help="Scheme for strict mode. Default: detected from gold."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A second prediction to compare with, type by type."),
    group: list[str] = typer.Option([], "--group", help="A named group of types for the comparison, e.g. old=PER,LOC (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fractions in 0..1) instead of a table in percent."),
    token_col: Optional[int] = TOKEN_COL,
    tag_col: Optional[int] = TAG_COL,
    max_tokens: int = MAX_TOKENS,
    encoding: str = ENCODING,
) -> None:
    """Entity-level precision, recall and F1 of PRED against GOLD, per type, micro and macro.

    Example: tagshift evaluate test.conll predicted.conll --mode strict --json
    """
    with user_errors():
        gold_corpus = _read(gold, token_col, tag_col, max_tokens, encoding)
        scheme_name = scheme.value if scheme else None

        def score(path: Path) -> Scores:
            return evaluate_corpora(
                gold_corpus, _read(path, token_col, tag_col, max_tokens, encoding), mode.value, scheme_name
            )

        system = score(pred)
        if baseline is None:
            typer.echo(json.dumps(system.to_json(), indent=2) if as_json else system.render())
            return
        comparison = compare(system, score(baseline), _parse_groups(group))
        typer.echo(json.dumps(comparison.to_json(), indent=2) if as_json else comparison.render())


def main() -> None:
    app()
