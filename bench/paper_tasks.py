"""The transfer paper's three update tasks on public data, BiLSTM-CRF, 3 seeds, in its table
layout (per type: training and test counts, F1 after the initial step, after the update,
delta). Entity F1 in conlleval mode.

  (i)   more data for types the source knows, from a new domain: CoNLL-2003 (Reuters news)
        -> WikiGold (Wikipedia), the same four types;
  (ii)  known types whose form differs in the new domain: CoNLL-2003 -> WNUT-17 (tweets,
        lower case, handles), its types mapped onto CoNLL's;
  (iii) a type the source never saw, with target data annotated only for it: a source
        trained on half of CoNLL-2003 train with PER, LOC, ORG only, updated with the other
        half annotated only for MISC; joint training (all of train, all types) is the
        reference. Goal: MISC reaches >= 90% of joint training's F1, and no old type drops
        more than 1.0 point.

Why these corpora: they are the public sets that share CoNLL's types (so "the same type"
means something), differ in domain (Wikipedia) or in form (tweets), and CoNLL itself lets
a type be held back with everything else fixed.

    python bench/paper_tasks.py            # full: hours on 2 CPU cores; resumable
    python bench/paper_tasks.py --quick    # tiny slices, a couple of minutes: checks the script

The sources of (i) and (ii) are bench/conll.py's BiLSTM-CRF models (trained here if missing).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, RECORDS, add_run_options, configure_run, load_records, mean_std, new_tagger, peak_rss_mb, publish,
    records, require_shared, run_child, save_record,
)
from bench.conll import RECIPES as CONLL_RECIPES  # noqa: E402

OLD, NEW = ["LOC", "ORG", "PER"], "MISC"
WNUT_TO_CONLL = {"person": "PER", "location": "LOC", "corporation": "ORG", "group": "ORG",
                 "creative-work": "MISC", "product": "MISC"}
# Task (iii)'s strategies; (i) and (ii) annotate every type, so they adapt plainly.
STRATEGIES = {
    "naive": {},
    "pseudo-label": {"pseudo_label": 0.5},
    "pseudo-label + partial": {"pseudo_label": 0.5, "partial": True},
    "distill": {"distill": 1.0},
}
ADAPT_TRAINING = {"epochs": 10, "patience": 3}
SOURCE_RECIPE = CONLL_RECIPES["bilstm-crf"]  # (iii)'s source is trained as the CoNLL table's BiLSTM-CRF
QUICK = {"sentences": 150, "test": 100, "epochs": 1}


# --- data ------------------------------------------------------------------------------


def keep_types(corpus, types: set[str], rename: dict[str, str] | None = None):
    """The corpus with only `types` annotated (after renaming), everything else O."""
    from tagshift.corpus import Corpus
    from tagshift.schemes import SCHEMES, Span, chunks, encode

    rename = rename or {}
    sentences = []
    for s in corpus.sentences:
        spans = [Span(x.start, x.end, rename.get(x.label, x.label)) for x in chunks(s.tags)]
        sentences.append(s.with_tags(encode([x for x in spans if x.label in types], len(s), SCHEMES["iob2"])))
    return Corpus(sentences, corpus.path)


def cut(corpus, start: int, end: int | None):
    from tagshift.corpus import Corpus

    return Corpus(corpus.sentences[start:end], corpus.path)


@functools.cache  # a run reads the corpora once, however many steps ask for them
def tasks(quick: bool) -> dict[str, dict]:
    """Per task: source data (for iii), target train/dev, and the test sets it is scored on."""
    from tagshift.corpus import Corpus

    conll = {n: read_shared("conll2003", f"eng.{n}") for n in ("train", "testa", "testb")}
    wiki = read_shared("wikigold", "wikigold.conll.txt")
    first_dev, first_test = wiki.doc_starts[115].before, wiki.doc_starts[130].before  # 115 / 15 / 15 documents
    wnut = {n: read_shared("wnut17", f) for n, f in
            (("train", "wnut17train.conll"), ("dev", "emerging.dev.conll"), ("test", "emerging.test.annotated"))}
    all_types = set(OLD) | {NEW}
    half = len(conll["train"]) // 2
    defined = {
        "i": {
            "title": "(i) more data from a new domain: CoNLL-2003 -> WikiGold",
            "source_train": conll["train"],
            "train": Corpus(wiki.sentences[:first_dev], wiki.path),
            "dev": Corpus(wiki.sentences[first_dev:first_test], wiki.path),
            "tests": {"WikiGold test": Corpus(wiki.sentences[first_test:], wiki.path), "CoNLL test": conll["testb"]},
        },
        "ii": {
            "title": "(ii) known types in another form: CoNLL-2003 -> WNUT-17 (types mapped onto CoNLL's)",
            "source_train": conll["train"],
            "train": keep_types(wnut["train"], all_types, WNUT_TO_CONLL),
            "dev": keep_types(wnut["dev"], all_types, WNUT_TO_CONLL),
            "tests": {"WNUT-17 test": keep_types(wnut["test"], all_types, WNUT_TO_CONLL), "CoNLL test": conll["testb"]},
        },
        "iii": {
            "title": "(iii) a new type, target data annotated only for it: CoNLL-2003 without MISC -> + MISC",
            "source_train": keep_types(cut(conll["train"], 0, half), set(OLD)),
            "source_dev": keep_types(conll["testa"], set(OLD)),
            "train": keep_types(cut(conll["train"], half, None), {NEW}),
            "dev": keep_types(conll["testa"], {NEW}),
            "tests": {"CoNLL test": conll["testb"]},
        },
    }
    if quick:
        n, t = QUICK["sentences"], QUICK["test"]
        for task in defined.values():
            for key in ("train", "dev", "source_train", "source_dev"):
                if key in task:
                    task[key] = cut(task[key], 0, n)
            task["tests"] = {name: cut(c, 0, t) for name, c in task["tests"].items()}
    return defined


def type_counts(corpus) -> Counter:
    from tagshift.schemes import chunks

    return Counter(x.label for s in corpus.sentences for x in chunks(s.tags))


# --- runs (each in its own process) ---------------------------------------------------------


def train_source(task: str, seed: int, quick: bool, folder: Path):
    """Task (iii)'s source, or (quick) a tiny stand-in for bench/conll.py's models."""
    from tagshift.bundle import CONFIG, load_bundle
    from tagshift.training import CHECKPOINT, TrainConfig, fit

    out = folder / f"source-{task}-seed{seed}"
    if (out / CONFIG).is_file():
        return load_bundle(out), json.loads((out / "seconds.json").read_text())["seconds"]
    data = tasks(quick)
    if task == "iii":
        train, dev = data["iii"]["source_train"], data["iii"]["source_dev"]
    else:  # quick only: the full run uses bench/conll.py's models

        train = cut(read_shared("conll2003", "eng.train"), 0, QUICK["sentences"])
        dev = cut(read_shared("conll2003", "eng.testa"), 0, QUICK["test"])
    model = {} if quick else SOURCE_RECIPE["model"]
    training = {**SOURCE_RECIPE["training"], "seed": seed, **({"epochs": QUICK["epochs"]} if quick else {})}
    resume = (out / CHECKPOINT / CONFIG).is_file()
    tagger = load_bundle(out / CHECKPOINT) if resume else new_tagger(SOURCE_RECIPE["backend"], model, train, seed, extra=dev)
    result = fit(tagger, train, dev, TrainConfig(**training), out, resume=resume,
                          command=f"python bench/paper_tasks.py (source of task {task}, seed {seed})")
    (out / "seconds.json").write_text(json.dumps({"seconds": result.seconds}))
    return tagger, result.seconds


def source_for(task: str, seed: int, quick: bool, folder: Path):
    """(tagger, its training seconds, its path)."""
    import tagshift

    if task == "iii" or quick:
        tagger, seconds = train_source(task, seed, quick, folder)
        return tagger, seconds, folder / f"source-{task}-seed{seed}"
    conll = CACHE / "conll"
    record = RECORDS / "conll" / f"bilstm-crf-seed{seed}.json"
    if not (conll / f"bilstm-crf-seed{seed}").is_dir():
        subprocess.run([sys.executable, str(Path(__file__).parent / "conll.py"), "--one", "bilstm-crf", str(seed)], check=True)
    return tagshift.load(conll / f"bilstm-crf-seed{seed}"), json.loads(record.read_text())["train_seconds"], conll / f"bilstm-crf-seed{seed}"


def run_one(task: str, strategy: str, seed: int, quick: bool, folder: Path) -> dict:
    from tagshift.bundle import CONFIG
    from tagshift.training import CHECKPOINT, evaluate_tagger
    from tagshift.transfer import AdaptConfig, adapt_training, prepare, train_prepared

    data = tasks(quick)[task]
    source, source_seconds, source_path = source_for(task, seed, quick, folder)
    out = folder / f"{task}-{strategy.replace(' ', '')}-seed{seed}"
    training = adapt_training("bilstm-crf", **{**ADAPT_TRAINING, "seed": seed, **({"epochs": QUICK["epochs"]} if quick else {})})
    started = time.perf_counter()
    prepared = prepare(source, data["train"], AdaptConfig(**STRATEGIES.get(strategy, {})), seed, dev=data["dev"])
    result = train_prepared(prepared, data["dev"], training, out, str(source_path),
                            resume=(out / CHECKPOINT / CONFIG).is_file(),
                            command=f"python bench/paper_tasks.py (task {task}, {strategy}, seed {seed})")
    seconds = time.perf_counter() - started
    scores = {}
    for name, test in data["tests"].items():
        scores[name] = {
            "initial": {t: p.f1 for t, p in evaluate_tagger(source, test).per_type.items()},
            "updated": {t: p.f1 for t, p in evaluate_tagger(prepared.tagger, test).per_type.items()},
        }
    return {"task": task, "strategy": strategy, "seed": seed, "scores": scores, "adapt_seconds": seconds,
            "train_seconds": result.seconds, "source_seconds": source_seconds, "best_epoch": result.best_epoch,
            "pseudo_labels": prepared.pseudo.to_json() if prepared.pseudo else None, "peak_rss_mb": peak_rss_mb()}


# --- tables ------------------------------------------------------------------------------------


def joint_f1(seed: int, quick: bool) -> dict[str, float] | None:
    """Task (iii)'s reference: bench/conll.py's model (all of train, all types) on CoNLL test."""
    record = RECORDS / "conll" / f"bilstm-crf-seed{seed}.json"
    if quick or not record.is_file():
        return None
    return json.loads(record.read_text())["test_per_type"]


def task_table(task: str, data: dict, runs: list[dict], quick: bool) -> str:
    lines = [f"**{data['title']}**", ""]
    source_counts = type_counts(data["source_train"])
    target_counts = type_counts(data["train"])
    strategies = [s for s in (["plain"] if task != "iii" else list(STRATEGIES)) if any(r["strategy"] == s for r in runs)]
    for test_name in data["tests"]:
        test_counts = type_counts(data["tests"][test_name])
        header = ["type", "source train", "target train", "test", "initial"]
        header += [f"updated: {s} (delta)" for s in strategies]
        joint = task == "iii" and any(joint_f1(r["seed"], quick) for r in runs)
        header += ["joint (all data)"] if joint else []
        lines += [f"{test_name}, entity F1 (conlleval), mean ± std over seeds", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entity_type in sorted(test_counts):
            def values(strategy: str, key: str) -> list[float]:
                return [r["scores"][test_name][key].get(entity_type, 0.0) for r in runs if r["strategy"] == strategy]

            initial = values(strategies[0], "initial") if strategies else []
            row = [entity_type, str(source_counts[entity_type]), str(target_counts[entity_type]),
                   str(test_counts[entity_type]), mean_std(initial)]
            for s in strategies:
                delta = statistics.mean(u - i for u, i in zip(values(s, "updated"), values(s, "initial")))
                row.append(f"{mean_std(values(s, 'updated'))} ({100 * delta:+.2f})")
            if joint:
                row.append(mean_std([joint_f1(r["seed"], quick)[entity_type] for r in runs
                                     if r["strategy"] == strategies[0] and joint_f1(r["seed"], quick)]))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    seeds = sorted({r["seed"] for r in runs})
    fraction = [r["adapt_seconds"] / r["source_seconds"] for r in runs if r["source_seconds"]]
    lines.append(f"Seeds: {', '.join(map(str, seeds))}. Adapt wall time: {statistics.mean(r['adapt_seconds'] for r in runs) / 60:.1f} min "
                 f"on average, {statistics.mean(fraction):.2f} of the source's training time.")
    if task == "iii" and not quick:
        lines += ["", goal_lines(runs)]
    return "\n".join(lines)


def goal_lines(runs: list[dict]) -> str:
    """Task (iii)'s goal, per strategy: MISC >= 90% of joint, no old type down more than 1.0."""
    lines = ["| strategy | MISC / joint MISC | worst old-type delta | goal met |", "|---|---|---|---|"]
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy and joint_f1(r["seed"], False)]
        if not mine:
            continue
        test = "CoNLL test"
        ratio = statistics.mean(r["scores"][test]["updated"].get(NEW, 0.0) / joint_f1(r["seed"], False)[NEW] for r in mine)
        worst = min(statistics.mean(r["scores"][test]["updated"].get(t, 0.0) - r["scores"][test]["initial"].get(t, 0.0)
                                    for r in mine) for t in OLD)
        met = ratio >= 0.9 and worst >= -0.01
        lines.append(f"| {strategy} | {100 * ratio:.1f}% | {100 * worst:+.2f} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["i", "ii", "iii"], choices=["i", "ii", "iii"])
    add_run_options(parser)
    parser.add_argument("--one", nargs=3, metavar=("TASK", "STRATEGY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.seeds == [0, 1, 2]:
        args.seeds = [0]
    name = "paper_tasks-quick" if args.quick else "paper_tasks"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        configure_run(args.threads)
        task, strategy, seed = args.one[0], args.one[1], int(args.one[2])
        record = run_one(task, strategy, seed, args.quick, folder)
        save_record(name, f"{task}-{strategy.replace(' ', '')}-seed{seed}", record)
        return

    require_shared("conll2003", "eng.train")
    for seed in args.seeds:
        for task in args.tasks:
            for strategy in (["plain"] if task != "iii" else list(STRATEGIES)):
                done = records(name) / f"{task}-{strategy.replace(' ', '')}-seed{seed}.json"
                if not done.is_file():
                    print(f"task {task}, {strategy}, seed {seed} ...", file=sys.stderr, flush=True)
                    run_child(__file__, [task, strategy, str(seed)], args.quick, args.threads)
    runs = load_records(name)
    data = tasks(args.quick)
    body = "\n\n".join(task_table(t, data[t], [r for r in runs if r["task"] == t], args.quick)
                       for t in ("i", "ii", "iii") if any(r["task"] == t for r in runs))
    publish("paper_tasks", body, {"runs": runs}, args.quick)
    print(body)


if __name__ == "__main__":
    main()
