"""`tagshift annotate`: people annotate or correct sentences in the browser (`tagshift annotate
INPUT ...`, the same as `tagshift annotate serve INPUT ...`), and `tagshift annotate export`
writes the accepted answers as a corpus.

`annotate` is a group of two commands, `serve` and `export`, where a first argument that is
not a command's name is INPUT of `serve`: so both `tagshift annotate news.txt --labels ...`
and `tagshift annotate export --db ...` read as the issue writes them. (A file named `export`
or `serve` is given as `./export`.)"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import click
import typer
from typer.core import TyperGroup

from tagshift.atomic import check_writable
from tagshift.cli.options import app, command_line, user_errors
from tagshift.errors import TagshiftError
from tagshift.lock import output_lock


class ServeByDefault(TyperGroup):
    """A group whose first argument, when it names none of its commands, goes to `serve`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["serve", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=ServeByDefault,
    no_args_is_help=True,
    help="Annotate or correct sentences in the browser (tagshift annotate INPUT --labels ... --db ...), "
         "and export the accepted answers (tagshift annotate export --db ... --out ...). docs/annotate.md",
)
app.add_typer(annotate_app, name="annotate")


class Order(str, Enum):
    input = "input"
    uncertain = "uncertain"


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    conll = "conll"


@annotate_app.command("serve")
def serve_command(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Raw text (.txt, .jsonl of {\"text\"}, PDF, or a directory of them), or a corpus (CoNLL, JSONL with spans) whose spans are suggested, to correct."),
    labels: str = typer.Option(..., "--labels", help="The entity types to annotate, comma-separated (keys 1-9 pick the first nine): PER,ORG,LOC."),
    db: Path = typer.Option(..., "--db", help="The SQLite file answers are written to, each as it is given (made if missing; a restart continues where each annotator left off)."),
    model: Optional[str] = typer.Option(None, "--model", help="A model whose entities are suggested: a bundle, a Hugging Face token classifier, or spacy:PACKAGE."),
    patterns: Optional[list[Path]] = typer.Option(None, "--patterns", help="spaCy EntityRuler JSONL patterns whose matches are suggested (they win over a model entity they overlap); repeat for several files."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; anyone who can reach it can annotate)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    order: Order = typer.Option(Order.input, "--order", help="input: in the input's order; uncertain: the sentences the model is least sure of first (lowest entity confidence; those without suggestions last). Needs --model."),
    device: str = typer.Option("cpu", "--device", help="Where --model runs: cpu, cuda, cuda:N or mps."),
) -> None:
    """Serve a page where people annotate INPUT's sentences, one at a time, with suggestions.

    Example: tagshift annotate news.txt --labels PER,ORG,LOC --model models/ner --db news.sqlite
    (then open http://127.0.0.1:8080/)
    """
    with user_errors():
        app_module = _server_modules()
        from tagshift.annotate.store import AnnotationStore
        from tagshift.annotate.tasks import TaskReport, build_tasks, check_suggesters, parse_labels

        wanted = parse_labels(labels)
        store = AnnotationStore(db)
        app_module.check_port(host, port)
        matcher = _matcher(patterns) if patterns else None
        source = None
        if model is not None:
            from tagshift.bundle import load_source

            source = load_source(model, device)
        for warning in check_suggesters(wanted, model, source.types if source is not None else None,
                                        matcher.labels if matcher is not None else None):
            typer.echo(f"warning: {warning}", err=True)
        report = TaskReport()
        tasks = build_tasks(input_path, wanted, source, matcher, order.value, report)
        typer.echo(report.render(), err=True)
        annotators = store.annotators()
        typer.echo(f"answers in {db}: " + (", ".join(f"{a} {n}" for a, n in annotators.items()) or "none yet")
                   + "; each annotator continues where they left off", err=True)
        web = app_module.create_app(tasks, store, wanted, title=str(input_path))
        typer.echo(f"annotate at http://{host}:{port}/ (Ctrl-C stops; every answer is saved as it is given)", err=True)
    app_module.serve(web, host, port)


@annotate_app.command("export")
def export_command(
    db: Path = typer.Option(..., "--db", help="The SQLite file tagshift annotate wrote."),
    out: Path = typer.Option(..., "--out", help="The corpus to write: .jsonl (text, tokens, character spans) or .conll (IOB2)."),
    annotator: Optional[str] = typer.Option(None, "--annotator", help="Only this annotator's answers. Without it: each task's latest accept-or-reject across annotators (conflicts are counted)."),
    fmt: Optional[ExportFormat] = typer.Option(None, "--format", help="jsonl or conll; default from --out's suffix."),
) -> None:
    """Write the accepted answers as a corpus that train and adapt read.

    Example: tagshift annotate export --db news.sqlite --out news.jsonl
    """
    from tagshift.annotate.export import export_annotations, export_format
    from tagshift.annotate.store import AnnotationStore

    with user_errors():
        chosen = export_format(out, fmt.value if fmt is not None else None)
        check_writable(out)
        store = AnnotationStore(db, create=False)
        with output_lock(out, command_line()):
            report = export_annotations(store, out, chosen, annotator)
        typer.echo(report.render(), err=True)
        typer.echo(f"wrote {out}: {report.accepted} sentences ({chosen})", err=True)


def _server_modules() -> Any:
    """tagshift.annotate.app, or a one-line error naming what to install."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise TagshiftError(f"tagshift annotate needs FastAPI and uvicorn ({err.name} is missing): "
                            "pip install fastapi uvicorn") from None
    from tagshift.annotate import app as app_module

    return app_module


def _matcher(paths: list[Path]) -> Any:
    from tagshift.patterns import Matcher, read_patterns

    return Matcher([p for path in paths for p in read_patterns(path)])
