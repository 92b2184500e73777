"""`tagshift export`: a model in another tool's format (a spaCy pipeline, an ONNX graph)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from tagshift.cli.options import OVERWRITE, app, command_line, user_errors
from tagshift.errors import TagshiftError
from tagshift.lock import output_lock


class ExportFormat(str, Enum):
    spacy = "spacy"
    onnx = "onnx"


@app.command()
def export(
    model: Path = typer.Argument(..., help="A bundle or Hugging Face token-classifier directory, or hf:NAME."),
    fmt: ExportFormat = typer.Option(..., "--format", help="spacy: a pipeline directory spacy.load reads (the blank tokenizer of --lang, then tagshift_ner); onnx: the network as an ONNX graph, for 'tagshift predict --runtime onnx' (docs/onnx.md)."),
    out: Path = typer.Option(..., "--out", help="Directory to write."),
    lang: str = typer.Option("en", "--lang", help="spaCy language of the pipeline's tokenizer."),
    int8: bool = typer.Option(False, "--int8", help="onnx: quantize the graph's weights to int8 (onnxruntime's dynamic quantization): faster; tags close to fp32's, not equal."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write a model in another tool's format.

    Example: tagshift export models/ner --format spacy --out pipelines/ner  (then spacy.load("pipelines/ner"))
    or: tagshift export models/ner --format onnx --int8 --out models/ner.onnx  (then predict --runtime onnx)
    """
    with user_errors():
        if int8 and fmt is not ExportFormat.onnx:
            raise TagshiftError("--int8 quantizes an ONNX graph: it goes with --format onnx")
        if out.resolve() == Path(model).resolve():
            raise TagshiftError(f"--out {out} is the model itself; export writes a new directory: choose another")
        with output_lock(out, command_line()):
            if out.exists() and not overwrite:
                raise TagshiftError(f"{out} already exists; choose another --out, or add --overwrite")
            if fmt is ExportFormat.onnx:
                from tagshift.export.onnx import export_onnx

                written = export_onnx(model, out, int8, command_line())
                done = (f"an ONNX export ({'int8' if int8 else 'fp32'}, graph {written.graph_bytes / 1e6:.1f} MB; "
                        f"fp32 emissions within {written.max_difference:.1g} of torch's); "
                        f"tag with 'tagshift predict {out} INPUT --runtime onnx'")
            else:
                from tagshift.export.spacy import export_pipeline

                export_pipeline(model, out, lang)
                done = f"a spaCy pipeline (tokenizer, tagshift_ner); load it with spacy.load('{out}')"
        typer.echo(f"wrote {out}: {done}", err=True)
