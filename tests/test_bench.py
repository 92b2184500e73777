"""The benchmark scripts stay runnable: each one's --quick mode (tiny slices, one epoch) runs
end to end and writes its table. Scores are not checked here; the full runs are benchmarks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


SCRIPTS = ["conll.py", "paper_tasks.py", "ablations.py", "incremental.py", "crossner.py", "mit_movie.py", "speed.py",
           "spacy_new_types.py", "bootstrap.py", "pretrain.py", "serve.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_runs_and_writes_its_table(script, shared_data):
    name = script.removesuffix(".py")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (REPO / "bench" / "results" / f"{name}-quick.md").read_text()
    assert table.count("|") > 20


def test_machine_line_is_the_lineage_record():
    """The tables' machine line (the key they group runs by) says what a bundle's lineage
    records for the same device, in its fixed one-line format."""
    import platform

    import torch

    from bench.common import machine
    from tagshift.lineage import machine_record

    record = machine_record(torch.device("cpu"))
    assert machine("cpu") == (f"{platform.machine()}, {record['cpu_cores']} CPU cores, "
                              f"Python {record['python']}, {platform.system()}")


def test_ran_on_names_the_seeds_of_a_backend_split_across_machines():
    from bench.common import ran_on

    runs = ([{"backend": "bilstm-crf", "seed": s, "machine": "CPU"} for s in (0, 1, 2)]
            + [{"backend": "transformer", "seed": 0, "machine": "GPU"}]
            + [{"backend": "transformer", "seed": s, "machine": "CPU"} for s in (1, 2)])
    assert ran_on(runs, "backend") == "Ran on: bilstm-crf, transformer (seeds 1, 2): CPU; transformer (seed 0): GPU."
    assert ran_on(runs[:3], "backend") == "Ran on: bilstm-crf: CPU."
