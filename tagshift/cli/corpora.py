"""Commands over corpora: `stats` and `convert`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tagshift.atomic import check_writable
from tagshift.cli.options import Format, SchemeName, app, read_options, user_errors
from tagshift.convert import convert_corpus, find_repairs, refuse_repairs
from tagshift.corpus import output_format, write_corpus
from tagshift.jobs import ReadOptions
from tagshift.labelmap import LabelMap
from tagshift.stats import corpus_stats


@app.command()
@read_options()
def stats(
    corpus: Path = typer.Argument(..., help="A column file (CoNLL, MIT Movie, ...) or JSON lines."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any entity needs repair."),
    read: ReadOptions = ReadOptions(),
) -> None:
    """Count sentences, tokens, documents and entities per type; detect the tag scheme.

    Example: tagshift stats data/wikigold/wikigold.slice.conll --json
    """
    with user_errors():
        loaded = read.read(corpus)
        result = corpus_stats(loaded)
        if strict and result.repairs:  # only then list them again, to name the first
            scheme = result.scheme.scheme
            refuse_repairs(loaded, scheme, find_repairs(loaded, scheme), f"fix them with 'tagshift convert --to {scheme}'")
        typer.echo(json.dumps(result.to_json(), indent=2) if as_json else result.render(str(corpus)))


@app.command()
@read_options()
def convert(
    source: Path = typer.Argument(..., help="Corpus to read."),
    target: Path = typer.Argument(..., help="File to write (written whole or not at all)."),
    to: Optional[SchemeName] = typer.Option(None, "--to", help="Tag scheme to write. Default: the source's."),
    from_scheme: Optional[SchemeName] = typer.Option(None, "--from", help="Source scheme, if detection should be overridden."),
    label_map: Optional[Path] = typer.Option(None, "--map", help="TOML label map: [rename], [merge], [drop]."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Output format. Default: from OUT's suffix (.jsonl/.json, .conll/.tsv/.bio), else the source's."),
    strict: bool = typer.Option(False, "--strict", help="Fail on invalid tag sequences instead of repairing them."),
    read: ReadOptions = ReadOptions(),
) -> None:
    """Convert a corpus to another tag scheme, format or label set. A report goes to stderr.

    Example: tagshift convert train.conll train.iobes --to iobes --map map.toml
    """
    with user_errors():
        check_writable(target)  # before the work, not after it
        loaded = read.read(source)
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


