"""`tagshift serve` under load and under abuse, on loopback, for both backends.

Load: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients (threads, each a
persistent connection and a fixed number of requests), one CoNLL-2003 test sentence per
request and 16 per request (4 with --quick), against a live `tagshift serve` started here
on 127.0.0.1.
Abuse: seeded fuzzed requests (random bytes, odd and huge Unicode, wrong JSON types,
truncated bodies, wrong content types, bodies over the limit, unknown paths and methods)
sent over raw sockets; the server must answer none with a 5xx, stay up, and give a known
request the same answer (spans, tokens, tags) after as before. The script exits non-zero otherwise, listing the
first offending requests.

    python bench/serve.py            # about 15 minutes; bench/conll.py's models when they exist
    python bench/serve.py --quick    # stand-in models, few requests, a few hundred fuzzed: checks the script

The models are bench/conll.py's seed-0 BiLSTM-CRF and transformer; where one is missing
(and always with --quick), a stand-in of the same recipe is trained here on a slice of
CoNLL-2003 train for one epoch, and the table says so. Speed does not depend on how well a
model was trained, but the stand-ins' spans are not worth reading. Run it alone: other work
on the cores skews every number.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, REPO, add_run_options, new_tagger, publish, quick_model, save_record, stamp,
)
from bench.conll import RECIPES  # noqa: E402

HOST = "127.0.0.1"  # the script never serves or connects anywhere else
# each backend's model: bench/conll.py's row of the same name, seed 0
BACKENDS = ("bilstm-crf", "transformer")
CLIENTS = (1, 8, 32)
# texts per request -> requests in one cell of the load table, shared among its clients
# (each sends at least one); --quick sends 4 texts where the full run sends 16
REQUESTS = {"full": {1: 512, 16: 128}, "quick": {1: 32, 4: 8}}
FUZZED = {"full": 10_000, "quick": 200}
STAND_IN_SENTENCES = {"full": 1000, "quick": 100}
SEED = 0
READY_SECONDS = 180  # a transformer loads in seconds; a busy machine may take longer
ANSWER_SECONDS = 120  # the longest a request may take before it counts as unanswered
WAIT_SECONDS = 0.3  # how long a truncated body waits for an answer it should not get
SHOWN = 5  # offending requests listed on failure
EXAMPLE = "Angela Merkel met Emmanuel Macron in Paris. Siemens shares rose in Frankfurt."


# --- the models and the server --------------------------------------------------------------


def served_model(backend: str, quick: bool, folder: Path) -> tuple[Path, str]:
    """The model to serve for `backend` and what it is: bench/conll.py's seed-0 model, or
    (missing, or --quick) a stand-in of the same recipe trained on a slice of CoNLL train."""
    from tagshift.bundle import CONFIG
    from tagshift.corpus import Corpus
    from tagshift.training import TrainConfig, fit

    real = CACHE / "conll" / f"{backend}-seed0"
    if not quick and (real / CONFIG).is_file():
        return real, f"bench/conll.py's {backend} (seed 0)"
    size = STAND_IN_SENTENCES["quick" if quick else "full"]
    out = folder / f"stand-in-{backend}"
    if not (out / CONFIG).is_file():
        print(f"training a stand-in {backend} on {size} CoNLL-2003 sentences ...", file=sys.stderr, flush=True)
        train = read_shared("conll2003", "eng.train")
        train = Corpus(train.sentences[:size], train.path)
        recipe = RECIPES[backend]
        model = quick_model(recipe["model"]) if quick else recipe["model"]
        fit(new_tagger(backend, model, train, SEED), train, None,
            TrainConfig.for_backend(backend, epochs=1, seed=SEED), out, progress=False)
    return out, f"stand-in: {backend} recipe, {size} CoNLL-2003 train sentences, one epoch"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def first_traceback(self) -> str:
        """The first traceback in the server's log (what a 500 logs), or its last lines."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
        if start is None:
            return self.log_tail()
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines) - 1)
        return "\n".join(lines[start : end + 1])


@contextmanager
def live_server(model: Path, threads: int | None, log: Path) -> Iterator[Server]:
    """`tagshift serve MODEL` in a subprocess on a free port of 127.0.0.1, once /health
    answers (at most READY_SECONDS); stopped however the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "tagshift", *(["--threads", str(threads)] if threads else []),
               "serve", str(model), "--host", HOST, "--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while get(server, "/health")[0] != 200:
            if not server.alive():
                sys.exit(f"tagshift serve exited with {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                sys.exit(f"tagshift serve did not answer /health within {READY_SECONDS} s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(server: Server, path: str) -> tuple[int | None, bytes]:
    """GET `path`: its status and body, or (None, b"") where nothing answers."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None, b""
    finally:
        connection.close()


def post_json(server: Server, payload: Any) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(HOST, server.port, timeout=ANSWER_SECONDS)
    try:
        connection.request("POST", "/predict", json.dumps(payload), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# --- load ------------------------------------------------------------------------------------


def conll_texts(quick: bool) -> list[str]:
    """CoNLL-2003 test sentences as raw text (the tokens joined by spaces)."""

    sentences = read_shared("conll2003", "eng.testb").sentences
    return [" ".join(s.tokens) for s in sentences[: 600 if quick else None]]


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def load(server: Server, texts: list[str], clients: int, per_request: int, requests: int) -> dict:
    """`clients` threads, each on its own keep-alive connection, each sending
    requests // clients requests of `per_request` texts, all started at once; the time from
    the start to the last answer, every request's latency, and the failed requests."""
    per_client = max(1, requests // clients)
    start = threading.Barrier(clients + 1, timeout=60)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[list[str]] = [[] for _ in range(clients)]

    def client(index: int) -> None:
        first = index * per_client * per_request
        bodies = [json.dumps({"text": texts[(first + i) % len(texts)]} if per_request == 1 else
                             {"texts": [texts[(first + i * per_request + j) % len(texts)] for j in range(per_request)]})
                  for i in range(per_client)]
        connection = http.client.HTTPConnection(HOST, server.port, timeout=ANSWER_SECONDS)
        start.wait()
        for body in bodies:
            began = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures[index].append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as err:
                failures[index].append(f"{type(err).__name__}: {err}")
                connection.close()  # the next request connects again
            latencies[index].append(time.perf_counter() - began)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    every = [t for client_latencies in latencies for t in client_latencies]
    failed = [f for client_failures in failures for f in client_failures]
    return {"texts_per_request": per_request, "clients": clients, "requests": len(every), "seconds": seconds,
            "requests_per_second": len(every) / seconds, "texts_per_second": len(every) * per_request / seconds,
            "p50_ms": percentile(every, 0.50) * 1000, "p99_ms": percentile(every, 0.99) * 1000,
            "errors": len(failed), "first_errors": failed[:SHOWN]}


def measure_load(server: Server, texts: list[str], quick: bool) -> list[dict]:
    """The load table's cells for one server: each size of request at each number of clients."""
    sizes = REQUESTS["quick" if quick else "full"]
    for per_request in sizes:  # warm-up: the first calls of a model are slow
        for i in range(3):
            post_json(server, {"texts": texts[i * per_request : (i + 1) * per_request]})
    cells = []
    for per_request, requests in sizes.items():
        for clients in CLIENTS:
            cells.append(load(server, texts, clients, per_request, requests))
            print(f"  {per_request} text(s)/request, {clients} clients: {cells[-1]['requests_per_second']:.1f} requests/s",
                  file=sys.stderr, flush=True)
    return cells


# --- abuse -----------------------------------------------------------------------------------

# Strings no tokenizer expects: surrogate halves, combining marks, right-to-left text and
# controls, emoji ZWJ sequences, NUL and other controls, odd whitespace, non-characters,
# scripts with clusters, sentence-splitter bait, markup.
ODD = [
    "\ud800", "\udfff", "\ud83d", "\ude00\ud83d", "a\udc80b",
    "e\u0301", "\u0301", "\u0301\u0301\u0301", "Z" + "\u0300\u0316\u0317\u0318\u0353\u036f" * 8,
    "\u202eevil\u202c", "\u200f", "\u200e", "\u061c", "שלום עולם", "مرحبا بالعالم", "\u202b\u05d0\u202c",
    "👩\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "👍🏽", "🇩🇪🇫🇷", "1\ufe0f\u20e3", "\u200d", "\u200d\u200d", "🧑🏽\u200d🚀",
    "\x00", "a\x00b", "\x07", "\x1b[31m", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x7f", "\x1f",
    "\ufeff", "\ufffe", "\uffff", "\ue000", "\U0010ffff", "\U000e0001", "\ufffd",
    "\u200b", "\u2060", "\u00a0", "\u3000", "\t", "\u180e", "\u00ad", "\ufe0f",
    "漢字かなカナ", "हिन्दी", "ภาษาไทย", "\u1100\u1161\u11a8", "ﷺ", "ǅ", "ß", "İ", "ﬃ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Mr.", "U.S.", "...", "…", "!?", ".", '"', "'", "\\", "{}", "</script>", "&amp;", "%s", "${x}", "-DOCSTART-",
    "Angela Merkel", "Paris", "EU",
]
SEPARATORS = ["", " ", "  ", "\n", ". ", "\t", "\u3000"]
# JSON values where a string (or list of strings) belongs
WRONG = [0, -1, 3.5, 1e308, -0.0, True, False, None, [], {}, [[]], [["a"]], [[["a"]]], [None], [1, "a"],
         {"text": "a"}, [{"text": "a"}], "", " "]
# JSON numbers and nestings Python's parser takes badly
RAW_JSON = [b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"1" * 5000, b"-" + b"9" * 4400, b"[" * 100_000,
            b"{\"text\":" * 20_000, b"\"\\ud800\"", b"\"\\u0000\"", b"\"\\x\"", b"tru", b"nul"]
CONTENT_TYPES = [None, b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=xyz",
                 b"application/xml", b"text/json", b"application/json; charset=utf-16", b"application/json; charset=latin-1",
                 b"application/vnd.api+json", b"application/", b"*/*", b"", b"application/json" * 300,
                 b"application/json; boundary=\"\"", b"APPLICATION/JSON", b"application/json\t;;;=="]
METHODS = [b"GET", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"TRACE", b"FOO", b"get", b"POST"]
PATHS = [b"/predicts", b"/predict/", b"//predict", b"/predict?text=Paris", b"/%00", b"/%ff", b"/%ED%A0%80",
         b"/../etc/passwd", b"/docs", b"/openapi.json", b"/info", b"/health", b"/", b"/static/x",
         b"/" + b"a" * 8000, b"/predict#x", b"/predict;x", b"*", b"http://127.0.0.1/predict", b"/%2e%2e/"]


@dataclass
class Case:
    """One fuzzed request: its kind, its bytes, and how it ends: sent whole and answered
    ("answer"), or cut short with the connection half-closed ("eof") or left open ("wait"),
    where no answer is the right one."""

    kind: str
    data: bytes
    ending: str = "answer"

    def shown(self, limit: int = 200) -> str:
        text = repr(self.data)
        return text if len(text) <= limit else f"{text[:limit]}… ({len(self.data):,} bytes)"


def http_request(body: bytes, content_type: bytes | None = b"application/json", method: bytes = b"POST",
                 path: bytes = b"/predict", length: int | None = None, headers: tuple[bytes, ...] = ()) -> bytes:
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type)
    if not any(h.lower().startswith(b"transfer-encoding") for h in headers):
        head.append(b"Content-Length: %d" % (len(body) if length is None else length))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def encoded(payload: Any, rng: random.Random) -> bytes:
    """`payload` as JSON: with \\u escapes, or as UTF-8 (a surrogate half then becomes bytes
    that are not UTF-8, though Python's JSON parser takes them)."""
    if rng.random() < 0.5:
        return json.dumps(payload).encode()
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")


def odd_text(rng: random.Random, texts: list[str]) -> str:
    """Odd pieces run together, sometimes around a CoNLL sentence; one in 33 is long."""
    if rng.random() < 0.03:  # long: one huge token, a huge grapheme, or thousands of tokens (under the limits)
        piece = rng.choice(["a", "\u0301", "👩\u200d👩\u200d👧\u200d👦 ", "e\u0301 ", "\u200d", "x ", "Mr. "])
        return rng.choice(ODD[:30]) + piece * rng.randint(1000, 9000 if " " in piece else 200_000)
    pieces = [rng.choice(ODD) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.3:
        pieces.insert(rng.randrange(len(pieces) + 1), rng.choice(texts))
    return "".join(p + rng.choice(SEPARATORS) for p in pieces)


def fuzz_case(rng: random.Random, texts: list[str]) -> Case:
    """One request of a seeded mix; the kinds' shares are the weights below."""
    valid = {"text": rng.choice(texts)}
    kind = rng.choices(["odd unicode", "wrong JSON types", "mutated JSON", "random bytes", "raw bytes", "truncated body",
                        "wrong content type", "over the limits", "unknown path or method"],
                       weights=[30, 20, 10, 8, 6, 4, 8, 6, 8])[0]
    if kind == "odd unicode":
        field = rng.choice(["text", "texts", "tokens"])
        value: Any = odd_text(rng, texts)
        if field == "texts":
            value = [odd_text(rng, texts) for _ in range(rng.randint(1, 5))]
        elif field == "tokens":
            value = [[rng.choice(ODD) for _ in range(rng.randint(0, 8))] for _ in range(rng.randint(1, 3))]
        payload = {field: value, **({"scheme": rng.choice(["iob2", "bilou", "io"])} if rng.random() < 0.2 else {})}
        return Case(kind, http_request(encoded(payload, rng)))
    if kind == "wrong JSON types":
        wrong = rng.choice(WRONG + [rng.choice(ODD), float("nan"), float("inf")])
        odd_key = rng.choice(ODD)
        payload = rng.choice([
            {"text": wrong}, {"texts": wrong}, {"texts": ["a", wrong]}, {"tokens": wrong}, {"tokens": [wrong]},
            {"tokens": [["a", wrong]]}, {"text": "a", "scheme": wrong}, {"text": "a", "confidence": wrong},
            wrong, {"text": [odd_key]}, {odd_key: "a"}, {"text": "a", odd_key: wrong}, {"text": "a", "texts": ["b"]},
            {}, {"text": None, "texts": None}, {"texts": [odd_key, 1, None, [odd_key]]}, {"scheme": odd_key},
        ])
        body = encoded(payload, rng)
        if rng.random() < 0.2:
            raw = rng.choice(RAW_JSON)
            body = rng.choice([raw, b'{"text": ' + raw + b"}", b'{"texts": [' + raw + b"]}", b'{"text": "a", "text": 1}'])
        return Case(kind, http_request(body))
    if kind == "mutated JSON":
        body = bytearray(json.dumps({"texts": [rng.choice(texts), odd_text(rng, texts)]}, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(body))
            mutation = rng.randrange(3)
            if mutation == 0:
                body[at] = rng.randrange(256)
            elif mutation == 1:
                del body[at : at + rng.randint(1, 20)]
            else:
                body[at:at] = rng.randbytes(rng.randint(1, 20))
            if not body:
                break
        return Case(kind, http_request(bytes(body)))
    if kind == "random bytes":
        noise = rng.randbytes(rng.randint(0, 4096))
        body = rng.choice([noise, b'{"text": "' + noise + b'"}', b"\xef\xbb\xbf" + json.dumps(valid).encode()])
        return Case(kind, http_request(body, rng.choice([b"application/json", b"application/octet-stream"])))
    if kind == "raw bytes":
        body = json.dumps(valid).encode()
        data = rng.choice([
            rng.randbytes(rng.randint(1, 2048)),
            b"POST /predict HTTP/1.1\r\n\r\n" + body,  # no Host
            b"POST /predict HTTP/9.9\r\nHost: x\r\n\r\n",
            b"POST /predict\r\n\r\n",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            b"POST /predict HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: %d\n\n" % len(body) + body,
            http_request(body, length=-1), http_request(body, headers=(b"Content-Length: 3",)),
            http_request(b"zz\r\n" + body + b"\r\n0\r\n\r\n", headers=(b"Transfer-Encoding: chunked",)),
            http_request(body, headers=(b"Transfer-Encoding: gzip",)),
            http_request(body, headers=(b"Content-Encoding: gzip",)),
            http_request(body, headers=(b"Expect: 100-continue",)),
            http_request(body, length=len(body) - 3) + rng.randbytes(50),  # the rest as the next "request"
            b"GET /health HTTP/1.0\r\n\r\n", b"\r\n\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ])
        return Case(kind, data, "eof")  # a stream no parser takes may be closed without a word
    if kind == "truncated body":
        body = json.dumps({"text": odd_text(rng, texts)}).encode()
        cut = body[: rng.randrange(len(body))]
        if rng.random() < 0.8:
            data = http_request(cut, length=len(body) + rng.choice([0, 1, 1000, 900_000]))
        else:  # chunked, without its last chunk
            data = http_request(b"%x\r\n" % len(cut) + cut + b"\r\n", headers=(b"Transfer-Encoding: chunked",))
        return Case(kind, data, rng.choice(["eof", "wait"]))
    if kind == "wrong content type":
        content_type = rng.choice(CONTENT_TYPES)
        body = json.dumps(valid).encode()
        if content_type is not None and b"utf-16" in content_type:
            body = json.dumps(valid).encode("utf-16")
        elif content_type is not None and b"latin-1" in content_type:
            body = json.dumps({"text": "Zoë in Málaga"}, ensure_ascii=False).encode("latin-1")
        elif content_type is not None and content_type.startswith(b"application/x-www"):
            body = b"text=Angela+Merkel"
        elif content_type is not None and content_type.startswith(b"multipart"):
            body = b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nParis\r\n--xyz--\r\n'
        return Case(kind, http_request(body, content_type))
    if kind == "over the limits":
        choice = rng.randrange(6)
        if choice == 0:
            payload: Any = {"text": "word " * rng.randint(10_001, 20_000)}
        elif choice == 1:
            payload = {"texts": ["a"] * rng.randint(101, 5000)}
        elif choice == 2:
            payload = {"tokens": [["a"] * rng.randint(10_001, 20_000)]}
        else:
            payload = {"text": "a" * rng.randint(1_000_001, 1_500_000)}
        body = json.dumps(payload).encode()
        if choice == 4:  # in chunks, no Content-Length
            chunks = b"".join(b"%x\r\n" % len(body[i : i + 65536]) + body[i : i + 65536] + b"\r\n"
                              for i in range(0, len(body), 65536))
            return Case(kind, http_request(chunks + b"0\r\n\r\n", headers=(b"Transfer-Encoding: chunked",)))
        if choice == 5:  # a Content-Length of 31 digits, and a short body
            return Case(kind, http_request(body[:100], length=10**30), "eof")
        return Case(kind, http_request(body))
    method, path = rng.choice(METHODS), rng.choice(PATHS)
    body = json.dumps(valid).encode() if method in (b"POST", b"PUT", b"PATCH") else b""
    return Case(kind, http_request(body, method=method, path=path))


def exchange(port: int, case: Case) -> int | None:
    """Send `case` on a connection of its own; the status of the (final) answer, or None
    where none came: closed, reset, or silent for as long as the case's ending waits. The
    body goes in pieces, and sending stops once an answer arrives (as a 413 does early)."""
    timeout = WAIT_SECONDS if case.ending == "wait" else ANSWER_SECONDS
    with socket.create_connection((HOST, port), timeout=10) as connection:
        try:
            for at in range(0, len(case.data), 65536):
                connection.sendall(case.data[at : at + 65536])
                if select.select([connection], [], [], 0)[0]:
                    break
            if case.ending == "eof":
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed the connection; an answer it sent first may still be read
        connection.settimeout(timeout)
        received = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                while b"\r\n\r\n" in received:  # skip interim answers (100 Continue)
                    head, _, rest = received.partition(b"\r\n\r\n")
                    status = head.split(b"\r\n")[0].split(b" ")
                    if len(status) < 2 or not status[1].isdigit():
                        return None
                    if not status[1].startswith(b"1"):
                        return int(status[1])
                    received = rest
                piece = connection.recv(65536)
                if not piece:
                    return None
                received += piece
        except OSError:
            return None
    return None


def answer_class(status: int | None) -> str:
    return "no answer" if status is None else f"{str(status)[0]}xx"


def fuzz(server: Server, texts: list[str], count: int) -> dict:
    """`count` fuzzed requests, one at a time, in a seeded order; how each kind was answered,
    and the requests that were answered with a 5xx, or not at all where they should have
    been, or after which the server was gone."""
    rng = random.Random(SEED)
    classes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {}
    offending: list[str] = []
    sent = 0
    for _ in range(count):
        case = fuzz_case(rng, texts)
        status = exchange(server.port, case)
        sent += 1
        answered = answer_class(status)
        classes[answered] += 1
        statuses[str(status)] += 1
        kinds.setdefault(case.kind, Counter())[answered] += 1
        if (status is not None and status >= 500) or (status is None and case.ending == "answer"):
            offending.append(f"{answered} ({status}) to {case.kind}: {case.shown()}")
        if not server.alive():
            offending.append(f"the server died after {case.kind}: {case.shown()}")
            break
    return {"requests": sent, "classes": dict(classes), "statuses": dict(sorted(statuses.items())),
            "kinds": {k: dict(v) for k, v in sorted(kinds.items())}, "offending": offending}


def abuse(server: Server, texts: list[str], count: int) -> dict:
    """The fuzzing, with a known request answered before and after it (the same answer) and /health after it."""
    known = {"texts": [EXAMPLE, *texts[:7]]}
    status, before = post_json(server, known)
    if status != 200:
        sys.exit(f"the known request was answered {status} before any fuzzing: {before}")
    result = fuzz(server, texts, count)
    health = get(server, "/health")[0] if server.alive() else None
    after = post_json(server, known) if health == 200 else (None, None)
    # the whole answer, tokens and tags too: a stand-in model may find no spans at all
    same = after[0] == 200 and after[1]["results"] == before["results"]
    entities = sum(len(r["spans"]) for r in before["results"])
    return {**result, "health_after": health, "same_answer_after": same, "known_request_spans": entities}


# --- the table -------------------------------------------------------------------------------


def table(runs: list[dict], quick: bool) -> str:
    """This run's load and abuse tables, one row group per model, with what each model was."""
    threads = f" --threads {runs[0]['threads']}" if runs[0]["threads"] else ""
    server = (f"Server: `tagshift{threads} serve MODEL` on {HOST}, default limits; clients: threads on the same "
              f"machine, one keep-alive connection each. Machine: {runs[0]['machine']}.")
    if quick:
        server += " --quick: stand-in models, a few requests a cell; the numbers only show that the script runs."
    lines = [server, "", *[f"- {r['backend']}: {r['model']}" for r in runs], "",
             "| model | texts/request | clients | requests | requests/s | texts/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for cell in run["load"]:
            lines.append(f"| {run['backend']} | {cell['texts_per_request']} | {cell['clients']} | {cell['requests']} "
                         f"| {cell['requests_per_second']:,.1f} | {cell['texts_per_second']:,.1f} | {cell['p50_ms']:,.1f} "
                         f"| {cell['p99_ms']:,.1f} | {cell['errors']} |")
    abuse_line = (f"Abuse: {runs[0]['fuzz']['requests']:,} seeded fuzzed requests per model, one at a time: odd and huge "
                  "Unicode, wrong JSON types, mutated JSON, random bytes, raw streams no HTTP parser takes, truncated "
                  "bodies, wrong content types, requests over the limits, unknown paths and methods. A truncated body "
                  "or a broken stream is rightly left unanswered; the known request is an example and 7 CoNLL sentences.")
    lines += ["", abuse_line, "",
              "| model | requests | 2xx | 3xx | 4xx | 5xx | no answer | /health after | same answer after |",
              "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        fuzzed = run["fuzz"]
        counts = " | ".join(f"{fuzzed['classes'].get(c, 0):,}" for c in ("2xx", "3xx", "4xx", "5xx", "no answer"))
        same = "yes" if fuzzed["same_answer_after"] else "**no**"
        lines.append(f"| {run['backend']} | {fuzzed['requests']:,} | {counts} | {fuzzed['health_after'] or 'no answer'} "
                     f"| {same} ({fuzzed['known_request_spans']} spans) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser, seeds=False)
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    texts = conll_texts(args.quick)
    folder = CACHE / ("serve-quick" if args.quick else "serve")
    folder.mkdir(parents=True, exist_ok=True)
    stamped = datetime.now().strftime("%Y-%m-%dT%H%M%S")
    runs, failures = [], []
    for backend in BACKENDS:
        model, what = served_model(backend, args.quick, folder)
        print(f"{backend}: serving {model} ...", file=sys.stderr, flush=True)
        with live_server(model, args.threads, folder / f"{backend}-server.log") as server:
            cells = measure_load(server, texts, args.quick)
            fuzzed = abuse(server, texts, FUZZED[size])
            if fuzzed["offending"] or not fuzzed["same_answer_after"]:
                failures.append(f"{backend}: {len(fuzzed['offending'])} offending requests; /health after: "
                                f"{fuzzed['health_after']}; same answer after: {fuzzed['same_answer_after']}")
                failures += [f"  {line}" for line in fuzzed["offending"][:SHOWN]]
                failures.append(f"  the server's log:\n{server.first_traceback()}")
        failures += [f"{backend}: {c['errors']} failed requests at {c['clients']} clients, {c['texts_per_request']} "
                     f"texts/request: {c['first_errors']}" for c in cells if c["errors"]]
        record = stamp({"backend": backend, "model": what, "model_path": str(model), "threads": args.threads,
                        "quick": args.quick, "date": stamped, "load": cells, "fuzz": fuzzed}, "cpu")
        save_record("serve-quick" if args.quick else "serve", backend if args.quick else f"{backend}-{stamped}", record)
        runs.append(record)
    body = table(runs, args.quick)
    publish("serve", body, runs, args.quick)
    print(body)
    if failures:
        sys.exit("\n".join(["the server failed under load or abuse:", *failures]))


if __name__ == "__main__":
    main()
