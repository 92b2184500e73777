"""Training on several processes (issue 28): `torchrun --nproc_per_node 2` over gloo on the
CPU, as a team launches it on its GPUs over nccl. Each launch starts two Pythons with torch,
so the runs are few and shared by the tests through module fixtures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tagshift.corpus import read_corpus
from tagshift.errors import TagshiftError
from tagshift.jobs import make_job, run_job
from tagshift.lock import output_lock
from tagshift.training.world import World
from tests.conftest import DATA, REPO

WIKI = DATA / "wikigold" / "wikigold.slice.conll"
# No dropout: the two runs compared must draw nothing at random, or they differ by design.
TINY = ("[model]\nword_dim = 20\nchar_dim = 8\nchar_hidden = 8\nhidden = 16\ndropout = 0.0\nword_dropout = 0.0\n"
        "[training]\nlr = 0.01\nbatch_size = 8\n")
EPOCHS = "8"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*args: str | Path) -> list[str]:
    """`torchrun --nproc_per_node 2 -m tagshift ARGS`, its rendezvous on this machine's loopback."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "tagshift", *map(str, args)]


ENV = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(REPO)}


def launch(*args: str | Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(*args), capture_output=True, text=True, env=ENV, timeout=timeout)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    corpus = read_corpus(WIKI)
    paths = {"train": folder / "train.conll", "config": folder / "tiny.toml"}
    paths["train"].write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(s.tokens, s.tags))
                                          for s in corpus.sentences[:92]) + "\n", encoding="utf-8")
    paths["config"].write_text(TINY, encoding="utf-8")
    return paths


def train_args(files: dict[str, Path], out: Path, *more: str) -> list[str | Path]:
    return ["train", "--backend", "bilstm-crf", "--train", files["train"], "--config", files["config"],
            "--epochs", EPOCHS, "--out", out, "--no-progress", *more]


@pytest.fixture(scope="module")
def single(files, tmp_path_factory) -> Path:
    """The same job in one process: 92 sentences in batches of 8 (the last one short)."""
    out = tmp_path_factory.mktemp("single") / "model"
    run_job(make_job(files["config"], backend="bilstm-crf", train=files["train"], out=out,
                     training={"epochs": int(EPOCHS)}), progress=False)
    return out


@pytest.fixture(scope="module")
def distributed(files, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("distributed") / "model"
    return out, launch(*train_args(files, out))


def weights(model: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(model / "model.safetensors").items()}


def test_two_processes_train_the_model_one_process_trains_over_the_same_global_batch(single, distributed):
    out, result = distributed
    assert result.returncode == 0, result.stderr
    one, two = weights(single), weights(out)
    scale = max(float(w.abs().max()) for w in one.values())
    # The same optimiser steps, their gradients summed in another order (two half-batch means
    # averaged, the short last batch weighted by its shares): rounding, ~1e-7 of a weight per
    # step, which 96 Adam steps keep far below 1e-4 of the largest weight.
    for name in one:
        assert float((one[name] - two[name]).abs().max()) <= 1e-4 * scale, name
    losses = [[h["train_loss"] for h in map(json.loads, (model / "train_log.jsonl").read_text().splitlines())]
              for model in (single, out)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # the log's loss is the whole batches', not rank 0's
    ran_on = json.loads((out / "lineage.json").read_text())[-1]["ran_on"]
    assert ran_on["world_size"] == 2 and ran_on["distributed_backend"] == "gloo"
    assert json.loads((single / "lineage.json").read_text())[-1]["ran_on"]["world_size"] == 1
    assert result.stderr.count("trained bilstm-crf") == 1 and result.stderr.count("saved to") == 1  # rank 0 alone


def rank_process(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=`rank` among `parent`'s children."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def test_a_rank_that_dies_stops_the_other_with_a_message_and_the_resumed_run_is_the_uninterrupted_one(
        files, distributed, tmp_path):
    out = tmp_path / "model"
    launcher = subprocess.Popen(torchrun(*train_args(files, out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=ENV, start_new_session=True)
    try:
        state = out / "checkpoint" / "trainer_state.json"
        for _ in range(1200):  # bounded: 2 minutes
            if state.is_file() or launcher.poll() is not None:
                break
            time.sleep(0.1)
        victim = rank_process(launcher.pid, 1)
        assert victim is not None and launcher.poll() is None, "the run ended before its first checkpoint was seen"
        os.kill(victim, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    # rank 0 hears of it from the launcher (SIGTERM) or from gloo mid-exchange, whichever comes first
    assert any(line.startswith("error: rank 0 of 2: ") and "--resume" in line
               and ("stopped by the launcher" in line or "another process of the run stopped" in line)
               for line in errors(stderr)), stderr
    assert not (out / "model.safetensors").exists() and state.is_file()  # no half-written bundle; the checkpoint kept

    resumed = launch(*train_args(files, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted, again = weights(distributed[0]), weights(out)
    # the same seed and world size: the same model, to the bit, interrupted or not
    assert all(torch.equal(uninterrupted[name], again[name]) for name in uninterrupted)


def test_an_output_another_run_writes_is_refused_on_every_rank(files, tmp_path):
    out = tmp_path / "model"
    with output_lock(out, "another tagshift train"):
        result = launch(*train_args(files, out))
    assert result.returncode != 0
    lines = errors(result.stderr)
    for rank in (0, 1):
        assert any(line.startswith(f"error: rank {rank} of 2: ") and "being written by another run" in line
                   for line in lines), result.stderr
    assert not out.exists()


def test_a_batch_that_does_not_split_across_the_processes_is_refused_with_the_fix():
    with pytest.raises(TagshiftError, match=r"--batch-size 15 does not split across 2 processes.*--batch-size 16"):
        World(size=2, rank=1).check_batch(15)
    World(size=2, rank=1).check_batch(16)


@pytest.mark.parametrize("batch, rank, share, weight", [
    ([0, 1, 2, 3], 1, [2, 3], 1.0),
    ([0, 1, 2], 0, [0, 1], 4 / 3),  # a short last batch: shares weighted by their size
    ([0, 1, 2], 1, [2], 2 / 3),
    ([7], 1, [7], 0.0),  # nothing left for rank 1: it trains one sentence at weight 0 to join the exchange
])
def test_each_rank_takes_its_share_of_a_batch_weighted_to_the_whole_batch_mean(batch, rank, share, weight):
    assert World(size=2, rank=rank).share(batch) == (share, pytest.approx(weight))


def test_adapt_through_a_mapping_head_with_pseudo_labels_and_distillation_runs_on_two_processes(single, tmp_path):
    """The pieces adapt adds to training (a mapping head folded at the end, pseudo-labels made
    before it, the teacher's scores on each rank's share) under DDP."""
    out = tmp_path / "adapted"
    result = launch("adapt", single, "--train", DATA / "crossner" / "politics" / "train.txt", "--epochs", "1",
                    "--batch-size", "8", "--labels", "map", "--pseudo-label", "--distill", "--out", out,
                    "--no-progress")
    assert result.returncode == 0, result.stderr
    step = json.loads((out / "lineage.json").read_text())[-1]
    assert step["step"] == "adapt" and step["ran_on"]["world_size"] == 2
    assert result.stderr.count("head surgery:") == 1  # the plan is reported once, by rank 0


def test_pretrain_runs_on_two_processes(tmp_path):
    corpus = read_corpus(DATA / "crossner" / "politics" / "train.txt")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(s.tokens) for s in corpus.sentences[:24]) + "\n", encoding="utf-8")
    out = tmp_path / "encoder"
    result = launch("pretrain", "--text", text, "--epochs", "1", "--batch-size", "8", "--held-out", "6",
                    "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    step = json.loads((out / "lineage.json").read_text())[-1]
    assert step["step"] == "pretrain" and step["ran_on"]["world_size"] == 2
    assert result.stderr.count("pretrained on") == 1
