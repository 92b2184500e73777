"""What a hostile tester found in runs and outputs (issue 22): a resume that must be the run
it continues, one writer per output, rates that are numbers, a diverging run that stops
before it saves, and output paths checked before the work. Each test failed before its fix."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tagshift
from tagshift.corpus import read_corpus
from tagshift.lock import lock_path, output_lock
from tagshift.taggers.backends import BILSTM_CRF
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.training import TrainConfig, fit
from tagshift.training.loop import Checkpoint, Diverged
from tests.conftest import DATA, CliResult

WIKI = DATA / "wikigold" / "wikigold.slice.conll"
TINY = "[model]\nword_dim = 20\nchar_dim = 8\nchar_hidden = 8\nhidden = 16\n[training]\nlr = 0.01\nbatch_size = 8\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    corpus = read_corpus(WIKI)
    blocks = {"train": corpus.sentences[:60], "dev": corpus.sentences[60:90]}
    paths = {}
    for name, sentences in blocks.items():
        paths[name] = folder / f"{name}.conll"
        paths[name].write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(s.tokens, s.tags))
                                           for s in sentences) + "\n", encoding="utf-8")
    paths["config"] = folder / "tiny.toml"
    paths["config"].write_text(TINY, encoding="utf-8")
    return paths


def one_line_error(result: CliResult, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def interrupted_train(cli, files, out: Path, monkeypatch, *options: str) -> None:
    """`tagshift train` killed after its first epoch's checkpoint."""
    real = Checkpoint.save

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "save", killed)
        result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                     "--config", files["config"], "--epochs", "2", "--no-progress", *options)
    assert result.exit_code != 0 and (out / "checkpoint" / "config.json").is_file(), result.stderr


# --- 1. a resume is the run it continues ------------------------------------------------------


@pytest.mark.parametrize("changed, named", [(("--head", "softmax"), "head 'crf' (now 'softmax')"),
                                            (("--scheme", "iob2"), "scheme iobes (now iob2)")])
def test_resume_with_another_model_option_is_refused_naming_it(cli, files, tmp_path, monkeypatch, changed, named):
    out = tmp_path / "model"
    interrupted_train(cli, files, out, monkeypatch)
    result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                 "--config", files["config"], "--epochs", "2", "--no-progress", "--resume", *changed)
    one_line_error(result, "another", named, "without --resume")
    assert not (out / "config.json").exists() and (out / "checkpoint").is_dir()  # nothing lost
    resumed = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                  "--config", files["config"], "--epochs", "2", "--no-progress", "--resume")
    assert resumed.exit_code == 0, resumed.stderr


def test_resume_with_another_training_option_names_it_with_both_values(cli, files, tmp_path, monkeypatch):
    out = tmp_path / "model"
    interrupted_train(cli, files, out, monkeypatch)
    result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                 "--config", files["config"], "--epochs", "2", "--no-progress", "--resume", "--lr", "0.02")
    one_line_error(result, "other training options: lr 0.01 (now 0.02)")


# --- 2. leftovers after a kill -------------------------------------------------------------------


def test_a_checkpoint_left_as_checkpoint_old_is_recovered_not_restarted(cli, files, tmp_path, monkeypatch):
    """A kill between the checkpoint's two renames leaves only checkpoint.old: a run without
    --resume must not start from scratch over it, and --resume continues it."""
    out = tmp_path / "model"
    interrupted_train(cli, files, out, monkeypatch)
    os.replace(out / "checkpoint", out / "checkpoint.old")
    again = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                "--config", files["config"], "--epochs", "2", "--no-progress")
    one_line_error(again, "interrupted run", "--resume")
    resumed = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                  "--config", files["config"], "--epochs", "2", "--no-progress", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert [json.loads(line)["epoch"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]


# --- 3. one writer per output --------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(cli, files, tmp_path):
    out = tmp_path / "model"
    with output_lock(out, "tagshift train (the first)"):
        result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--out", out,
                     "--config", files["config"], "--epochs", "1", "--no-progress")
        one_line_error(result, "being written by another run", f"pid {os.getpid()}", "tagshift train (the first)")
        adapted = cli("adapt", tmp_path / "nowhere", "--train", files["train"], "--out", out, "--epochs", "1")
        one_line_error(adapted, "being written by another run")
    assert not lock_path(out).exists()  # released
    assert cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--out", out,
               "--config", files["config"], "--epochs", "1", "--no-progress").exit_code == 0


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "model"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "started": 0}))
    with output_lock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    lock_path(out).write_text("{\"pid\": ")  # a writer killed while writing the lock itself
    with output_lock(out):
        pass


def test_two_processes_started_together_get_one_lock(tmp_path):
    """O_EXCL makes taking the lock one step: of two processes racing for it, one wins."""
    script = ("import sys, time; from tagshift.lock import output_lock, LockedError\n"
              "try:\n    with output_lock(sys.argv[1]):\n        time.sleep(2); print('held')\n"
              "except LockedError:\n    print('refused')\n")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    ended = [run.communicate(timeout=60) for run in runs]
    assert sorted(out.strip() for out, _ in ended) == ["held", "refused"], [err for _, err in ended]


# --- 5. rates that are numbers; a run that diverges stops ---------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_train_and_adapt_refuse_a_rate_that_is_not_a_positive_number(cli, files, tmp_path, value):
    trained = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--out", tmp_path / "m",
                  "--config", files["config"], "--lr", value, "--no-progress")
    one_line_error(trained, "lr")
    assert not (tmp_path / "m" / "config.json").exists()
    source = tmp_path / "source"
    tagger = BILSTM_CRF.build(BiLSTMConfig(hidden=8, char_hidden=4, word_dim=10), read_corpus(files["train"]), seed=0)
    tagshift.save(tagger, source)
    adapted = cli("adapt", source, "--train", files["train"], "--out", tmp_path / "a", "--lr", value, "--no-progress")
    one_line_error(adapted, "lr")


def test_a_run_whose_loss_turns_non_finite_stops_with_the_step_and_saves_nothing(files, tmp_path):
    """A rate of 1e37 is finite but overflows the first update (weights near float32's
    largest, 3.4e38): the next loss is NaN. The run must stop there, naming the epoch and
    step, with no NaN in a log, checkpoint or bundle."""
    train = read_corpus(files["train"])
    tagger = BILSTM_CRF.build(BiLSTMConfig(hidden=8, char_hidden=4, word_dim=10), train, seed=0)
    with pytest.raises(Diverged, match=r"at epoch 1, batch \d+ \(optimiser step \d+\): training diverged"):
        fit(tagger, train, None, TrainConfig(epochs=2, lr=1e37, clip=0.0, batch_size=8), out=tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()
    assert not (tmp_path / "m" / "checkpoint").exists()
    log = tmp_path / "m" / "train_log.jsonl"
    assert not log.exists() or all(math.isfinite(json.loads(line)["train_loss"]) for line in log.read_text().splitlines())


# --- 6. output paths checked before the work ----------------------------------------------------


@pytest.mark.parametrize("where, says", [
    ("a directory", "is a directory"),
    ("under a file", "is a file, not a directory"),
    ("in a missing directory", "does not exist"),
    ("under /proc", "cannot write there"),
])
def test_predict_checks_its_output_before_tagging(cli, files, tmp_path, monkeypatch, where, says):
    model = tmp_path / "model"
    tagshift.save(BILSTM_CRF.build(BiLSTMConfig(hidden=8, char_hidden=4, word_dim=10), read_corpus(files["train"])), model)
    (tmp_path / "file").write_text("x")
    out = {"a directory": tmp_path, "under a file": tmp_path / "file" / "out.jsonl",
           "in a missing directory": tmp_path / "missing" / "out.jsonl", "under /proc": Path("/proc/out.jsonl")}[where]
    tagged = []
    monkeypatch.setattr(tagshift.taggers.tagger.Tagger, "predict", lambda *a, **k: tagged.append(1) or [])
    one_line_error(cli("predict", model, files["dev"], "--out", out), str(out), says)
    assert not tagged  # refused before any tagging
    assert not (tmp_path / "missing").exists()


def test_convert_checks_its_output_before_reading(cli, files, tmp_path):
    one_line_error(cli("convert", files["train"], tmp_path / "missing" / "x.conll"), "does not exist")
    one_line_error(cli("convert", tmp_path / "no-such-input.conll", tmp_path), "is a directory")


def test_train_refuses_an_output_that_is_a_file(cli, files, tmp_path):
    (tmp_path / "model").write_text("not a model")
    result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--out", tmp_path / "model",
                 "--config", files["config"], "--epochs", "1", "--no-progress")
    one_line_error(result, "is a file")
    assert (tmp_path / "model").read_text() == "not a model"


@pytest.mark.parametrize("damage, says", [
    (lambda text: text[: len(text) // 2], "trainer_state.json: not valid JSON"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "fingerprint"}),
     "field 'fingerprint' is missing"),
    (lambda text: json.dumps({**json.loads(text), "state": {"epoch": "two"}}), "field 'state'"),
    (lambda text: "[]", "not a JSON object"),
])
def test_a_damaged_trainer_state_is_one_line_on_resume(cli, files, tmp_path, monkeypatch, damage, says):
    """Issue 22, item 4: a truncated trainer_state.json (once a JSONDecodeError), one without
    its fingerprint (once a KeyError) or with a bad state."""
    out = tmp_path / "model"
    interrupted_train(cli, files, out, monkeypatch)
    state = out / "checkpoint" / "trainer_state.json"
    state.write_text(damage(state.read_text()))
    result = cli("train", "--backend", "bilstm-crf", "--train", files["train"], "--dev", files["dev"], "--out", out,
                 "--config", files["config"], "--epochs", "2", "--no-progress", "--resume")
    one_line_error(result, says, "without --resume")
