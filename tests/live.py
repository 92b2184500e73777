"""tagshift commands run as servers in tests (`serve`, `annotate`): a free port of 127.0.0.1,
and the command in a subprocess until its page answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import REPO

CLI = "from tagshift.cli import main; main()"
READY_SECONDS = 60  # loading the model and tagging the input, on a busy CPU


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(args: list[str], port: int, ready: str, log: Path) -> Iterator[subprocess.Popen]:
    """`tagshift ARGS --port PORT` in a subprocess (one torch thread), once GET `ready` answers
    200 (the test fails, with the log's end, if it exits or is not ready in READY_SECONDS);
    stopped on exit, however the block ends."""
    with log.open("a") as output:
        process = subprocess.Popen([sys.executable, "-c", CLI, "--threads", "1", *args, "--port", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"tagshift {args[0]} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"tagshift {args[0]} did not answer {ready} within {READY_SECONDS} s:\n"
                            f"{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait(timeout=10)
