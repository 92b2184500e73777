"""The benchmark scripts stay runnable: each one's --quick mode (tiny slices, one epoch) runs
end to end and writes its table. Scores are not checked here; the full runs are benchmarks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


SCRIPTS = ["conll.py", "paper_tasks.py", "ablations.py", "incremental.py", "crossner.py", "mit_movie.py", "speed.py",
           "spacy_new_types.py", "bootstrap.py", "pretrain.py", "serve.py", "spacy_conll.py", "speed.py --predict-only"]
TABLES = {"speed.py --predict-only": "speed-predict"}  # a script's part that publishes a table of its own


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode_runs_and_writes_its_table(script, shared_data):
    file, *options = script.split()
    name = TABLES.get(script, file.removesuffix(".py"))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / file), *options, "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (REPO / "bench" / "results" / f"{name}-quick.md").read_text()
    assert sum(line.startswith("|") for line in table.splitlines()) >= 4  # a header, its rule, two rows at least


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


def test_the_greedy_split_gives_each_sentence_to_its_rarest_type_with_room():
    """CFNER's greedy sampling, as bench/incremental.py's published protocol splits eng.train:
    parts of equal quota, disjoint; a sentence goes to its rarest type's part while it has
    room, else (or with no entities) to a random part with room; past every quota, dropped."""
    from bench.incremental import greedy_split

    per, loc, misc, none = ["B-PER"], ["B-LOC"], ["B-MISC"], ["O"]
    # entity counts: PER 4, LOC 3, MISC 2 -> a PER+MISC sentence goes to MISC first
    tags = [per, per, ["B-PER", "O", "B-MISC"], loc, loc, ["B-LOC", "B-PER"], misc, none, none, none]
    parts = greedy_split(tags, ["LOC", "MISC", "PER"])
    assert [len(p) for p in parts] == [3, 3, 3]  # quota 10 // 3; one sentence past them all is dropped
    loc_part, misc_part, per_part = (set(p) for p in parts)
    assert not (loc_part & misc_part or loc_part & per_part or misc_part & per_part)
    assert {0, 1} <= per_part and 2 in misc_part and {3, 4, 5} == loc_part and 6 in misc_part
    assert greedy_split(tags, ["LOC", "MISC", "PER"]) == parts  # seeded: the same split each time


def test_the_second_crossner_target_is_mit_movie_at_crossners_size(shared_data):
    """bench/crossner.py's MIT Movie target (issue 27): train and dev drawn disjoint from
    engtrain.bio at their sizes, the same draw each time; test is all of engtest.bio."""
    from bench.crossner import MOVIE, MOVIE_SIZES, domain
    from tagshift.corpus import read_corpus

    splits = domain(MOVIE, quick=False)
    assert {k: len(splits[k]) for k in MOVIE_SIZES} == MOVIE_SIZES
    train, dev = ({tuple(s.tokens) + tuple(s.tags) for s in splits[k].sentences} for k in ("train", "dev"))
    pool = read_corpus(shared_data / "mit_movie" / "engtrain.bio").sentences
    # (disjoint as drawn: a repeated sentence of the file may land on both sides)
    assert len(train & dev) <= len(pool) - len({tuple(s.tokens) + tuple(s.tags) for s in pool})
    assert len(splits["test"]) == len(read_corpus(shared_data / "mit_movie" / "engtest.bio"))
    assert [s.tokens for s in domain(MOVIE, quick=False)["train"].sentences] == [s.tokens for s in splits["train"].sentences]


def test_the_recipe_table_shows_each_sources_choice_and_landing():
    """bench/crossner.py --recipes' part of the table: a row per source, a cell per domain."""
    from bench.crossner import recipe_table

    chosen = {"politics": {"labels": "map", "landed": 0.9567, "found": 0.804},
              "mit_movie": {"labels": "map", "control": True, "landed": 0.97, "found": 0.36}}
    table = recipe_table([{"backend": "transformer", "seed": 1, "domains": chosen},
                          {"backend": "bilstm-crf", "seed": 0, "domains": {"politics": {"labels": "map", "landed": 0.8}}}])
    assert table.splitlines() == ["| source | politics | mit_movie |", "|---|---|---|",
                                  "| bilstm-crf seed 0 | map, 80.0% landed |  |",
                                  "| transformer seed 1 | map, 95.7% landed, 80% found | map + control, 97.0% landed, 36% found |"]
    assert recipe_table([]) == ""


def test_the_controlled_row_keeps_per_seed_the_run_better_on_dev():
    """MIT Movie's derived row (bench/crossner.py): per seed, the recipe's run or target
    only's, chosen by best dev F1 as adapt --compare-scratch chooses (a tie keeps the adapted);
    a seed without both dev scores is left out."""
    from bench.crossner import RECIPE_ROW, RECIPE_ROWS, controlled

    def run(strategy: str, seed: int, dev: float | None, test: float, chose: str = "map") -> dict:
        return {"backend": "transformer", "strategy": strategy, "seed": seed, "dev_f1": dev, "test_f1": test,
                "recipe": {"labels": chose} if strategy != "target only" else None}

    results = [run(RECIPE_ROW, 0, 0.70, 0.71), run("target only", 0, 0.72, 0.75),
               run(RECIPE_ROW, 1, 0.74, 0.73), run("target only", 1, 0.74, 0.76),
               run(RECIPE_ROW, 2, 0.80, 0.70), run("target only", 2, None, 0.76)]
    assert [(r["strategy"], r["seed"]) for r in controlled(results, "transformer")] == [("target only", 0), (RECIPE_ROW, 1)]
    assert controlled(results, "bilstm-crf") == []
    # a BiLSTM-CRF's recipe row is the one of the operation it chose for each seed's source (a
    # source that finds nothing: extend at the head's rate; one whose few entities land: a map)
    rows = RECIPE_ROWS["bilstm-crf"]
    bilstm = [{**r, "backend": "bilstm-crf"} for r in (
        run(rows["extend"], 0, 0.66, 0.68, "extend"), run(rows["map"], 0, 0.99, 0.99, "extend"),
        run("target only", 0, 0.65, 0.70), run(rows["map"], 1, 0.70, 0.71), run("target only", 1, 0.69, 0.72))]
    assert [(r["strategy"], r["seed"]) for r in controlled(bilstm, "bilstm-crf")] == [(rows["extend"], 0), (rows["map"], 1)]


def test_the_by_type_table_splits_types_by_capitalisation_and_averages_their_change():
    """bench/crossner.py's by-type part (issue 27): per type, a row's F1 minus target only's
    over the seeds both have, averaged within capitalised and lower-case types; a row short of
    3 seeds in some domain is left out."""
    from bench.crossner import DOMAINS, by_type_table, capitalised_share
    from tagshift.corpus import Corpus, Sentence

    corpus = Corpus([Sentence(["Marie", "Curie", "studied", "physics", "and", "Chemistry"],
                              ["B-person", "I-person", "O", "B-field", "O", "B-field"])], None)
    assert capitalised_share(corpus) == {"person": 1.0, "field": 0.5}
    shares = {name: {"person": 1.0, "field": 0.0} for name in DOMAINS}

    def run(strategy: str, name: str, seed: int, person: float, field: float) -> dict:
        return {"backend": "bilstm-crf", "strategy": strategy, "domain": name, "seed": seed,
                "per_type": {"person": person, "field": field}}

    row = "map (suggested), encoder at the head's rate"
    results = [r for name in DOMAINS for seed in range(3)
               for r in (run("target only", name, seed, 0.50, 0.40), run(row, name, seed, 0.53, 0.30))]
    lines = by_type_table(results, shares).splitlines()
    assert lines[2] == f"| bilstm-crf | {row} | 5, +3.00, 0 | 5, -10.00, 5 |"
    assert len(lines) == 3  # stack has no runs: no row
    assert by_type_table(results[:-1], shares) == ""  # the last domain short of a seed
