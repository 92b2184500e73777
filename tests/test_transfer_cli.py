"""`tagshift adapt` end to end, and `tagshift evaluate --baseline` on what it makes.

A tiny BiLSTM-CRF trained on wikigold in IOB2 (4 types, 9 labels) is the source. It is
adapted to wikigold re-annotated with two extra types (6 types, 13 labels), to a CrossNER
politics slice that annotates two other types only (5 labels), and to wikigold with PER
renamed. `--epochs 0` (surgery only) shows what the head operation alone does: with quiet
new rows and renames, the untrained model predicts exactly what the source did.

The source and the adapted models most tests read are made once per module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import tagshift.training
from tagshift.cli import app, expand_optional_values
from tagshift.corpus import Corpus, read_corpus, write_corpus
from tagshift.labelmap import LabelMap
from tagshift.schemes import SCHEMES, Span, chunks, encode
from tagshift.taggers.backends import BILSTM_CRF
from tagshift.taggers.tagger import Entity, Tagged, Tagger
from tagshift.training import TrainConfig, evaluate_tagger, fit
from tagshift.training.loop import Checkpoint
from tests.conftest import REPO, CliResult
from tests.test_bundle_training import POLITICS, WIKIGOLD, read_log, tiny_bilstm, write_slice

SOURCE_TYPES = ["LOC", "MISC", "ORG", "PER"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- helpers ------------------------------------------------------------------------------


def invoke(*args: str | Path) -> CliResult:
    """`tagshift ARGS...` in-process, as the function-scoped `cli` fixture runs it (module
    fixtures cannot use that one)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def adapt(source: Path, train: Path, out: Path, *options: str | Path) -> CliResult:
    """`tagshift adapt` with the options every run here gives; fails the test on an error."""
    result = invoke("adapt", source, "--train", train, "--out", out, "--no-progress", "--seed", "0", *options)
    assert result.exit_code == 0, result.stderr
    return result


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def relabel(corpus: Corpus, path: Path, rename) -> Path:
    """`corpus` re-annotated in IOB2: `rename(span, n)` gives each entity's new type (None
    drops it); n counts the earlier entities of the span's type."""
    seen: Counter[str] = Counter()
    sentences = []
    for sentence in corpus.sentences:
        spans = []
        for span in chunks(sentence.tags):
            label = rename(span, seen[span.label])
            seen[span.label] += 1
            if label is not None:
                spans.append(Span(span.start, span.end, label))
        sentences.append(sentence.with_tags(encode(spans, len(sentence), SCHEMES["iob2"])))
    write_corpus(Corpus(sentences, None, [], corpus.layout), path, "conll")
    return path


def six_types(span: Span, n: int) -> str:
    """Every other LOC becomes CITY, every other ORG becomes TEAM."""
    return {"LOC": "CITY", "ORG": "TEAM"}.get(span.label, span.label) if n % 2 else span.label


def types_in(path: Path) -> set[str]:
    return {span.label for s in read_corpus(path).sentences for span in chunks(s.tags)}


def lineage(model: Path) -> list[dict]:
    return json.loads((model / "lineage.json").read_text(encoding="utf-8"))


def entities(tagged) -> list[list[tuple[int, int, str]]]:
    return [[(e.start, e.end, e.label) for e in t.entities] for t in tagged]


def write_map(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- data and models, once per module -----------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("transfer_data")
    wiki = read_corpus(WIKIGOLD)
    politics = read_corpus(POLITICS)
    write_slice(wiki, 0, 150, folder / "source_train.conll")
    keep_two = {"politician": "politician", "country": "country"}
    paths = {
        "source_train": folder / "source_train.conll",
        "six_train": relabel(write_slice(wiki, 150, 230, folder / "w150.conll"), folder / "six_train.conll", six_types),
        "six_test": relabel(write_slice(wiki, 480, 540, folder / "w480.conll"), folder / "six_test.conll", six_types),
        "two_train": relabel(
            write_slice(politics, 0, 60, folder / "p0.conll"), folder / "two_train.conll",
            lambda span, n: keep_two.get(span.label),
        ),
        "two_dev": relabel(
            write_slice(politics, 60, 90, folder / "p60.conll"), folder / "two_dev.conll",
            lambda span, n: keep_two.get(span.label),
        ),
        "renamed": relabel(
            write_slice(wiki, 230, 290, folder / "w230.conll"), folder / "renamed.conll",
            lambda span, n: "person" if span.label == "PER" else span.label,
        ),
        "small": relabel(write_slice(wiki, 290, 330, folder / "w290.conll"), folder / "small.conll", six_types),
        # the same sentences as two_train with all of CrossNER's types: a tag set the source finds
        "politics": folder / "p0.conll",
    }
    # The data these tests are about: 13 labels (6 types) and 5 labels (2 types) in IOB2.
    assert types_in(paths["six_train"]) == {"CITY", "LOC", "MISC", "ORG", "PER", "TEAM"}
    assert types_in(paths["six_test"]) == {"CITY", "LOC", "MISC", "ORG", "PER", "TEAM"}
    assert types_in(paths["two_train"]) == {"country", "politician"}
    assert types_in(paths["renamed"]) == {"LOC", "MISC", "ORG", "person"}
    return paths


@pytest.fixture(scope="module")
def held_out() -> list[list[str]]:
    """Sentences no model here trains on, to compare predictions."""
    return [s.tokens for s in read_corpus(WIKIGOLD).sentences[500:570]]


@pytest.fixture(scope="module")
def source(files, tmp_path_factory) -> Path:
    """The source model: tiny BiLSTM-CRF, IOB2, 4 types (9 labels), one epoch on 150 sentences."""
    out = tmp_path_factory.mktemp("source") / "model"
    corpus = read_corpus(files["source_train"])
    tagger = BILSTM_CRF.build(tiny_bilstm(), corpus, "iob2")
    fit(tagger, corpus, None, TrainConfig(epochs=1, lr=3e-2), out=out)
    assert tagger.types == SOURCE_TYPES and len(tagger.labels) == 9
    return out


@pytest.fixture(scope="module")
def source_tagger(source) -> Tagger:
    return tagshift.load(source)


@pytest.fixture(scope="module")
def iobes_source(files, tmp_path_factory) -> tuple[Path, Tagger]:
    """The same source in the BiLSTM's default scheme, IOBES (17 labels)."""
    out = tmp_path_factory.mktemp("iobes_source") / "model"
    corpus = read_corpus(files["source_train"])
    tagger = BILSTM_CRF.build(tiny_bilstm(), corpus)
    fit(tagger, corpus, None, TrainConfig(epochs=1, lr=3e-2), out=out)
    assert tagger.scheme == "iobes" and len(tagger.labels) == 17
    return out, tagshift.load(out)


@pytest.fixture(scope="module")
def six(source, files, tmp_path_factory) -> tuple[CliResult, Path]:
    """The source adapted to the six-type data: one epoch, scored on a test file."""
    out = tmp_path_factory.mktemp("six") / "model"
    return adapt(source, files["six_train"], out, "--epochs", "1", "--test", files["six_test"]), out


@pytest.fixture(scope="module")
def six_untrained(source, files, tmp_path_factory) -> tuple[CliResult, Path]:
    """The head surgery alone (quiet new rows), saved untrained."""
    out = tmp_path_factory.mktemp("six_untrained") / "model"
    return adapt(source, files["six_train"], out, "--epochs", "0"), out


# --- the plan, on data with more and with other types -------------------------------------


def test_adapt_to_six_types_prints_the_plan_and_saves(six, source, files):
    result, out = six
    err = result.stderr
    assert "label plan: extend (13 labels in iob2)" in err
    assert "source types (4): LOC, MISC, ORG, PER" in err
    assert "target data annotates (6): CITY, LOC, MISC, ORG, PER, TEAM" in err
    assert "  kept: LOC, MISC, ORG, PER" in err
    assert "  new: CITY, TEAM" in err
    assert "  dropped: none" in err
    assert "not annotated in the target data" not in err  # every type of the model is annotated
    assert "head surgery: 9 rows copied bit for bit, 4 added (quiet)" in err
    assert "before training, the adapted model differs from the source on" in err
    assert "training: 1 epochs at most" in err
    assert "early stopping" not in err  # no dev set to stop on
    assert f"saved to {out}" in err
    # the plan comes before any training
    assert err.index("label plan") < err.index("head surgery") < err.index("training:") < err.index("saved to")
    assert "micro" in result.stdout  # --test scores

    adapted = tagshift.load(out)
    assert adapted.scheme == "iob2"
    assert len(adapted.labels) == 13
    assert adapted.types == ["CITY", "LOC", "MISC", "ORG", "PER", "TEAM"]


def test_adapt_lineage_is_the_sources_then_an_adapt_step(six, source):
    _, out = six
    steps = lineage(out)
    source_steps = lineage(source)
    assert steps[: len(source_steps)] == source_steps
    assert len(steps) == len(source_steps) + 1
    step = steps[-1]
    assert step["step"] == "adapt"
    for key in ("source", "plan", "surgery", "adapt_options", "pseudo_labels", "changed_before_training", "scores"):
        assert key in step, key
    assert step["source"] == str(source)
    assert step["plan"]["new"] == ["CITY", "TEAM"]
    assert step["plan"]["kept"] == SOURCE_TYPES
    assert step["plan"]["operation"] == "extend"
    assert len(step["plan"]["labels"]) == 13
    assert step["surgery"]["init"] == "quiet"
    assert sorted(step["surgery"]["added"]) == ["B-CITY", "B-TEAM", "I-CITY", "I-TEAM"]
    assert step["adapt_options"]["init"] == "quiet"
    assert step["pseudo_labels"] is None
    assert step["scores"]["test"] is not None  # --test was given
    assert step["epochs_run"] == 1


def test_too_few_optimiser_steps_get_a_hint_with_the_epochs_that_would_do(six, six_untrained):
    """One epoch over a small target is a few steps: say so, and how many epochs would
    give enough. Saving untrained (--epochs 0) is deliberate and gets no hint."""
    note = [line for line in six[0].stderr.splitlines() if line.startswith("note: only ")]
    assert len(note) == 1 and "optimiser steps" in note[0] and "try --epochs " in note[0]
    assert "optimiser steps" not in six_untrained[0].stderr


def test_adapt_to_two_other_types_keeps_the_source_types_unannotated(source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--epochs", "1", "--dev", files["two_dev"])
    err = result.stderr
    # (no --labels: the source's entities mostly fall where this data annotates nothing, so
    # adapt keeps its types by extend and says how to keep them annotated)
    assert "adapt chose --labels extend: the target's types (country, politician) are not the source's" in err
    assert "--pseudo-label writes them into the data" in err
    assert "label plan: extend (13 labels in iob2)" in err  # 4 source types + 2 new
    assert "target data annotates (2): country, politician" in err
    assert "  kept: LOC, MISC, ORG, PER" in err
    assert "  new: country, politician" in err
    assert "not annotated in the target data: LOC, MISC, ORG, PER" in err
    assert "early stopping after 5 epochs without a better dev F1, not before step 250" in err
    assert "dev entity F1" in err
    adapted = tagshift.load(out)
    assert adapted.types == ["LOC", "MISC", "ORG", "PER", "country", "politician"]
    assert lineage(out)[-1]["plan"]["unannotated"] == SOURCE_TYPES


def test_labels_replace_gives_only_the_target_types(source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--labels", "replace", "--epochs", "1")
    err = result.stderr
    assert "label plan: replace (5 labels in iob2)" in err
    assert "  kept: none" in err
    assert "  dropped: LOC, MISC, ORG, PER" in err
    assert "every row of the head is fresh" in err
    assert "not annotated in the target data" not in err
    adapted = tagshift.load(out)
    assert adapted.types == ["country", "politician"]
    assert adapted.labels == ["O", "B-country", "I-country", "B-politician", "I-politician"]
    assert lineage(out)[-1]["plan"]["operation"] == "replace"


def test_labels_stack_builds_a_new_model_that_carries_its_source_into_predict(cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--labels", "stack", "--guide-states", "--epochs", "1",
                   "--dev", files["two_dev"], "--compare-scratch")
    assert "trained on the target alone" in result.stderr  # the control: the same model without the guide
    assert (out / "guide").is_dir() != (out / "adapted" / "guide").is_dir()
    out = out / "adapted" if (out / "adapted").is_dir() else out
    assert "label plan: stack (5 labels in iob2)" in result.stderr
    assert "reads the source's tag probabilities" in result.stderr
    assert "new model: 5 labels, every weight fresh; it reads the source's tag probabilities over its 9" in result.stderr
    info = cli("info", out)
    assert "guide: reads the tag probabilities and encoder states of the source in guide/ (types: LOC, MISC, ORG, PER)" \
        in info.stdout
    step = lineage(out)[-1]
    assert step["plan"]["operation"] == "stack" and step["adapt_options"]["guide_states"] is True
    assert (out / "guide" / "model.safetensors").is_file()
    text = tmp_path / "text.txt"
    text.write_text("Angela Merkel met the president of France in Paris .\n", encoding="utf-8")
    tagged = cli("predict", out, text, "--input-format", "text", "--format", "jsonl")
    assert tagged.exit_code == 0, tagged.stderr
    assert tagged.stdout.count("\n") == 1


def test_guide_lets_an_adapted_model_read_its_source_too(cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--guide", "--epochs", "1")
    assert "guide: the adapted model also reads the source's tag probabilities of each word" in result.stderr
    assert "guide: reads the tag probabilities of the source in guide/" in cli("info", out).stdout
    step = lineage(out)[-1]
    assert step["plan"]["operation"] != "stack" and step["adapt_options"]["guide"] is True
    text = tmp_path / "text.txt"
    text.write_text("Angela Merkel met the president of France in Paris .\n", encoding="utf-8")
    tagged = cli("predict", out, text, "--input-format", "text", "--format", "jsonl")
    assert tagged.exit_code == 0, tagged.stderr


def test_iob2_source_to_iobes_predicts_what_the_source_did(source, source_tagger, files, held_out, tmp_path):
    """IOBES S-X starts from IOB2 B-X and E-X from I-X: untrained, the same entities."""
    out = tmp_path / "model"
    result = adapt(source, files["six_train"], out, "--scheme", "iobes", "--epochs", "0")
    assert "label plan: extend (25 labels in iobes, converted from the source's iob2)" in result.stderr
    assert "S-PER <- B-PER" in result.stderr and "E-PER <- I-PER" in result.stderr
    assert "differs from the source on 0 entities in 0 of 80" in result.stderr
    adapted = tagshift.load(out)
    assert adapted.scheme == "iobes" and len(adapted.labels) == 25
    assert entities(adapted.predict(held_out)) == entities(source_tagger.predict(held_out))


def test_iobes_source_to_bilou_predicts_what_the_source_did(iobes_source, files, held_out, tmp_path):
    """BILOU is IOBES with other letters (U = S, L = E): the converted head can be exact."""
    source_path, source_tagger = iobes_source
    out = tmp_path / "model"
    result = adapt(source_path, files["six_train"], out, "--scheme", "bilou", "--epochs", "0")
    assert "label plan: extend (25 labels in bilou, converted from the source's iobes)" in result.stderr
    adapted = tagshift.load(out)
    for prefix_source, prefix_target in (("S", "U"), ("E", "L"), ("B", "B"), ("I", "I")):
        for entity_type in SOURCE_TYPES:
            i = source_tagger.labels.index(f"{prefix_source}-{entity_type}")
            j = adapted.labels.index(f"{prefix_target}-{entity_type}")
            assert torch.equal(adapted.head.linear.weight[j], source_tagger.head.linear.weight[i])
    assert "differs from the source on 0 entities in 0 of 80" in result.stderr
    assert entities(adapted.predict(held_out)) == entities(source_tagger.predict(held_out))


def test_a_softmax_source_given_a_crf_head_predicts_what_it_did(files, held_out, tmp_path):
    """--head crf: the CRF's transitions start at 0, so untrained it decodes the softmax's paths."""
    corpus = read_corpus(files["source_train"])
    softmax = BILSTM_CRF.build(replace(tiny_bilstm(), head="softmax"), corpus, "iob2")
    fit(softmax, corpus, None, TrainConfig(epochs=1, lr=3e-2), out=tmp_path / "softmax")
    result = adapt(tmp_path / "softmax", files["six_train"], tmp_path / "crf", "--head", "crf", "--epochs", "0")
    assert "differs from the source on 0 entities in 0 of 80" in result.stderr
    adapted = tagshift.load(tmp_path / "crf")
    assert type(adapted.head).__name__ == "CRFHead" and adapted.config.head == "crf"
    assert lineage(tmp_path / "crf")[-1]["adapt_options"]["head"] == "crf"
    before = softmax.predict(held_out)
    # measured 185 entities on these sentences
    assert any(t.entities for t in before), "the source finds no entity: nothing is compared"
    assert entities(adapted.predict(held_out)) == entities(before)


def test_a_crf_source_given_a_softmax_head_is_told_what_it_loses(source, files, tmp_path):
    result = adapt(source, files["six_train"], tmp_path / "model", "--head", "softmax", "--epochs", "0")
    assert "note: --head softmax drops the source's CRF transition scores" in result.stderr
    assert type(tagshift.load(tmp_path / "model").head).__name__ == "SoftmaxHead"


# --- surgery only: --epochs 0 ---------------------------------------------------------------


def test_epochs_0_quiet_predicts_what_the_source_did(six_untrained, source_tagger, held_out, files):
    result, out = six_untrained
    assert (
        "before training, the adapted model differs from the source on 0 entities in 0 of 80 training sentences"
        in result.stderr
    )
    assert "0 epochs" in result.stderr
    adapted = tagshift.load(out)
    assert len(adapted.labels) == 13
    before = source_tagger.predict(held_out)
    after = adapted.predict(held_out)
    # measured 72 entities on these sentences
    assert any(t.entities for t in before), "the source finds no entity: nothing is compared"
    assert [t.tags for t in after] == [t.tags for t in before]
    assert entities(after) == entities(before)
    step = lineage(out)[-1]
    assert step["changed_before_training"] == {"entities": 0, "sentences": 0}
    assert step["epochs_run"] == 0


def test_epochs_0_copies_kept_rows_bit_for_bit(six_untrained, source_tagger):
    _, out = six_untrained
    adapted = tagshift.load(out)
    old, new = source_tagger.head, adapted.head
    for i, label in enumerate(source_tagger.labels):
        j = adapted.labels.index(label)
        assert torch.equal(new.linear.weight[j], old.linear.weight[i]), label
        assert torch.equal(new.linear.bias[j], old.linear.bias[i]), label
    # the encoder is the source's; the target's new words and characters are rows added after
    # the old ones, starting as copies of UNK's row (--init quiet)
    old_state, new_state = source_tagger.network.encoder.state_dict(), adapted.network.encoder.state_dict()
    assert old_state.keys() == new_state.keys()
    for key in old_state:
        rows = old_state[key].shape[0] if old_state[key].dim() else None
        assert torch.equal(old_state[key], new_state[key][:rows] if rows is not None else new_state[key]), key
    for key in ("word_embedding.weight", "char_encoder.embedding.weight"):
        added = new_state[key][old_state[key].shape[0]:]
        assert all(torch.equal(row, old_state[key][1]) for row in added), key
    assert len(adapted.encoder.words) > len(source_tagger.encoder.words)


def test_info_shows_the_adapt_step(six_untrained, source):
    _, out = six_untrained
    result = invoke("info", out)
    assert result.exit_code == 0, result.stderr
    steps = len(lineage(source))
    assert f"step {steps + 1}: adapt" in result.stdout
    assert "types (6): CITY, LOC, MISC, ORG, PER, TEAM" in result.stdout
    as_json = json.loads(invoke("info", out, "--json").stdout)
    assert as_json["lineage"][-1]["step"] == "adapt"


def test_init_normal_reports_what_changed(source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["six_train"], out, "--init", "normal", "--epochs", "0")
    assert "head surgery: 9 rows copied bit for bit, 4 added (normal)" in result.stderr
    assert "before training, the adapted model differs from the source on" in result.stderr
    step = lineage(out)[-1]
    assert step["adapt_options"]["init"] == "normal"
    assert set(step["changed_before_training"]) == {"entities", "sentences"}


def test_rename_by_map_predicts_what_the_source_did(source, source_tagger, files, held_out, tmp_path):
    label_map = write_map(tmp_path / "map.toml", '[rename]\nPER = "person"\n')
    out = tmp_path / "model"
    result = adapt(source, files["renamed"], out, "--map", label_map, "--epochs", "0")
    err = result.stderr
    assert "label plan: extend (9 labels in iob2)" in err
    assert "  kept: LOC, MISC, ORG" in err
    assert "  renamed: PER -> person" in err
    assert "  new: none" in err
    assert "head surgery: 7 rows copied bit for bit, 0 added (quiet)" in err
    assert "B-person <- B-PER" in err and "I-person <- I-PER" in err
    assert "differs from the source on 0 entities in 0 of" in err

    adapted = tagshift.load(out)
    assert adapted.types == ["LOC", "MISC", "ORG", "person"]
    # each row is a bit-identical copy of the source row of the same tag, renamed
    name = {label: label.replace("-PER", "-person") for label in source_tagger.labels}
    for i, label in enumerate(source_tagger.labels):
        j = adapted.labels.index(name[label])
        assert torch.equal(adapted.head.linear.weight[j], source_tagger.head.linear.weight[i]), label
        assert torch.equal(adapted.head.linear.bias[j], source_tagger.head.linear.bias[i]), label
    order = [adapted.labels.index(name[label]) for label in source_tagger.labels]
    old_crf, new_crf = source_tagger.head.crf, adapted.head.crf
    assert torch.equal(new_crf.transitions[order][:, order], old_crf.transitions)
    assert torch.equal(new_crf.start[order], old_crf.start)
    assert torch.equal(new_crf.end[order], old_crf.end)

    before, after = source_tagger.predict(held_out), adapted.predict(held_out)
    assert [[name[t] for t in b.tags] for b in before] == [a.tags for a in after]
    renamed_before = [
        [(s, e, "person" if label == "PER" else label) for s, e, label in sentence] for sentence in entities(before)
    ]
    assert entities(after) == renamed_before
    confidences = lambda tagged: [e.confidence for t in tagged for e in t.entities]  # noqa: E731
    # probabilities (scale 1) from the same scores under reordered labels: equal when measured;
    # 1e-5 (~84 float32 eps of 1) allows the reordered sums their own rounding
    assert confidences(after) == pytest.approx(confidences(before), abs=1e-5)


@pytest.mark.parametrize("how", ["option", "map"])
def test_drop_removes_the_type(how, source, files, tmp_path):
    out = tmp_path / "model"
    if how == "option":
        options = ["--drop", "MISC"]
    else:
        options = ["--map", write_map(tmp_path / "map.toml", '[drop]\nlabels = ["MISC"]\n')]
    result = adapt(source, files["two_train"], out, *options, "--epochs", "0")
    err = result.stderr
    assert "label plan: extend (11 labels in iob2)" in err
    assert "  kept: LOC, ORG, PER" in err
    assert "  dropped: MISC" in err
    assert "  dropped: B-MISC, I-MISC" in err  # the surgery's report
    adapted = tagshift.load(out)
    assert "MISC" not in adapted.types
    assert not any(label.endswith("-MISC") for label in adapted.labels)
    assert adapted.types == ["LOC", "ORG", "PER", "country", "politician"]
    assert lineage(out)[-1]["plan"]["dropped"] == ["MISC"]


@pytest.mark.parametrize("option", ["--partial", "--distill"])
def test_partial_and_distill_train(option, source, files, tmp_path):
    """Each trains; distillation does so in bf16 (its loss term meets the fp32 scores bf16 hands on)."""
    out = tmp_path / "model"
    precision = "bf16" if option == "--distill" else "fp32"
    result = adapt(source, files["two_train"], out, option, "--epochs", "1", "--precision", precision)
    assert result.exit_code == 0, result.stderr
    options = lineage(out)[-1]["adapt_options"]
    if option == "--partial":
        assert options["partial"] is True
    else:
        assert options["distill"] == 1.0
    assert lineage(out)[-1]["precision"] == precision
    assert tagshift.load(out).types == ["LOC", "MISC", "ORG", "PER", "country", "politician"]


def test_distill_with_another_scheme_works_or_says_why(cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = cli("adapt", source, "--train", files["six_train"], "--out", out, "--scheme", "iobes", "--distill",
                 "--epochs", "1", "--no-progress")
    assert result.exit_code == 0 or "scheme" in result.stderr.strip().splitlines()[-1], result.stderr


def test_pseudo_labels_write_the_sources_entities_of_unannotated_types(source, files, tmp_path):
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--pseudo-label", "--pseudo-threshold", "0", "--epochs", "0")
    assert "pseudo-labels (confidence >= 0.0): " in result.stderr
    report = lineage(out)[-1]["pseudo_labels"]
    assert report["threshold"] == 0.0
    assert sum(report["entities"].values()) > 0 and report["sentences"] > 0  # measured 93 entities in 40 sentences
    assert set(report["entities"]) <= set(SOURCE_TYPES)  # only types the target data leaves unannotated
    assert report["below_threshold"] == {}


# --- errors: one line, exit code 1 ----------------------------------------------------------


def test_unknown_drop_type_is_one_line(cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = cli("adapt", source, "--train", files["two_train"], "--out", out, "--drop", "FOO", "--no-progress")
    assert_one_line_error(result, "--drop FOO", "not a type of the source model", "LOC, MISC, ORG, PER")
    assert not out.exists()


@pytest.mark.parametrize(
    "table", ['[rename]\nFOO = "bar"\n', '[drop]\nlabels = ["FOO"]\n', '[merge]\nX = ["PER", "FOO"]\n']
)
def test_map_naming_a_type_the_source_lacks_is_one_line(table, cli, source, files, tmp_path):
    label_map = write_map(tmp_path / "map.toml", table)
    out = tmp_path / "model"
    result = cli("adapt", source, "--train", files["two_train"], "--out", out, "--map", label_map, "--no-progress")
    line = assert_one_line_error(result, "'FOO'", "source model")
    assert f"{label_map}:2" in line  # the line of the map that names it
    assert not out.exists()


def test_out_holding_a_model_needs_overwrite(cli, six_untrained, source, files):
    _, out = six_untrained
    weights = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = cli("adapt", source, "--train", files["six_train"], "--out", out, "--epochs", "0", "--no-progress")
    assert_one_line_error(result, "already holds a model", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == weights  # untouched


def test_overwrite_replaces_the_model(cli, source, files, tmp_path):
    out = tmp_path / "model"
    adapt(source, files["two_train"], out, "--epochs", "0")
    assert "MISC" in tagshift.load(out).types
    adapt(source, files["two_train"], out, "--epochs", "0", "--drop", "MISC", "--overwrite")
    assert "MISC" not in tagshift.load(out).types


def test_resume_with_nothing_to_resume(cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = cli("adapt", source, "--train", files["two_train"], "--out", out, "--resume", "--no-progress")
    assert_one_line_error(result, "no checkpoint", "nothing to resume")


def test_resume_after_a_finished_adapt(cli, six, source, files):
    _, out = six
    result = cli(
        "adapt", source, "--train", files["six_train"], "--out", out, "--epochs", "1", "--resume", "--no-progress"
    )
    assert_one_line_error(result, "training there has finished", "nothing to resume")


def test_plot_without_baseline_is_one_line(cli, six, files, tmp_path):
    _, out = six
    plot = tmp_path / "chart.png"
    result = cli("evaluate", out, files["six_test"], "--plot", plot)
    assert_one_line_error(result, "--plot", "--baseline")
    assert not plot.exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--pseudo-label", "--pseudo-threshold", "1.5"], "should lie in [0, 1]"),
        (["--lr", "0.01", "--head-lr", "0.02"], "--lr and --head-lr"),
        (["--head", "hmm"], "head = 'hmm' should be 'crf' or 'softmax' or None"),
    ],
)
def test_bad_options_are_one_line(options, fragment, cli, source, files, tmp_path):
    out = tmp_path / "model"
    result = cli("adapt", source, "--train", files["two_train"], "--out", out, "--no-progress", *options)
    assert_one_line_error(result, fragment)
    assert not out.exists()


# --- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", [[], ["--labels", "stack"], ["--guide"]], ids=["recipe", "stack", "guided"])
def test_interrupted_adapt_resumes_to_the_uninterrupted_result(operation, cli, source, files, tmp_path, monkeypatch):
    """(A stacked or guided model's checkpoint holds its guide too, and resumes from it.)"""
    args = [
        "adapt", source, "--train", files["small"], "--epochs", "2", "--batch-size", "8", "--seed", "0", "--no-progress",
        *operation,
    ]
    whole = tmp_path / "whole"
    assert cli(*args, "--out", whole).exit_code == 0

    real = Checkpoint.save

    def interrupt_after_first_epoch(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    out = tmp_path / "resumed"
    monkeypatch.setattr(Checkpoint, "save", interrupt_after_first_epoch)
    interrupted = cli(*args, "--out", out)
    monkeypatch.undo()
    assert interrupted.exit_code != 0
    assert (out / tagshift.training.CHECKPOINT).is_dir()
    assert not (out / "config.json").exists()  # no model yet, only the checkpoint
    assert len(read_log(out)) == 1

    again = cli(*args, "--out", out)  # without --resume: refused, the checkpoint kept
    assert_one_line_error(again, "interrupted run", "--resume")

    resumed = cli(*args, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    a, b = tagshift.load(whole).network.state_dict(), tagshift.load(out).network.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert lineage(out)[-1]["epochs_run"] == 2
    assert not (out / tagshift.training.CHECKPOINT).exists()
    assert [r["epoch"] for r in read_log(out)] == [1, 2]
    assert [r["train_loss"] for r in read_log(out)] == [r["train_loss"] for r in read_log(whole)]


# --- evaluate --baseline ----------------------------------------------------------------------


def test_evaluate_against_the_source_groups_old_and_new(cli, six, source, files):
    _, out = six
    result = cli("evaluate", out, files["six_test"], "--baseline", source, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["groups"]) == {"old", "new", "all"}
    for row in data["groups"].values():
        for key in ("baseline_micro_f1", "system_micro_f1", "delta_micro_f1",
                    "baseline_macro_f1", "system_macro_f1", "delta_macro_f1"):
            assert key in row
            assert -1.0 <= row[key] <= 1.0  # F1s in [0, 1] and their differences: an exact range
    per_type = data["per_type"]
    assert {t for t, row in per_type.items() if row["group"] == "old"} == set(SOURCE_TYPES)
    assert {t for t, row in per_type.items() if row["group"] == "new"} == {"CITY", "TEAM"}
    for t in ("CITY", "TEAM"):  # the source cannot predict them
        assert per_type[t]["baseline_f1"] == 0.0  # no correct entity: exactly 0

    table = cli("evaluate", out, files["six_test"], "--baseline", source)
    assert table.exit_code == 0, table.stderr
    for name in ("old micro", "new micro", "all micro"):
        assert name in table.stdout


def test_evaluate_plot_writes_a_png(cli, six, source, files, tmp_path):
    _, out = six
    plot = tmp_path / "chart.png"
    result = cli("evaluate", out, files["six_test"], "--baseline", source, "--plot", plot)
    assert result.exit_code == 0, result.stderr
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


def test_anchor_trains_records_its_weight_and_says_when_it_has_nothing_to_pull(source, files, tmp_path):
    out = tmp_path / "anchored"
    result = adapt(source, files["two_train"], out, "--labels", "extend", "--anchor-weight", "0.05", "--epochs", "1")
    assert "anchor: each encoder weight is pulled towards the source's (L2-SP, weight 0.05)" in result.stderr
    assert lineage(out)[-1]["adapt_options"]["anchor"] == 0.05
    stacked = adapt(source, files["two_train"], tmp_path / "stacked", "--labels", "stack", "--anchor", "--epochs", "0")
    assert "--anchor has no source weights to pull it towards" in stacked.stderr
    assert lineage(tmp_path / "stacked")[-1]["adapt_options"]["anchor"] == 0.01  # bare: the default weight


# --- --pseudo-label=T and --distill=W -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["adapt", "m", "--pseudo-label=0.8"], ["adapt", "m", "--pseudo-label", "--pseudo-threshold", "0.8"]),
        (["adapt", "m", "--distill=0.5"], ["adapt", "m", "--distill", "--distill-weight", "0.5"]),
        (["adapt", "m", "--anchor=0.05"], ["adapt", "m", "--anchor", "--anchor-weight", "0.05"]),
        (["adapt", "m", "--pseudo-label", "--distill"], ["adapt", "m", "--pseudo-label", "--distill"]),
        (  # other options written --option=value are left to the parser
            ["adapt", "m", "--epochs=2", "--pseudo-threshold=0.3"],
            ["adapt", "m", "--epochs=2", "--pseudo-threshold=0.3"],
        ),
        (
            ["adapt", "m", "--distill=2", "--pseudo-label=0.7", "--out", "x"],
            ["adapt", "m", "--distill", "--distill-weight", "2",
             "--pseudo-label", "--pseudo-threshold", "0.7", "--out", "x"],
        ),
    ],
)
def test_expand_optional_values(argv, expected):
    assert expand_optional_values(argv) == expected


def test_console_script_with_pseudo_label_threshold(source, files, tmp_path):
    script = REPO / ".venv" / "bin" / "tagshift"
    if not script.is_file():
        script = Path(sys.executable).parent / "tagshift"
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(script), "adapt", str(source), "--train", str(files["two_train"]), "--out", str(out),
         "--epochs", "1", "--pseudo-label=0.5", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "pseudo-labels (confidence >= 0.5)" in done.stderr
    assert f"saved to {out}" in done.stderr
    step = lineage(out)[-1]
    assert step["adapt_options"]["pseudo_label"] == 0.5
    assert step["pseudo_labels"]["threshold"] == 0.5
    assert "--pseudo-label=0.5" in step["command"]


# --- labels suggest ---------------------------------------------------------------------------


def test_labels_suggest_writes_a_map_that_adapt_reads(source, files, tmp_path):
    proposal = tmp_path / "proposal.toml"
    result = invoke("labels", "suggest", source, files["renamed"], "--out", proposal)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {proposal}" in result.stderr
    text = proposal.read_text()
    assert "Check it, edit it, and pass it to `tagshift adapt --map`" in text
    LabelMap.from_toml(proposal)  # valid map syntax, whatever the weak source proposes
    shown = invoke("labels", "suggest", source, files["renamed"], "--json")
    data = json.loads(shown.stdout)
    assert set(data) == {"mapping", "min_share", "evidence"} and "predicted" in data["evidence"]
    adapted = adapt(source, files["renamed"], tmp_path / "model", "--map", proposal, "--epochs", "0")
    assert "label plan:" in adapted.stderr


def test_labels_suggest_rejects_a_share_outside_0_1(source, files):
    result = invoke("labels", "suggest", source, files["renamed"], "--min-share", "1.5")
    assert_one_line_error(result, "--min-share 1.5")


# --- what a review found --------------------------------------------------------------------


def test_the_plan_follows_the_training_data_not_dev(source, files, tmp_path):
    """Dev annotating every type must not switch pseudo-labels off for the types train leaves O."""
    result = adapt(source, files["two_train"], tmp_path / "model", "--dev", files["six_test"],
                   "--pseudo-label", "--pseudo-threshold", "0", "--epochs", "1")
    assert "target data annotates (2): country, politician" in result.stderr
    assert "not annotated in the target data: LOC, MISC, ORG, PER" in result.stderr
    assert sum(lineage(tmp_path / "model")[-1]["pseudo_labels"]["entities"].values()) > 0  # measured 93


def test_a_dev_set_without_entities_of_the_models_types_is_refused(source, files, tmp_path):
    empty = tmp_path / "empty.conll"
    empty.write_text("a\tO\nb\tO\n")
    result = invoke("adapt", source, "--train", files["two_train"], "--dev", empty, "--out", tmp_path / "m", "--no-progress")
    assert_one_line_error(result, "cannot choose an epoch")


def test_adapt_refuses_to_write_over_its_source(source, files):
    result = invoke("adapt", source, "--train", files["two_train"], "--out", source, "--overwrite", "--no-progress")
    assert_one_line_error(result, "is the source model")


def test_lineage_records_the_training_file_as_read_even_with_pseudo_labels(source, files, tmp_path):
    import hashlib

    adapt(source, files["two_train"], tmp_path / "model", "--pseudo-label", "--pseudo-threshold", "0", "--epochs", "0")
    step = lineage(tmp_path / "model")[-1]
    assert step["data"]["train"]["sha256"] == hashlib.sha256(files["two_train"].read_bytes()).hexdigest()
    assert "pseudo_labelled_content_sha256" in step["data"]["train"]
    assert invoke("info", tmp_path / "model").exit_code == 0
    assert step["source_weights_sha256"]


def test_options_with_nothing_to_act_on_or_a_known_risk_are_said(source, files, tmp_path):
    result = adapt(source, files["six_train"], tmp_path / "model", "--labels", "replace", "--partial", "--epochs", "0")
    assert "note: --pseudo-label and --partial have nothing to do" in result.stderr
    assert "  kept: none" in result.stderr
    alone = adapt(source, files["two_train"], tmp_path / "alone", "--head", "softmax", "--partial", "--epochs", "0")
    assert "note: --partial alone can let a softmax head drift" in alone.stderr
    anchored = adapt(source, files["two_train"], tmp_path / "anchored", "--head", "softmax", "--partial", "--distill", "--epochs", "0")
    assert "--partial alone" not in anchored.stderr


def test_a_mapping_head_checkpoint_can_be_adapted_again(source, files, tmp_path):
    from tagshift.bundle import save_bundle
    from tagshift.labelmap import LabelMap as Map
    from tagshift.transfer import adapt_head, make_plan

    tagger = tagshift.load(source)
    plan = make_plan(tagger.labels, tagger.scheme, {"person"}, Map(rename={"PER": "person"}), operation="map")
    mapped, _ = adapt_head(tagger, plan)
    save_bundle(mapped, tmp_path / "checkpoint")
    result = adapt(tmp_path / "checkpoint", files["two_train"], tmp_path / "again", "--epochs", "0")
    assert "label plan: extend" in result.stderr


def test_the_forgetting_report_compares_a_renamed_type_under_its_new_name(source, files, tmp_path):
    label_map = write_map(tmp_path / "map.toml", '[rename]\nPER = "person"\n')
    adapt(source, files["renamed"], tmp_path / "model", "--map", label_map, "--epochs", "0")
    result = invoke("evaluate", tmp_path / "model", files["renamed"], "--baseline", source, "--json")
    data = json.loads(result.stdout)
    person = data["per_type"]["person"]
    assert person["group"] == "old" and "PER" not in data["per_type"]
    # untrained, the adapted model is the source under new names: no change anywhere
    # the same predictions give the same counts, so the same floats: exact
    assert person["baseline_f1"] == person["system_f1"] and data["groups"]["all"]["delta_micro_f1"] == 0


def test_plot_paths_are_checked_before_any_work(source, files, tmp_path):
    result = invoke("evaluate", source, files["six_test"], "--baseline", source, "--plot", tmp_path)
    assert_one_line_error(result, "is a directory")
    assert result.stdout == ""
    nested = tmp_path / "new" / "dir" / "chart.png"  # issue 22: a typo must not create directories
    assert_one_line_error(invoke("evaluate", source, files["six_test"], "--baseline", source, "--plot", nested),
                          "does not exist")
    chart = tmp_path / "chart.png"
    assert invoke("evaluate", source, files["six_test"], "--baseline", source, "--plot", chart).exit_code == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adapt_reads_a_config_file_and_options_win(source, files, tmp_path):
    config = tmp_path / "adapt.toml"
    config.write_text(
        f'source = "{source}"\ntrain = "{files["two_train"]}"\nout = "model"\n'
        '[adapt]\npseudo_label = 0.0\npartial = true\ninit = "normal"\n[training]\nepochs = 0\nseed = 3\n'
    )
    result = invoke("adapt", "--config", config, "--init", "quiet", "--no-progress")
    assert result.exit_code == 0, result.stderr
    step = lineage(tmp_path / "model")[-1]  # `out` is relative to the file
    assert step["adapt_options"]["pseudo_label"] == 0.0 and step["adapt_options"]["partial"] is True
    assert step["adapt_options"]["init"] == "quiet"  # the option beat the file
    assert step["options"]["seed"] == 3 and step["options"]["epochs"] == 0


def test_adapt_config_errors_name_the_key(source, files, tmp_path):
    config = tmp_path / "adapt.toml"
    config.write_text(f'source = "{source}"\ntrain = "{files["two_train"]}"\nout = "m"\n[adapt]\npseudo = 0.5\n')
    assert_one_line_error(invoke("adapt", "--config", config), "unknown adapt option(s): pseudo")
    config.write_text(f'source = "{source}"\nout = "m"\n')
    assert_one_line_error(invoke("adapt", "--config", config), "missing train")


# --- what a second review found ----------------------------------------------------------------


def test_a_model_compared_with_itself_in_strict_iobes_changes_nothing(source, files, tmp_path):
    iobes = tmp_path / "test.iobes"
    assert invoke("convert", files["six_test"], iobes, "--to", "iobes").exit_code == 0
    result = invoke("evaluate", source, iobes, "--baseline", source, "--mode", "strict", "--scheme", "iobes", "--json")
    data = json.loads(result.stdout)
    assert data["groups"]["all"]["delta_micro_f1"] == 0  # the same counts: exact
    assert data["baseline"]["micro"] == data["system"]["micro"]  # the same predictions, read the same way


def test_the_forgetting_report_follows_renames_across_steps_and_leaves_dropped_types_out(source, files, tmp_path):
    first = write_map(tmp_path / "first.toml", '[rename]\nPER = "person"\n[drop]\nlabels = ["MISC"]\n')
    second = write_map(tmp_path / "second.toml", '[rename]\nperson = "human"\n')
    adapt(source, files["renamed"], tmp_path / "one", "--map", first, "--epochs", "0")
    human = relabel(read_corpus(files["renamed"]), tmp_path / "human.conll",
                    lambda span, n: {"person": "human", "MISC": None}.get(span.label, span.label))
    adapt(tmp_path / "one", human, tmp_path / "two", "--map", second, "--epochs", "0")
    data = json.loads(invoke("evaluate", tmp_path / "two", human, "--baseline", source, "--json").stdout)
    assert data["per_type"]["human"]["group"] == "old" and "person" not in data["per_type"]
    assert "MISC" not in data["per_type"]  # dropped: neither side predicts it
    assert data["per_type"]["human"]["baseline_f1"] > 0  # the source's PER, read as human: measured 0.42


def test_the_command_lines_learning_rate_beats_the_files_head_lr(source, files, tmp_path):
    config = tmp_path / "adapt.toml"
    config.write_text(f'source = "{source}"\ntrain = "{files["two_train"]}"\nout = "m"\n[training]\nhead_lr = 0.01\nepochs = 0\n')
    result = invoke("adapt", "--config", config, "--lr", "0.05", "--no-progress")
    assert "head lr 0.05, encoder lr 0.005" in result.stderr
    result = invoke("adapt", "--config", config, "--layer-decay", "0.8", "--out", tmp_path / "decay", "--no-progress")
    assert "encoder lr 0.001 at its top layer, x0.8 each layer down" in result.stderr  # the file's head_lr 0.01, a tenth for the top layer


def test_the_command_line_switches_off_what_the_file_switched_on(source, files, tmp_path):
    config = tmp_path / "adapt.toml"
    config.write_text(
        f'source = "{source}"\ntrain = "{files["two_train"]}"\n'
        '[adapt]\npseudo_label = true\npartial = true\ndistill = true\n[training]\nepochs = 0\n'
    )
    on = invoke("adapt", "--config", config, "--out", tmp_path / "on", "--no-progress")
    assert on.exit_code == 0, on.stderr
    options = lineage(tmp_path / "on")[-1]["adapt_options"]
    assert (options["pseudo_label"], options["partial"], options["distill"]) == (0.5, True, 1.0)  # true: the defaults
    off = invoke("adapt", "--config", config, "--out", tmp_path / "off", "--no-pseudo-label", "--no-partial",
                 "--no-distill", "--no-progress")
    assert off.exit_code == 0, off.stderr
    options = lineage(tmp_path / "off")[-1]["adapt_options"]
    assert (options["pseudo_label"], options["partial"], options["distill"]) == (None, False, None)
    clash = invoke("adapt", "--config", config, "--out", tmp_path / "x", "--no-distill", "--distill-weight", "2")
    assert_one_line_error(clash, "--no-distill and --distill-weight")

def test_a_drop_that_is_not_a_list_is_one_line(source, files, tmp_path):
    config = tmp_path / "adapt.toml"
    config.write_text(f'source = "{source}"\ntrain = "{files["two_train"]}"\nout = "m"\n[adapt]\ndrop = "MISC"\n')
    assert_one_line_error(invoke("adapt", "--config", config), "drop = 'MISC' should be list")


def test_compare_scratch_trains_a_target_only_control_and_records_the_verdict(source, files, tmp_path):
    """--compare-scratch: a model of the same family trained on the target alone (into
    OUT/target-only) is scored beside the adapted one on dev, over the types the data and dev
    annotate; adapt says which won, both lineages keep both scores, and OUT holds the better
    (a map leaves the adapted model no type the control lacks)."""
    out = tmp_path / "model"
    result = adapt(source, files["two_train"], out, "--dev", files["two_dev"], "--epochs", "15", "--lr", "0.03", "--compare-scratch",
                   "--labels", "map")
    record = lineage(out)[-1]["compare_scratch"]
    assert record["types"] == ["country", "politician"]
    assert 0.0 <= record["adapted_dev_f1"] <= 1.0 and 0.0 <= record["scratch_dev_f1"] <= 1.0
    assert record["pays"] == (record["adapted_dev_f1"] >= record["scratch_dev_f1"])
    assert record["scratch_epochs"] >= 1
    dev = read_corpus(files["two_dev"])

    def dev_f1(path: Path) -> float:
        return evaluate_tagger(tagshift.load(path), dev).restrict(record["types"]).micro.f1

    if record["pays"]:  # the adapted model stays; the control beside it
        assert record["kept"] == "adapted" and "adapting paid" in result.stderr
        assert lineage(out)[-1]["step"] == "adapt" and lineage(out / "target-only")[-1]["step"] == "train"
        assert (dev_f1(out), dev_f1(out / "target-only")) == (record["adapted_dev_f1"], record["scratch_dev_f1"])
    else:  # the control takes OUT's place
        assert record["kept"] == "target-only" and "OUT holds the model trained on the target alone" in result.stderr
        assert lineage(out)[-1]["step"] == "train" and lineage(out / "adapted")[-1]["step"] == "adapt"
        assert (dev_f1(out), dev_f1(out / "adapted")) == (record["scratch_dev_f1"], record["adapted_dev_f1"])
    assert lineage(out / ("target-only" if record["pays"] else "adapted"))[-1]["compare_scratch"] == record
    # the control trains as long as the adapted run did, in the same batches, seed and head rate
    control, adapted = (out / "target-only", out) if record["pays"] else (out, out / "adapted")
    shared = ("epochs", "patience", "batch_size", "seed", "head_lr", "min_steps")
    ran = [{key: lineage(path)[-1]["options"][key] for key in shared} for path in (control, adapted)]
    assert ran[0] == ran[1]
    assert (out / "train_log.jsonl").is_file()  # each model keeps its own training log


def test_the_recipe_trains_a_control_where_the_source_finds_little(source, files, tmp_path, monkeypatch):
    """Where the source finds under FEW_FOUND of the target's entities, the recipe's map comes
    with the control (when dev is given; --no-compare-scratch says no). The threshold is raised
    so that this tiny source falls under it."""
    from tagshift.transfer import recipe

    monkeypatch.setattr(recipe, "FEW_FOUND", 1.01)
    dev = files["two_dev"].parent / "p60.conll"  # politics with all its types, as files["politics"]
    err = adapt(source, files["politics"], tmp_path / "a", "--dev", dev, "--epochs", "1").stderr
    assert "adapt chose --labels map (the encoder at the head's rate, a target-only control, the better on dev kept)" in err
    assert "trained on the target alone" in err and "compare_scratch" in lineage(tmp_path / "a")[-1]
    assert (tmp_path / "a" / "target-only").is_dir() != (tmp_path / "a" / "adapted").is_dir()
    err = adapt(source, files["politics"], tmp_path / "b", "--epochs", "1").stderr
    assert "note: give --dev and adapt also trains a target-only control" in err
    adapt(source, files["politics"], tmp_path / "a", "--dev", dev, "--epochs", "1", "--no-compare-scratch", "--overwrite")
    assert "compare_scratch" not in lineage(tmp_path / "a")[-1]
    assert not (tmp_path / "a" / "target-only").exists() and not (tmp_path / "a" / "adapted").exists()


def test_a_better_control_takes_the_adapted_models_place(files, tmp_path):
    """The swap itself, made certain: an 'adapted' model with every weight zero predicts O
    everywhere (dev F1 0), the control trains; OUT then holds the control, OUT/adapted the
    adapted model, each whole."""
    from tagshift.bundle import save_bundle
    from tagshift.transfer.scratch import compare_scratch, swap_in_control

    train, dev = read_corpus(files["two_train"]), read_corpus(files["two_dev"])
    adapted = BILSTM_CRF.build(tiny_bilstm(), train, "iob2")
    assert adapted.labels[0] == "O"  # all-zero scores tie, and the tie goes to the first label
    with torch.no_grad():
        for weight in adapted.network.parameters():
            weight.zero_()
    out = tmp_path / "out"
    save_bundle(adapted, out)
    comparison, control, _ = compare_scratch(adapted, train, dev, TrainConfig(epochs=15, lr=3e-2), out / "target-only")
    assert comparison.adapted_dev_f1 == 0.0
    assert comparison.scratch_dev_f1 > 0.0, "15 epochs on 60 sentences should find some country or politician"
    assert comparison.kept == "target-only" and "OUT/adapted the adapted one" in comparison.render()
    swap_in_control(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # nothing left beside it
    assert evaluate_tagger(tagshift.load(out), dev).micro.f1 == comparison.scratch_dev_f1
    assert evaluate_tagger(tagshift.load(out / "adapted"), dev).micro.f1 == 0.0
    assert not (out / "target-only").exists()


def test_compare_scratch_without_dev_is_refused_before_any_training(source, files, tmp_path):
    result = invoke("adapt", source, "--train", files["two_train"], "--out", tmp_path / "m", "--compare-scratch")
    assert_one_line_error(result, "--compare-scratch", "--dev")
    assert not (tmp_path / "m").exists()


def test_adapt_takes_a_new_tag_set_the_source_finds_as_a_new_domain(source, files, tmp_path):
    """No --labels and no --map, on data whose types are none of the source's but whose
    entities are where the source finds its own: adapt chooses the mapping head with the
    suggested map and the encoder at the head's rate (transfer/recipe.py), says why before
    training, and records it in the lineage. An --encoder-lr given wins over the recipe's."""
    out = tmp_path / "model"
    err = adapt(source, files["politics"], out, "--epochs", "1").stderr
    assert "adapt chose --labels map (the encoder at the head's rate): the target's types (country, election, " in err
    assert "PER -> politician" in err and "a new domain, taken with the suggested map" in err
    assert "label plan: map" in err
    head = re.search(r"head lr ([0-9.e-]+), encoder lr ([0-9.e-]+)", err)
    assert head and head.group(1) == head.group(2) and "a tenth of the head's" not in err
    step = tagshift.load(out).lineage[-1]
    assert step["recipe"]["labels"] == "map" and step["recipe"]["evidence"]["mapping"]["PER"] == "politician"
    assert step["recipe"]["evidence"]["landed"] >= 0.8  # the recipe's NEW_DOMAIN_LANDED
    assert step["adapt_options"]["labels"] == "map"

    err = adapt(source, files["politics"], tmp_path / "given", "--epochs", "0", "--encoder-lr", "0.001").stderr
    assert "adapt chose --labels map" in err and "encoder lr 0.001" in err


def test_the_recipe_leaves_a_chosen_operation_a_map_or_known_types_alone(source_tagger, files):
    """Where --labels or --map is given there is nothing to choose; a target that keeps the
    source's type names (some or all) is extended at the usual rates; the recipe's rates give
    way to the ones the user set."""
    from tagshift.labelmap import LabelMap as Map
    from tagshift.training import TrainConfig
    from tagshift.transfer.recipe import Recipe, choose_recipe

    politics = read_corpus(files["politics"])
    assert choose_recipe(source_tagger, politics, "extend", None) is None
    assert choose_recipe(source_tagger, politics, None, Map(rename={"PER": "person"})) is None
    kept = choose_recipe(source_tagger, politics, None, None, ["--pseudo-label"])
    assert kept.labels == "extend" and kept.reason == "--pseudo-label keeps the source's types as they are"
    assert choose_recipe(source_tagger, read_corpus(files["source_train"]), None, None).labels == "extend"
    six = choose_recipe(source_tagger, read_corpus(files["six_train"]), None, None)
    assert six.labels == "extend" and "keeps the source's type names (LOC, MISC, ORG, PER)" in six.reason
    assert not six.encoder_at_head_rate and six.evidence is None  # (nothing predicted to choose it)
    # a source that finds every target entity (as PER) is mapped without a warning; one that
    # finds a tenth of them is still mapped (its entities all land), with a warning
    def finding(share: int) -> list[Tagged]:
        return [Tagged(s.tokens, [], [Entity(c.start, c.end, "PER", None) for c in chunks(s.tags)] if i % share == 0 else [])
                for i, s in enumerate(politics.sentences)]
    every = choose_recipe(source_tagger, politics, None, None, predicted=finding(1))
    assert every.labels == "map" and every.evidence["found"] == 1.0 and "warning" not in every.reason
    assert every.head_epochs is None  # head-first helped the transformer's map, not the BiLSTM-CRF's
    assert not every.sparse_dev  # (measured on the transformer's recipe only)
    warned = choose_recipe(source_tagger, politics, None, None, predicted=finding(10))
    assert warned.labels == "map" and warned.evidence["landed"] == 1.0 and warned.evidence["found"] < 0.2
    assert f"warning: the source finds only {warned.evidence['found']:.0%} of the target's entities" in warned.reason
    # ... and a target-only control, the better kept (every.control: the source finds all)
    assert warned.control and not every.control and "a target-only control" in warned.render()
    # a source that finds nothing of its own in the target's text has nothing to map
    blind = [Tagged(s.tokens, ["O"] * len(s.tokens), []) for s in politics.sentences]
    none = choose_recipe(source_tagger, politics, None, None, predicted=blind)
    assert none.labels == "extend" and "finds no entities of its own" in none.reason
    assert none.encoder_at_head_rate and none.control and "a target-only control" in none.render()

    recipe = Recipe("map", None, True, 0.5, "why", head_epochs=5)
    chosen = recipe.apply(TrainConfig(epochs=20, head_lr=5e-4, encoder_lr=5e-5), {})
    assert (chosen.encoder_lr, chosen.layer_decay, chosen.freeze_epochs) == (5e-4, 0.5, 5)
    # a short run trains the head alone for a quarter of its epochs at most, so the encoder still fine-tunes
    assert recipe.apply(TrainConfig(epochs=4), {}).freeze_epochs == 1
    assert recipe.apply(TrainConfig(epochs=3), {}).freeze_epochs == 0
    kept = recipe.apply(TrainConfig(epochs=20, head_lr=5e-4, encoder_lr=1e-5, layer_decay=0.9, freeze_epochs=2),
                        {"encoder_lr": 1e-5, "layer_decay": 0.9, "freeze_epochs": 2})
    assert (kept.encoder_lr, kept.layer_decay, kept.freeze_epochs) == (1e-5, 0.9, 2)
    assert "the head alone first, for 5 epochs" in recipe.render() and "--freeze-epochs" in recipe.render()
    # sparse dev scoring (the transformer's): 100 sentences beside 450 of dev, batch 16, is
    # every 5 epochs of 7 steps; a dev set no larger than train, or a --dev-every given, is left alone
    sparse = Recipe("map", None, True, None, "why", sparse_dev=True)
    assert sparse.apply(TrainConfig(batch_size=16), {}, 100, 450).dev_every == 35
    assert sparse.apply(TrainConfig(), {}, 450, 100).dev_every == 0
    assert sparse.apply(TrainConfig(dev_every=3), {"dev_every": 3}, 100, 450).dev_every == 3
    assert recipe.apply(TrainConfig(), {}, 100, 450).dev_every == 0 and "ceil(dev / train)" in sparse.render()
