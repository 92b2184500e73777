"""Shared fixtures: where the repo's data slices and the shared corpora live, and a CLI runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tagshift.cli import app

# Tests train tiny models: one thread is as fast, and far faster when other work shares
# the cores (torch's threads spin-wait for each other under oversubscription).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SHARED_DATA = Path(os.environ.get("TAGSHIFT_SHARED_DATA", REPO.parent / "shared" / "data"))


# The files over a minute each (make test --durations), started first so that none is left
# running alone at the end; then each bench script's --quick check, one by one wherever a
# process is free; then the rest, in collection order.
FIRST = ("tests/test_transfer_conll.py", "tests/test_bundle_training.py", "tests/test_hf_import.py",
         "tests/test_distributed.py")
SPREAD = ("tests/test_bench.py::test_quick_mode_runs_and_writes_its_table",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run as FIRST says (a stable sort: every process collects the same order)."""
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return 0 if path in FIRST else 1 if item.nodeid.startswith(SPREAD) else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs on two processes (pytest-xdist, --dist loadfile). A file's tests stay on
    one, so its module-scoped models train once, except the tests named in SPREAD, which go one
    by one, in collection order. (--dist loadgroup would say this with marks, but ignores them
    under pytest 9.2: pytest-xdist issue 1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndSpread(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith(SPREAD) else super()._split_scope(nodeid)

    config.option.loadscopereorder = False  # keep the order pytest_collection_modifyitems chose
    return FilesAndSpread(config, log)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared corpora not found at {SHARED_DATA} (set TAGSHIFT_SHARED_DATA to run these tests)")
    return SHARED_DATA


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli():
    """Run `tagshift ARGS...` in-process; returns exit code, stdout and stderr."""
    runner = CliRunner()

    def run(*args: str | Path) -> CliResult:
        result = runner.invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run
