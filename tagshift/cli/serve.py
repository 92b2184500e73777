"""`tagshift serve`: a model behind an HTTP API, with the entity viewer (docs/serve.md)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from tagshift.cli.options import (
    DEVICE, PREDICT_PRECISION, RUNTIME, Precision, Runtime, app, load_for_prediction, user_errors,
)
from tagshift.errors import TagshiftError
from tagshift.serve.tagging import Limits


def _import_server() -> tuple[Callable[..., Any], ModuleType]:
    """tagshift.serve's create_app and uvicorn, or a one-line error naming the extra."""
    try:
        import uvicorn

        from tagshift.serve.app import create_app
    except ImportError as err:
        raise TagshiftError(f"tagshift serve needs FastAPI and uvicorn, the 'serve' extra ({err.name} is missing): "
                            "pip install 'tagshift[serve]'") from None
    return create_app, uvicorn


def check_address(host: str, port: int) -> None:
    """Fail now, before the model loads, where the server could not listen."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.create_server(address[:2], family=family):
            pass
    except OSError as err:
        # create_server's message repeats the address; the errno's own words are enough
        reason = os.strerror(err.errno) if err.errno and not isinstance(err, socket.gaierror) else err.strerror or str(err)
        raise TagshiftError(f"cannot listen on {host}:{port} ({reason}); "
                            "choose another --port (or --host)") from None


@app.command()
def serve(
    model: Path = typer.Argument(..., help="A bundle or Hugging Face token-classifier directory, hf:NAME, or spacy:PIPELINE."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default answers this machine only; 0.0.0.0 answers every network (there is no authentication: put a proxy that has one in front)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    max_body_bytes: int = typer.Option(Limits.max_body_bytes, "--max-body-bytes", help="Largest request body accepted, in bytes (413 above it)."),
    max_texts: int = typer.Option(Limits.max_texts, "--max-texts", help="Most texts (or token lists) in one request (413 above it)."),
    max_tokens: int = typer.Option(Limits.max_tokens, "--max-tokens", help="Most tokens in one text (413 above it); a text is tagged sentence by sentence whatever its length."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per batch."),
    precision: Precision = PREDICT_PRECISION,
    device: str = DEVICE,
    runtime: Runtime = RUNTIME,
) -> None:
    """Serve a model over HTTP: POST /predict (JSON), GET /health, GET /info, the entity viewer at /
    and the API's documentation at /docs. Requests are tagged one at a time.

    Example: tagshift serve models/ner --port 8000  (then open http://127.0.0.1:8000/)
    """
    with user_errors():
        create_app, uvicorn = _import_server()
        limits = Limits(max_body_bytes, max_texts, max_tokens)
        check_address(host, port)
        tagger = load_for_prediction(model, runtime, device, precision.value)
        application = create_app(tagger, limits, source=model, batch_size=batch_size)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {model} ({tagger.describe()}) on http://{shown}:{port}/ (the viewer; API docs at /docs); "
               "Ctrl+C stops", err=True)
    uvicorn.run(application, host=host, port=port, log_level="info")
