"""`tagshift predict` over inputs larger than memory: the input is cut into chunks of whole
sentences as it is read, each chunk is tagged (here, or by N worker processes, each with
the model loaded once) and written in input order. With an output file, the output grows in
OUT.partial beside a record of the chunks written (OUT.progress.json), and the finished file
is renamed over OUT: a run killed midway continues with --resume from its last chunk.

At most twice as many chunks as workers are in flight, so memory holds a few chunks,
whatever the input's size. Chunks are cut where the reader would end a sentence, and line
numbers count from the file's start, so errors and output are those of reading it whole.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch

from tagshift.atomic import write_text_atomic
from tagshift.corpus import Corpus, Sentence, read_columns, read_jsonl
from tagshift.corpus.columns import DOCSTART, detect_columns
from tagshift.corpus.jsonl import looks_like_json
from tagshift.errors import CorpusError, TagshiftError
from tagshift.predict import format_predictions, parse_text, prediction_records
from tagshift.progress import progress_bar
from tagshift.rawtext import RawReport, RawTextError, read_raw

_HEAD_LINES = 20_000  # lines read to detect a column file's layout: its first 5,000 token lines, with blanks
CHUNK_SENTENCES = 2000  # sentences (lines, for text and JSONL) a chunk: a few MB of input


@dataclass(frozen=True)
class Chunk:
    """Part of the input: whole sentences, the file's bytes from line `first_line`; for raw
    text, the reader's sentences as JSON lines (`raw_chunks`), `first_line` 0."""

    index: int
    data: bytes
    first_line: int


@dataclass(frozen=True)
class ReadSpec:
    """How each chunk is read and written: the input's format and read options, the output's
    format and scheme, the batch size. Detected once for the whole input (the column layout
    from the first chunk), so that every chunk is read as the whole file would be."""

    path: str
    input_format: str  # conll, jsonl, text or raw
    output_format: str
    scheme: str | None = None
    batch_size: int = 32
    encoding: str = "utf-8"
    max_tokens: int = 10_000
    token_col: int | None = None
    tag_col: int | None = None
    columns: int | None = None  # fields a column line has, detected once from the start

    def read(self, chunk: Chunk) -> Corpus:
        if self.input_format == "raw":
            return Corpus([sentence for _, sentence in _raw_sentences(chunk)], self.path)
        if self.input_format == "text":
            return parse_text(chunk.data, self.path, self.encoding, self.max_tokens, chunk.first_line)
        if self.input_format == "jsonl":
            return read_jsonl(self.path, max_tokens=self.max_tokens, encoding=self.encoding, data=chunk.data,
                              unlabelled=True, first_line=chunk.first_line)
        return read_columns(self.path, token_col=self.token_col, tag_col=self.tag_col, encoding=self.encoding,
                            max_tokens=self.max_tokens, data=chunk.data, unlabelled=True, first_line=chunk.first_line,
                            columns=self.columns)


@dataclass(frozen=True)
class TaggedChunk:
    """A chunk's output text and what it held."""

    index: int
    text: str
    sentences: int
    entities: int
    input_bytes: int


def tag_chunk(tagger: Any, spec: ReadSpec, chunk: Chunk) -> TaggedChunk:
    """Read, tag and format one chunk."""
    raw = _raw_sentences(chunk) if spec.input_format == "raw" else None  # (decoded once: sentences and sources)
    corpus = Corpus([sentence for _, sentence in raw], spec.path) if raw is not None else spec.read(chunk)
    tagged = tagger.predict([s.tokens for s in corpus.sentences], spec.batch_size,
                            confidence=spec.output_format != "conll")  # CoNLL columns have no place for them
    if raw is not None and spec.output_format != "conll":
        # each record says where its sentence came from (file and line, or PDF page), as weak-label's do
        records = prediction_records(corpus, tagged, spec.output_format, spec.scheme)
        for record, (source, _) in zip(records, raw):
            record["meta"] = {"source": source}
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = format_predictions(corpus, tagged, spec.output_format, spec.scheme) if corpus.sentences else ""
    if text and chunk.index and spec.output_format == "conll" and corpus.layout is None:
        text = "\n" + text  # columns written from text or JSON: the blank line between chunks' sentences
    return TaggedChunk(chunk.index, text, len(corpus.sentences), sum(len(t.entities) for t in tagged), len(chunk.data))


def chunks(path: str | Path, input_format: str, size: int = CHUNK_SENTENCES) -> Iterator[Chunk]:
    """The input in chunks of about `size` sentences, read a line at a time. Column files are
    cut only before a line that follows a blank one (a sentence or a -DOCSTART- begins
    there), their blank lines at a chunk's end cut to one, and a last piece without a
    sentence (-DOCSTART- lines alone) joins the chunk before; text and JSON lines are cut
    after `size` non-blank lines. A JSON array is one record stream: it is one chunk."""
    with Path(path).open("rb") as handle:
        if input_format == "jsonl" and handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            handle.seek(0)
            yield Chunk(0, handle.read(), 1)
            return
        handle.seek(0)
        pieces = _pieces(handle, input_format, size)
        held_back, index = next(pieces, None), 0  # one piece behind: the last may join it
        for lines, first_line, sentences in pieces:
            if held_back is not None and not sentences:  # (only the last piece can have none)
                held_back = (held_back[0] + lines, held_back[1], held_back[2])
                continue
            if held_back is not None:
                yield _chunk(index, held_back[0], held_back[1], input_format, last=False)
                index += 1
            held_back = (lines, first_line, sentences)
        if held_back is not None:
            yield _chunk(index, held_back[0], held_back[1], input_format, last=True)


def raw_chunks(path: str | Path, report: RawReport, size: int = CHUNK_SENTENCES) -> Iterator[Chunk]:
    """Raw text (a file or a directory, PDF included) in chunks of `size` sentences, as the
    raw-text reader splits them: each sentence a JSON line of its source, text and tokens
    with their offsets (what a worker needs to tag it and to say where it came from)."""
    sentences = read_raw(path, report)
    index = 0
    while batch := [json.dumps({"source": str(location), "text": s.text, "tokens": s.tokens, "offsets": s.offsets},
                               ensure_ascii=False) for location, s in itertools.islice(sentences, size)]:
        yield Chunk(index, ("\n".join(batch) + "\n").encode("utf-8"), 0)
        index += 1


def _raw_sentences(chunk: Chunk) -> list[tuple[str, Sentence]]:
    """A raw chunk's sentences, each with its source."""
    # (split at \n only: a sentence's text may hold other line breaks, such as U+2028, that JSON keeps)
    records = [json.loads(line) for line in chunk.data.decode("utf-8").split("\n") if line]
    return [(r["source"], Sentence(r["tokens"], ["O"] * len(r["tokens"]), text=r["text"],
                                   offsets=[tuple(o) for o in r["offsets"]])) for r in records]


def _pieces(handle: BinaryIO, input_format: str, size: int) -> Iterator[tuple[list[bytes], int, int]]:
    """(lines, the first one's number, sentences begun in them) for each cut `chunks` makes."""
    lines: list[bytes] = []
    first_line, held, blank_before = 1, 0, True
    for number, line in enumerate(handle, start=1):
        blank = not line.strip()
        starts_block = not blank and (input_format != "conll" or blank_before)
        if starts_block and held >= size:
            yield lines, first_line, held
            lines, first_line, held = [], number, 0
        lines.append(line)
        if starts_block and not line.startswith(DOCSTART.encode()):
            held += 1
        blank_before = blank
    if lines:
        yield lines, first_line, held


def _chunk(index: int, lines: list[bytes], first_line: int, input_format: str, last: bool = False) -> Chunk:
    """A chunk of `lines`. A column chunk that another follows ends in one plain blank line,
    as the whole file's reader would write the sentences back one blank line apart."""
    if input_format == "conll" and not last:
        end = len(lines)
        while end > 1 and not lines[end - 1].strip():
            end -= 1
        newline = b"\r\n" if lines[end - 1].endswith(b"\r\n") else b"\n"
        lines = [*lines[: end - 1], lines[end - 1].rstrip(b"\r\n") + newline, newline]
    return Chunk(index, b"".join(lines), first_line)


# --- the output, resumable --------------------------------------------------------------


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def fingerprint(spec: ReadSpec, model: str | Path | None, chunk_size: int) -> dict[str, Any]:
    """What a resumed run must share with the one it continues: the input file as it was
    (size and modification time; for a directory, those of every file under it), the model's
    files, and every option that changes output."""
    def stat(path: Path) -> list[int]:
        info = path.stat()
        return [info.st_size, info.st_mtime_ns]

    source = Path(spec.path)
    read = ({str(f.relative_to(source)): stat(f) for f in sorted(source.rglob("*")) if f.is_file()}
            if source.is_dir() else stat(source))
    model = Path(model) if model is not None else None
    files = [] if model is None else sorted(model.iterdir()) if model.is_dir() else [model] if model.is_file() else []
    return {"input": read, "model": {f.name: stat(f) for f in files if f.is_file()},
            "model_path": str(model) if model is not None else None, "options": asdict(spec),
            "chunk_sentences": chunk_size}


@dataclass
class Progress:
    """OUT.progress.json: the chunks written to OUT.partial, its length, and their totals."""

    fingerprint: dict[str, Any]
    chunks: int = 0
    bytes: int = 0
    input_bytes: int = 0
    sentences: int = 0
    entities: int = 0


def open_output(out: Path, print_fingerprint: dict[str, Any], resume: bool) -> tuple[BinaryIO, Progress]:
    """OUT.partial opened to append at the end of its last whole chunk, and the progress so
    far: nothing on a fresh start; a resumed run's, checked to be the same run."""
    partial, record = partial_path(out), progress_path(out)
    if not resume:
        if record.exists():
            raise TagshiftError(f"{out}: an interrupted prediction into it is kept ({partial.name}, {record.name}): "
                                "add --resume to continue it, or remove those two files")
        return partial.open("wb"), Progress(print_fingerprint)
    if not record.is_file() or not partial.is_file():
        raise TagshiftError(f"{out}: no interrupted prediction to resume ({record.name} not found); run without --resume")
    try:
        saved = Progress(**json.loads(record.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise TagshiftError(f"{record}: damaged ({err}); remove it and {partial.name}, and start again") from None
    if saved.fingerprint != print_fingerprint:
        changed = sorted(k for k in print_fingerprint if saved.fingerprint.get(k) != print_fingerprint[k])
        raise TagshiftError(f"{out}: the interrupted prediction was made with another {', '.join(changed)}; resume with "
                            f"the same input, model and options, or remove {partial.name} and {record.name}")
    if partial.stat().st_size < saved.bytes:
        raise TagshiftError(f"{partial}: shorter than its {saved.chunks} chunks written; remove it and {record.name}")
    handle = partial.open("r+b")
    handle.truncate(saved.bytes)  # a chunk half-written when the run stopped is written again
    handle.seek(saved.bytes)
    return handle, saved


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamResult:
    sentences: int
    entities: int
    chunks: int
    resumed_chunks: int
    raw: RawReport | None = None  # what reading raw text found (files, pages without a text layer)


def predict_stream(
    load: Callable[[], Any],
    spec: ReadSpec,
    out: Path | None,
    write: Callable[[str], Any],
    workers: int = 1,
    resume: bool = False,
    progress: bool = False,
    chunk_size: int = CHUNK_SENTENCES,
    model_path: str | Path | None = None,
) -> StreamResult:
    """Tag `spec.path` chunk by chunk with the tagger `load()` gives (loaded once in each of
    `workers` processes, or here for one: `load` must then be picklable, e.g. a partial of a
    module-level function), writing each chunk in input order: to `write` without `out`
    (chunks before a bad line are written before its error), else to OUT.partial, resumably,
    renamed to `out` at the end. `model_path` names the model's files for a resumed run to
    check. An error in the input removes OUT.partial: a resumed run could not use it once
    the input is mended; any other interruption keeps it for --resume."""
    if workers < 1:
        raise TagshiftError(f"--workers {workers}: give 1 or more")
    if resume and out is None:
        raise TagshiftError("--resume continues an output file: give --out")
    spec = _with_layout(_as_read(spec))
    raw = RawReport() if spec.input_format == "raw" else None
    if raw is not None:
        _check_raw(spec, out)
    # loaded here first, also for workers: a model that does not load fails before any output is opened
    tagger = load()
    if workers > 1:
        tagger = None  # each worker loads its own
    handle, done = None, Progress({})
    if out is not None:
        handle, done = open_output(out, fingerprint(spec, model_path, chunk_size), resume)
        file = handle
        write = lambda text: file.write(text.encode("utf-8"))  # noqa: E731
    resumed = done.chunks
    if raw is not None:  # (a PDF's bytes do not measure its text: the bar counts sentences)
        bar = progress_bar(None, "tagging", enabled=progress, initial=done.sentences, unit="sentence")
    else:
        bar = progress_bar(None, "tagging", enabled=progress, total=Path(spec.path).stat().st_size,
                           initial=done.input_bytes, unit="B", unit_scale=True)
    try:
        pieces = raw_chunks(spec.path, raw, chunk_size) if raw is not None else chunks(
            spec.path, spec.input_format, chunk_size)
        for result in _tagged(tagger, load, spec, _not_empty(pieces, spec), workers, skip=done.chunks):
            write(result.text)
            done.chunks, done.input_bytes = done.chunks + 1, done.input_bytes + result.input_bytes
            done.sentences, done.entities = done.sentences + result.sentences, done.entities + result.entities
            if handle is not None and out is not None:
                handle.flush()
                os.fsync(handle.fileno())
                done.bytes = handle.tell()
                write_text_atomic(progress_path(out), json.dumps(asdict(done)))
            bar.update(result.sentences if raw is not None else result.input_bytes)
        if not done.sentences:
            raise CorpusError(f"{spec.path}: no text to tag" if spec.input_format == "text"
                              else f"{spec.path}: no sentences to tag")
    except (CorpusError, RawTextError):
        if handle is not None and out is not None:
            handle.close()
            partial_path(out).unlink(missing_ok=True)
            progress_path(out).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        if handle is not None:
            handle.close()
    if out is not None:
        os.replace(partial_path(out), out)
        progress_path(out).unlink(missing_ok=True)
    return StreamResult(done.sentences, done.entities, done.chunks, resumed, raw)


def _check_raw(spec: ReadSpec, out: Path | None) -> None:
    """Raw text is read as the raw-text reader reads it (UTF-8); an output inside the input
    directory would be read as input by the next run, and its side files would change the
    directory a resumed run checks."""
    if spec.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise TagshiftError(f"--encoding {spec.encoding}: raw text (a PDF, a directory, --input-format raw) is read "
                            "as UTF-8; re-save the files as UTF-8")
    source = Path(spec.path).resolve()
    if out is not None and source.is_dir() and source in Path(out).resolve().parents:
        raise TagshiftError(f"--out {out} is inside the input directory {spec.path}: its text would be read as input "
                            "next time; write it elsewhere")


def _as_read(spec: ReadSpec) -> ReadSpec:
    """A corpus asked for as conll or jsonl is read as its content says, JSON or columns, as
    `read_corpus` reads it (the output's default format follows what was asked)."""
    if spec.input_format not in ("conll", "jsonl"):
        return spec
    with Path(spec.path).open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="ignore")
    return ReadSpec(**{**asdict(spec), "input_format": "jsonl" if looks_like_json(head) else "conll"})


def _not_empty(pieces: Iterator[Chunk], spec: ReadSpec) -> Iterator[Chunk]:
    """The chunks; for an empty file, the error its reader gives (an empty chunk is read;
    the raw-text reader raises its own)."""
    empty = True
    for chunk in pieces:
        empty = False
        yield chunk
    if empty and spec.input_format != "raw":
        spec.read(Chunk(0, b"", 1))


def _with_layout(spec: ReadSpec) -> ReadSpec:
    """The spec with the column layout detected once, from the file's first lines as the
    whole file's reader detects it: the fields a line has and the token and tag columns."""
    if spec.input_format != "conll":
        return spec
    with Path(spec.path).open("rb") as handle:
        head = b"".join(line for _, line in zip(range(_HEAD_LINES), handle))
    if not head.strip():
        return spec  # (an empty file: its reader says so)
    spec = ReadSpec(**{**asdict(spec), "columns": detect_columns(head, spec.path, spec.encoding)})
    if spec.token_col is not None and spec.tag_col is not None:
        return spec
    layout = spec.read(Chunk(0, head, 1)).layout
    assert layout is not None  # a column file's corpus always has one
    return ReadSpec(**{**asdict(spec), "token_col": layout.token_col, "tag_col": layout.tag_col})


def _tagged(tagger: Any, load: Callable[[], Any], spec: ReadSpec, pieces: Iterator[Chunk], workers: int,
            skip: int) -> Iterator[TaggedChunk]:
    """The chunks after the first `skip`, tagged in input order: by `tagger` here, or by
    `workers` processes that each `load` one."""
    todo = (chunk for chunk in pieces if chunk.index >= skip)
    if workers == 1:
        for chunk in todo:
            yield tag_chunk(tagger, spec, chunk)
        return
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # not fork: torch's threads do not survive a fork
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(load, spec, threads)) as pool:
        in_flight: deque[Future[TaggedChunk]] = deque()
        try:
            for chunk in todo:
                in_flight.append(pool.submit(_work, chunk))
                if len(in_flight) >= 2 * workers:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        except BrokenProcessPool:
            raise TagshiftError("a worker process died (killed, or out of memory?); the chunks written are kept: "
                                "run again with --resume") from None
        finally:
            for future in in_flight:
                future.cancel()


# Each worker process's tagger and spec, set once by its initializer: the pool's way to keep a
# loaded model in a process between tasks.
_WORKER: dict[str, Any] = {}


def _start_worker(load: Callable[[], Any], spec: ReadSpec, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(tagger=load(), spec=spec)


def _work(chunk: Chunk) -> TaggedChunk:
    return tag_chunk(_WORKER["tagger"], _WORKER["spec"], chunk)
