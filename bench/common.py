"""Shared by the benchmark scripts: where data and caches live, mean ± std, peak memory,
and writing a table into its marked section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TAGSHIFT_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / "bench" / "cache"
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"


def require_shared(*parts: str) -> Path:
    """A path under ../shared/data, or exit with a message saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        sys.exit(f"skipped: {path} not found (set TAGSHIFT_SHARED_DATA to the shared corpora)")
    return path


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std' (sample std) of values, scaled (fractions to percent by default)."""
    if not values:
        return "n/a"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cores} CPU cores, Python {platform.python_version()}, {platform.system()}"


def write_section(name: str, body: str, command: str) -> None:
    """Replace the `name` section of docs/benchmarks.md (between its markers) with `body`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\nCommand: `{command}` · machine: {machine()} · date: {date.today().isoformat()}\n\n{body.strip()}\n{end}"
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOCS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(DOCS)


def add_run_options(parser: argparse.ArgumentParser, seeds: bool = True) -> None:
    """The options every benchmark takes: --seeds, --quick, --threads."""
    if seeds:
        parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(--quick: 0 only)")
    parser.add_argument("--quick", action="store_true", help="tiny slices, one epoch: checks that the script runs")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's choice)")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_child(script: str, one: list[str], quick: bool, threads: int | None) -> None:
    """`script --one ...` in a process of its own, so that its peak memory is its own."""
    command = [sys.executable, script, "--one", *one]
    command += (["--quick"] if quick else []) + (["--threads", str(threads)] if threads else [])
    subprocess.run(command, check=True)


def publish(section: str, body: str, payload: Any, quick: bool) -> None:
    """The table to bench/results/SECTION[-quick].md and .json and, on a full run, into its
    section of docs/benchmarks.md with the command that made it."""
    name = f"{section}-quick" if quick else section
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{name}.md").write_text(body + "\n")
    if not quick:
        write_section(section, body, " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]))
