"""The HTTP API and the entity viewer around one loaded model: `create_app` builds the
FastAPI application (tests use it without a socket; `tagshift serve` runs it under uvicorn).

Every error is JSON `{"error": "..."}` a person can act on, never a traceback: 413 for a
request over a limit (body size, texts, tokens per text), 422 for one that is malformed
(not JSON, wrong types, unknown fields or scheme), 404/405 for a wrong path or method, 500
(logged on the server) for a fault of the server's own."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tagshift.errors import TagshiftError
from tagshift.serve.schemas import Error, Health, Info, PredictRequest, PredictResponse
from tagshift.serve.tagging import LimitError, Limits, ServedModel, read_documents
from tagshift.taggers.spacy_pipeline import SpacyPipeline
from tagshift.taggers.tagger import Tagger
from tagshift.version import __version__

EXAMPLE = '{"text": "Angela Merkel visited Paris."}'
# The viewer loads nothing from elsewhere: its script and style are inline, and the browser is told so.
VIEWER_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                 "base-uri 'none'; form-action 'none'")
ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": Error, "description": "The request is over a limit: body size, texts, or tokens in a text."},
    422: {"model": Error, "description": "The request is malformed: not JSON, a wrong type, an unknown field or scheme."},
}


def create_app(model: Tagger | SpacyPipeline, limits: Limits | None = None, source: str | Path | None = None,
               batch_size: int = 32) -> FastAPI:
    """The API and viewer for `model` (as `bundle.load_source` gives it), within `limits`
    (default: `Limits()`); `source`, the name it was loaded from, is what /info reads the
    bundle's record from."""
    limits = limits or Limits()
    served = ServedModel(model, source, batch_size)
    app = FastAPI(
        title="tagshift",
        version=__version__,
        summary="Named entities in text, from one tagshift model (or spaCy pipeline, or imported classifier).",
        description="POST /predict tags texts; GET / is the entity viewer. See docs/serve.md.",
        docs_url=None,  # FastAPI's /docs page loads Swagger UI from a CDN: served from the package instead
    )
    _add_api_docs(app)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    _add_error_handlers(app)
    viewer = files("tagshift.serve").joinpath("static", "viewer.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def entity_viewer() -> HTMLResponse:
        return HTMLResponse(viewer, headers={"Content-Security-Policy": VIEWER_POLICY})

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS)
    def predict(request: PredictRequest) -> JSONResponse:
        """Entities in each text: spans with character offsets and confidences, tokens and tags."""
        documents = read_documents(*request.inputs(), limits)
        scheme = request.scheme.value if request.scheme is not None else None
        results = served.predict(documents, scheme, request.confidence)
        # built by the library, so returned as it is (FastAPI would re-validate every token)
        return JSONResponse({"model": served.source, "scheme": scheme or model.scheme, "results": results})

    @app.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Whether the server is up with its model loaded."""
        return {"status": "ok", "model": served.source, "loaded": True}

    @app.get("/info", response_model=Info)
    def info() -> dict[str, Any]:
        """What `tagshift info` says of the model, its types and labels, and the server's limits."""
        return {**served.info(), "limits": asdict(limits)}

    return app


class BodyLimit:
    """Refuse (413) a request body over `max_bytes` before the app reads it: by its
    Content-Length, or, sent in chunks, as soon as the chunks pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send, f"{int(length):,} bytes")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, f"over {self.max_bytes:,} bytes")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        message = (f"the request body is {size}, more than this server takes ({self.max_bytes:,}, tagshift serve "
                   "--max-body-bytes); send fewer or shorter texts per request")
        await JSONResponse({"error": message}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": readable(err.errors(), request.headers.get("content-type"))}, status_code=422)

    @app.exception_handler(TagshiftError)
    async def refused(request: Request, err: TagshiftError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=413 if isinstance(err, LimitError) else 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message, status = str(err.detail), err.status_code
        if status == 400 and isinstance(err.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            message, status = (f"the request body is not UTF-8 (byte {err.__cause__.start + 1}); "
                               "send JSON encoded as UTF-8"), 422
        elif status == 404:
            message = f"no page {request.url.path}; the server has / (the viewer), /predict, /health, /info and /docs"
        elif status == 405:
            message = f"{request.method} is not how {request.url.path} is used; see /docs"
        return JSONResponse({"error": message}, status_code=status, headers=err.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        # Starlette raises the error on after this answer, so uvicorn logs its traceback
        return JSONResponse({"error": f"the server failed on this request ({type(err).__name__}); "
                                      "its log has the details"}, status_code=500)


def readable(errors: Any, content_type: str | None = None, shown: int = 5) -> str:
    """pydantic's validation errors as one message: where (`texts[2]`), what, and a fix.

    >>> readable([{"type": "string_type", "loc": ("body", "texts", 2), "msg": "Input should be a valid string", "input": 7}])
    'texts[2]: Input should be a valid string, not 7'
    >>> readable([{"type": "extra_forbidden", "loc": ("body", "\\ud800"), "msg": "Extra inputs are not permitted"}])
    '\\\\ud800: not a field the server reads; the fields are text, texts, tokens, scheme, confidence'
    """
    messages = []
    for error in errors:
        kind, loc = error.get("type"), [part for part in error.get("loc", ()) if part != "body"]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            messages.append(f"the request body is not valid JSON ({reason}); send an object such as {EXAMPLE}")
            continue
        if kind == "missing" and not where:
            messages.append(f"the request has no body; send a JSON object such as {EXAMPLE}")
            continue
        if not where and kind in ("model_attributes_type", "dict_type", "model_type"):
            if content_type is not None and "json" not in content_type:
                messages.append(f"the body was sent as {content_type}; send JSON, with Content-Type: application/json")
            else:
                messages.append(f"the body is {_json_type(error.get('input'))}; send a JSON object such as {EXAMPLE}")
            continue
        if kind == "extra_forbidden":
            fields = ", ".join(PredictRequest.model_fields)
            messages.append(f"{where}: not a field the server reads; the fields are {fields}")
            continue
        if kind == "value_error":
            message = str((error.get("ctx") or {}).get("error", error.get("msg")))
        else:
            message = f"{error.get('msg')}, not {_shown(error['input'])}" if "input" in error else error.get("msg")
        messages.append(f"{where}: {message}" if where else message)
    if len(messages) > shown:
        messages = messages[:shown] + [f"and {len(messages) - shown} more"]
    # a field name or value quoted from the body may hold half a surrogate pair ({"\ud800": 1}),
    # which no UTF-8 answer can carry: it is written as its escape
    return "; ".join(messages).encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: Any, limit: int = 40) -> str:
    """A value as JSON writes it (null, not None), cut to about `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _json_type(value: Any) -> str:
    """How JSON names the type of a parsed value."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "not an object"


def _add_api_docs(app: FastAPI) -> None:
    """The API's documentation at /docs, Swagger UI's script and style served from the
    fastapi-offline package (the 'serve' extra), so that it shows with no network."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    try:
        assets = files("fastapi_offline").joinpath("static")
    except ModuleNotFoundError:
        return  # /openapi.json stays; /docs answers 404
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="tagshift API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")
