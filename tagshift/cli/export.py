"""`tagshift export`: a model in another tool's format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from tagshift.cli.options import OVERWRITE, app, command_line, user_errors
from tagshift.errors import TagshiftError
from tagshift.lock import output_lock


class ExportFormat(str, Enum):
    spacy = "spacy"


@app.command()
def export(
    model: Path = typer.Argument(..., help="A bundle or Hugging Face token-classifier directory, or hf:NAME."),
    fmt: ExportFormat = typer.Option(..., "--format", help="spacy: a pipeline directory spacy.load reads (the blank tokenizer of --lang, then tagshift_ner)."),
    out: Path = typer.Option(..., "--out", help="Directory to write."),
    lang: str = typer.Option("en", "--lang", help="spaCy language of the pipeline's tokenizer."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write a model in another tool's format.

    Example: tagshift export models/ner --format spacy --out pipelines/ner  (then spacy.load("pipelines/ner"))
    """
    from tagshift.export.spacy import export_pipeline

    with user_errors():
        if out.resolve() == Path(model).resolve():
            raise TagshiftError(f"--out {out} is the model itself; export writes a new directory: choose another")
        with output_lock(out, command_line()):
            if out.exists() and not overwrite:
                raise TagshiftError(f"{out} already exists; choose another --out, or add --overwrite")
            export_pipeline(model, out, lang)
        typer.echo(f"wrote {out}: a spaCy pipeline (tokenizer, tagshift_ner); "
                   f"load it with spacy.load('{out}')", err=True)
