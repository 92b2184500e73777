"""The annotation server: a FastAPI app over the tasks and the store, serving one
self-contained page (static/annotate.html) and a small JSON API it calls.

    GET  /                       the page
    GET  /api/config             {labels, total, title}
    GET  /api/next?annotator=A   {task, progress}: A's first unanswered task (null when all are)
    GET  /api/progress?annotator=A   {answered, total}
    POST /api/answer             {task_id, annotator, answer, spans: [{token_start, token_end, label}]}
                                 -> {saved, task, progress}: stored, then A's next task
    POST /api/undo               {annotator} -> {undone, task, progress}: A's latest answer (to
                                 a task of this input) removed, its task given back with its spans

Every error is `{"error": "one line"}` with a 4xx status (5xx for a fault of the server),
never a stack trace. `create_app` needs no socket: tests drive it with FastAPI's TestClient."""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations, and the
# request models are made inside create_app, so that this module imports without fastapi
# installed (the CLI then says what to install, and the doctest run still collects it).
import logging
import socket
from collections.abc import Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from tagshift.annotate.store import ANSWERS, AnnotationStore, StoreError
from tagshift.annotate.tasks import Task
from tagshift.errors import TagshiftError, quoted

log = logging.getLogger(__name__)
MAX_NAME = 80  # characters of an annotator's name

if TYPE_CHECKING:
    from fastapi import FastAPI


class AnswerError(TagshiftError):
    """A request the server cannot take as it is; `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def create_app(tasks: Sequence[Task], store: AnnotationStore, labels: Sequence[str], title: str = "") -> "FastAPI":
    """The FastAPI app annotating `tasks` (in the order given) with `labels`, answers going to `store`."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException

    class SpanIn(BaseModel):
        token_start: int
        token_end: int = Field(description="inclusive, as Prodigy writes it")
        label: str

    class AnswerIn(BaseModel):
        task_id: str
        annotator: str
        answer: str
        spans: list[SpanIn] = []

    class UndoIn(BaseModel):
        annotator: str

    by_id = {task.id: task for task in tasks}
    page = files("tagshift.annotate").joinpath("static/annotate.html").read_text(encoding="utf-8")
    app = FastAPI(title="tagshift annotate", docs_url=None, redoc_url=None, openapi_url=None)

    def progress(annotator: str) -> dict:
        return {"answered": len(store.answered(annotator) & by_id.keys()), "total": len(tasks)}

    def next_task(annotator: str) -> dict | None:
        answered = store.answered(annotator)
        task = next((t for t in tasks if t.id not in answered), None)
        return None if task is None else task_json(task)

    @app.exception_handler(AnswerError)
    async def answer_error(request: Request, err: AnswerError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, err: StoreError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(err.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = f"no such page: {request.url.path}" if err.status_code == 404 else str(err.detail)
        return JSONResponse({"error": message}, status_code=err.status_code)

    @app.exception_handler(Exception)
    async def fault(request: Request, err: Exception) -> JSONResponse:
        log.exception("annotate: %s %s failed", request.method, request.url.path)  # the trace goes to the log only
        return JSONResponse({"error": f"the server failed on {request.url.path}: {type(err).__name__}: "
                                      f"{str(err).splitlines()[0][:200] if str(err) else ''} (see its log)"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"labels": list(labels), "total": len(tasks), "title": title}

    @app.get("/api/progress")
    def get_progress(annotator: str) -> dict[str, int]:
        return progress(_annotator(annotator))

    @app.get("/api/next")
    def get_next(annotator: str) -> dict[str, Any]:
        name = _annotator(annotator)
        return {"task": next_task(name), "progress": progress(name)}

    @app.post("/api/answer")
    def answer(given: AnswerIn) -> dict[str, Any]:
        name = _annotator(given.annotator)
        if given.answer not in ANSWERS:
            raise AnswerError(f"answer {quoted(given.answer)}: give one of {', '.join(ANSWERS)}")
        task = by_id.get(given.task_id)
        if task is None:
            raise AnswerError(f"no task {quoted(given.task_id)} in this server's input (was it restarted on "
                              "other input? reload the page)", 404)
        spans = _spans(task, [(s.token_start, s.token_end, s.label) for s in given.spans], labels)
        saved = store.add(task.id, name, given.answer, spans, task.text, task.token_records(), task.source)
        return {"saved": {"task_id": saved.task_id, "answer": saved.answer, "spans": saved.spans},
                "task": next_task(name), "progress": progress(name)}

    @app.post("/api/undo")
    def undo(given: UndoIn) -> dict[str, Any]:
        name = _annotator(given.annotator)
        undone = store.undo(name, by_id)
        shown = next_task(name) if undone is None else task_json(by_id[undone.task_id], undone.spans)
        return {"undone": None if undone is None else {"task_id": undone.task_id, "answer": undone.answer},
                "task": shown, "progress": progress(name)}

    return app


def task_json(task: Task, spans: list | None = None) -> dict:
    """A task as the page reads it: tokens (with whether a space follows each) and spans, the
    suggestions or, given, the spans of an answer being redone."""
    tokens = [{"text": t, "start": s, "end": e,
               "ws": i + 1 < len(task.offsets) and task.offsets[i + 1][0] > e}
              for i, (t, (s, e)) in enumerate(zip(task.tokens, task.offsets))]
    if spans is None:
        spans = [{**task.span_record(s.start, s.end, s.label), "origin": s.origin,
                  **({"confidence": round(s.confidence, 4)} if s.confidence is not None else {})}
                 for s in task.suggestions]
    return {"id": task.id, "text": task.text, "tokens": tokens, "spans": spans, "source": task.source}


def _annotator(name: str) -> str:
    name = name.strip()
    if not name:
        raise AnswerError("give an annotator name (the page asks for one; it is kept with every answer)")
    if len(name) > MAX_NAME or any(not c.isprintable() for c in name):
        raise AnswerError(f"annotator name {quoted(name, 40)}: at most {MAX_NAME} printable characters")
    return name


def _spans(task: Task, given: list[tuple[int, int, str]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """The answer's spans (token_start, token_end inclusive, label) as stored: checked against
    the task's tokens and the labels, sorted, none overlapping."""
    out = []
    for start, end, label in sorted(given):
        if label not in labels:
            raise AnswerError(f"label {quoted(label)} is not one of this session's labels: {', '.join(labels)}")
        if not 0 <= start <= end < len(task.tokens):
            raise AnswerError(f"span {start}-{end} ({label}) lies outside the sentence's {len(task.tokens)} tokens "
                              "(token_start and token_end are token indices, token_end inclusive)")
        if out and start <= out[-1]["token_end"]:
            raise AnswerError(f"spans {out[-1]['token_start']}-{out[-1]['token_end']} ({out[-1]['label']}) and "
                              f"{start}-{end} ({label}) overlap; nested entities are not supported")
        out.append(task.span_record(start, end + 1, label))
    return out


def _validation_message(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line: `answer: Field required; spans.0.label: ...`."""
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query")) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "bad request: " + "; ".join(parts) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")


def check_port(host: str, port: int) -> None:
    """Refuse, before the model is loaded, a host and port that cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise TagshiftError(f"--host {host}: not an address this machine knows ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise TagshiftError(f"cannot listen on {host}:{port} ({err.strerror}); give another --port "
                                "(or stop what holds it)") from None


def serve(app: "FastAPI", host: str, port: int) -> None:
    """Run `app` until Ctrl-C (uvicorn; its access log off, warnings on)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
