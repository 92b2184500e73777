"""Shared by the benchmark scripts: where data and caches live, mean ± std, peak memory,
and writing a table into its marked section of docs/benchmarks.md (and a few of its rows
into the README's headline)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TAGSHIFT_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / "bench" / "cache"  # trained models and checkpoints (large; not in git)
RECORDS = REPO / "bench" / "records"  # each finished run's scores, one JSON file a run (in git)
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"


def require_shared(*parts: str) -> Path:
    """A path under ../shared/data, or exit with a message saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        sys.exit(f"skipped: {path} not found (set TAGSHIFT_SHARED_DATA to the shared corpora)")
    return path


def records(name: str) -> Path:
    """The folder of a benchmark's run records. They are tracked by git, so tables can be
    rebuilt and grow by new runs on a fresh clone, whose bench/cache is empty."""
    folder = RECORDS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_record(name: str, filename: str, record: dict) -> None:
    """A run's record, written whole or not at all (a temporary file, then a rename)."""
    path = records(name) / f"{filename}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def load_records(name: str, pattern: str = "*-seed*.json") -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted((RECORDS / name).glob(pattern))]


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std' (sample std) of values, scaled (fractions to percent by default)."""
    if not values:
        return "n/a"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def seeds_phrase(counts: set[int]) -> str:
    """How many seeds a headline's cells average over: '3 seeds', or '3-5 seeds' where they differ."""
    low, high = min(counts, default=0), max(counts, default=0)
    return f"{low} seed{'s' * (high > 1)}" if low == high else f"{low}-{high} seeds"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(device: str = "cpu") -> str:
    """The machine a run ran on, with its GPU when it trained on one: the lineage's record
    as one line (tables group runs by this string, so its format stays)."""
    import torch

    from tagshift.lineage import machine_record

    record = machine_record(torch.device(device))
    arch, system = record["platform"].split(", ")
    text = f"{arch}, {record['cpu_cores']} CPU cores, Python {record['python']}, {system}"
    if "gpu" in record:
        text += f", {record['gpu']} (torch {record['torch']})"
    return text


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


def write_headline(name: str, body: str, script: str) -> None:
    """Replace the `name-headline` section of README.md (between its markers) with `body`, a
    few rows of the table `script` publishes, so that the README's numbers are written from
    the same records as docs/benchmarks.md, never typed. A README without the markers is left
    as it is: which results it headlines, and where, is the README's choice."""
    start, end = f"<!-- {name}-headline:start -->", f"<!-- {name}-headline:end -->"
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        print(f"README.md has no {start} marker: its headline left as it is", file=sys.stderr)
        return
    source = (f"Written by `bench/{script}` from `bench/records/{name}/` on {date.today().isoformat()}; "
              f"the full table, its machine and caveats: [docs/benchmarks.md](docs/benchmarks.md#{name}).")
    block = f"{start}\n{body.strip()}\n\n{source}\n{end}"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")
    tmp.replace(README)


def add_run_options(parser: argparse.ArgumentParser, seeds: bool = True, parallel: bool = False) -> None:
    """The options every benchmark takes: --seeds, --quick, --threads; with `parallel`, also
    --device and --jobs (the scripts whose runs are many and independent)."""
    if seeds:
        parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(--quick: 0 only)")
    parser.add_argument("--quick", action="store_true", help="tiny slices, one epoch: checks that the script runs")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's choice)")
    if parallel:
        parser.add_argument("--device", default="cpu", help="torch device each run trains and scores on (cuda, cuda:1, ...)")
        parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in a process of its own")


def configure_run(threads: int | None) -> None:
    """A child run's torch threads."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def new_tagger(backend: str, model: dict, train: Any, seed: int, extra: Any = None, device: str = "cpu") -> Any:
    """A new tagger of the family `backend` with `model` options, on `device` (the family's
    record in tagshift/taggers/backends.py builds it; `extra` words join a vocabulary where
    the family has one)."""
    from tagshift.taggers.backends import get_backend

    family = get_backend(backend)
    return family.build(family.config_class(**model), train, seed=seed, extra=extra).to(device)


def quick_model(model: dict) -> dict:
    """--quick's model options: no pretrained word vectors (loading them is the slow part)."""
    return {k: v for k, v in model.items() if k not in ("vectors", "freeze_vectors")}


def stamp(record: dict, device: str) -> dict:
    """A run's record with the machine it ran on (with its GPU when it ran on `device`
    cuda): tables may gather runs from several."""
    return {**record, "machine": machine(device)}


def run_child(script: str, one: list[str], quick: bool, threads: int | None, device: str = "cpu",
              in_process: bool | None = None, precision: str | None = None) -> None:
    """`script --one ...` in a process of its own, so that its peak memory is its own; or,
    with `in_process` (default: for --quick runs, which are tiny), run as __main__ in this one.
    `precision`: passed on as --precision (the scripts that take it)."""
    in_process = quick if in_process is None else in_process
    command = [sys.executable, script, "--one", *one]
    command += (["--quick"] if quick else []) + (["--threads", str(threads)] if threads else [])
    command += ["--device", device] if device != "cpu" else []
    command += ["--precision", precision] if precision else []
    if not in_process:
        subprocess.run(command, check=True)
        return
    import runpy

    saved, sys.argv = sys.argv, command[1:]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise subprocess.CalledProcessError(stop.code if isinstance(stop.code, int) else 1, command) from stop
    finally:
        sys.argv = saved


@functools.lru_cache(maxsize=None)
def read_shared(*parts: str) -> Any:
    """A corpus of ../shared/data, read once per process: --quick runs go in the calling
    process, and each would read the same corpora again. Callers make new corpora from it
    (slices, relabelled copies), never change it."""
    from tagshift.corpus import read_corpus

    return read_corpus(require_shared(*parts))


def run_children(script: str, ones: list[list[str]], args: argparse.Namespace) -> None:
    """run_child for each of `ones`, --jobs at a time; every run is tried, then any failure raised.
    --quick runs, one job at a time, go in this process: they are tiny, and a process each
    would spend more on starting Python and importing torch than on the run."""
    from concurrent.futures import ThreadPoolExecutor

    in_process = args.quick and args.jobs <= 1

    def one(run: list[str]) -> str | None:
        print(f"{' '.join(run)} ...", file=sys.stderr, flush=True)
        try:
            run_child(script, run, args.quick, args.threads, args.device, in_process,
                      getattr(args, "precision", None))
        except subprocess.CalledProcessError as error:
            return f"{' '.join(run)}: exit {error.returncode}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        failed = [f for f in pool.map(one, ones) if f]
    if failed:
        sys.exit("failed runs (rerun to retry them):\n" + "\n".join(failed))


def ran_on(records: list[dict], key: str) -> str:
    """'Ran on: ...', the machines each `key` value's runs were made on; a value whose runs
    were split across machines names the seeds each one made."""
    seeds: dict[tuple[str, str], set[int]] = {}
    for record in records:
        seeds.setdefault((record.get("machine", "not recorded"), str(record[key])), set()).add(record.get("seed", 0))
    split = {value for value, machines in Counter(value for _, value in seeds).items() if machines > 1}
    by_machine: dict[str, list[str]] = {}
    for (where, value), made in sorted(seeds.items()):
        named = f"{value} (seed{'s' * (len(made) > 1)} {', '.join(map(str, sorted(made)))})" if value in split else value
        by_machine.setdefault(where, []).append(named)
    return "Ran on: " + "; ".join(f"{', '.join(v)}: {m}" for m, v in sorted(by_machine.items())) + "."


def not_shown(pending: dict[str, int], what: str, min_seeds: int, where: str = "") -> list[str]:
    """The lines under a table that count, per backend, the recorded runs of its rows still
    short of `min_seeds` seeds (their scores are not shown)."""
    return [f"Not shown yet: {backend}'s {what} with fewer than {min_seeds} seeds{where} ({count} runs recorded)."
            for backend, count in pending.items() if count]


def publish(section: str, body: str, payload: Any, quick: bool, headline: str | None = None) -> None:
    """The table to bench/results/SECTION[-quick].md and .json and, on a full run, into its
    section of docs/benchmarks.md with the command that made it, and `headline` (its rows
    the README quotes) into the README."""
    name = f"{section}-quick" if quick else section
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (RESULTS / f"{name}.md").write_text(body + "\n")
    if not quick:
        # quoted as a shell would need it: a strategy such as "lower lr" is one argument
        write_section(section, body, shlex.join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]))
        if headline is not None:
            write_headline(section, headline, Path(sys.argv[0]).name)
