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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs on two processes (pytest-xdist, --dist loadgroup). A file's tests stay
    together, so its module-scoped models train once; a test marked with its own group (each
    bench script's check) goes wherever a process is free."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
