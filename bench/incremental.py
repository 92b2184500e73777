"""Class-incremental CoNLL-2003, the protocol of the continual-NER literature (ExtendNER,
CFNER): entity types arrive one per step, in the order PER, LOC, ORG, MISC; the training
set is split into four disjoint parts (shuffled with a fixed seed), part k annotated only
for step k's type (everything else O); after each step the model is scored on eng.testb
with the types seen so far annotated, micro and macro F1 (sentence by sentence, never
flattened). Step 1 trains a model on part 1; each later step adapts the previous step's
model with `tagshift adapt` and one strategy. Joint training on every type (bench/conll.py's
models) is the upper bound.

    python bench/incremental.py                      # full: many hours on 2 CPU cores; resumable
    python bench/incremental.py --backends bilstm-crf --strategies naive pseudo-label
    python bench/incremental.py --quick              # tiny slices, one strategy: checks the script
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CACHE, add_run_options, configure_run, load_records, mean_std, new_tagger, not_shown, publish, quick_model,
    ran_on, records, require_shared, run_children, save_record, seeds_phrase, stamp,
)
from bench.conll import RECIPES as CONLL_RECIPES  # noqa: E402

ORDER = ["PER", "LOC", "ORG", "MISC"]
BACKENDS = ("bilstm-crf", "transformer")
# AdaptConfig options, and the rates taken from step 1 instead of adapt's defaults (BiLSTM-CRF
# 2e-3, transformer 1e-4): "full lr" for the encoder, "naive" for everything.
STRATEGIES = {
    "naive": ({}, {"encoder", "head"}),  # fine-tuning as in step 1, nothing kept
    "lower lr": ({}, set()),  # adapt's default: the encoder at a tenth of the head's rate
    "pseudo-label": ({"pseudo_label": 0.5}, set()),
    "partial": ({"partial": True}, set()),
    "distill": ({"distill": 1.0}, set()),
    "pseudo-label + distill": ({"pseudo_label": 0.5, "distill": 1.0}, set()),
    # the best on seed 0: the pseudo-labels keep the old types, so the encoder need not
    # crawl at a tenth of the rate to protect them, and the new type is learnt sooner
    "pseudo-label + full lr": ({"pseudo_label": 0.5}, {"encoder"}),
}
# Step 1 trains as the CoNLL table's row of each backend (bench/conll.py; the BiLSTM-CRF with
# frozen word vectors, its best), whose models on all types are also the joint upper bound.
CONLL_ROW = {"bilstm-crf": "bilstm-crf-frozen", "transformer": "transformer"}
# Later steps train with `tagshift adapt`'s defaults (the BiLSTM-CRF: up to 30 epochs,
# patience 5; a transformer: 4 epochs, head at 5e-4, encoder at 5e-5). A 10-epoch cap, tried
# first, stopped each new type while its dev F1 was still rising by the epoch.
LATER: dict[str, dict] = {"bilstm-crf": {}, "transformer": {}}
# Every step of the transformer, the first included, computes in bf16 (`--precision bf16`:
# 1.56x the training speed on this CPU, bench/speed.py); the BiLSTM-CRF, which trains slower in it, in fp32.
PRECISION = {"bilstm-crf": "fp32", "transformer": "bf16"}
PUBLISHED = "bert-base, GPU (micro / macro after the last step): fine-tune 50.8 / 40.6, ExtendNER 76.4 / 73.0, CFNER 80.9 / 79.1"
STEP1 = "step1"  # the child that trains step 1 alone
QUICK = {"part": 40, "test": 50, "epochs": 1}


def only(corpus, types: set[str]):
    from tagshift.corpus import Corpus
    from tagshift.schemes import SCHEMES, chunks, encode

    return Corpus([s.with_tags(encode([x for x in chunks(s.tags) if x.label in types], len(s), SCHEMES["iob2"]))
                   for s in corpus.sentences], corpus.path)


def data(quick: bool) -> dict:
    """Step k's training part and dev set (type k only), and the test set with steps 1..k's types."""
    from tagshift.corpus import Corpus, read_corpus

    train, dev, test = (read_corpus(require_shared("conll2003", f"eng.{n}")) for n in ("train", "testa", "testb"))
    order = list(range(len(train)))
    random.Random(13).shuffle(order)
    size = QUICK["part"] if quick else len(order) // len(ORDER)
    parts = [Corpus([train.sentences[i] for i in order[k * size:(k + 1) * size]], train.path) for k in range(len(ORDER))]
    if quick:
        dev, test = Corpus(dev.sentences[:QUICK["test"]], dev.path), Corpus(test.sentences[:QUICK["test"]], test.path)
    return {
        "train": [only(part, {t}) for part, t in zip(parts, ORDER)],
        "dev": [only(dev, {t}) for t in ORDER],
        "test": [only(test, set(ORDER[: k + 1])) for k in range(len(ORDER))],
    }


def step1_path(folder: Path, backend: str, seed: int) -> Path:
    return folder / f"{backend}-step1-seed{seed}"  # shared by every strategy


def train_step1(backend: str, seed: int, quick: bool, folder: Path, device: str = "cpu") -> None:
    """Step 1's model (main trains it before the strategies, which start from it)."""
    from tagshift.bundle import CONFIG
    from tagshift.training import CHECKPOINT, TrainConfig, fit

    first = step1_path(folder, backend, seed)
    if (first / CONFIG).is_file():
        return
    d = data(quick)  # read only when step 1 must be trained
    recipe = CONLL_RECIPES[CONLL_ROW[backend]]
    training = TrainConfig.for_backend(
        backend, **{**recipe["training"], "seed": seed, **({"epochs": QUICK["epochs"]} if quick else {})}
    )
    resume = (first / CHECKPOINT / CONFIG).is_file()
    if resume:
        from tagshift.bundle import load_bundle

        tagger = load_bundle(first / CHECKPOINT).to(device)
    else:
        model = quick_model(recipe["model"]) if quick else recipe["model"]
        tagger = new_tagger(backend, model, d["train"][0], seed, extra=d["dev"][0], device=device)
    tagger.precision = PRECISION[backend]
    fit(tagger, d["train"][0], d["dev"][0], training, first, resume=resume, command="python bench/incremental.py (step 1)")


def run_one(backend: str, strategy: str, seed: int, quick: bool, folder: Path, device: str = "cpu") -> dict:
    """All steps of one (backend, strategy, seed) from step 1's model; each step's model is cached."""
    import tagshift
    from tagshift.bundle import CONFIG
    from tagshift.training import CHECKPOINT, TrainConfig, evaluate_tagger
    from tagshift.transfer import AdaptConfig, adapt_training, prepare, train_prepared

    d = data(quick)
    steps = []
    train_step1(backend, seed, quick, folder, device)
    model = tagshift.load(step1_path(folder, backend, seed), device)
    step1_lr = TrainConfig.for_backend(backend, **CONLL_RECIPES[CONLL_ROW[backend]]["training"]).lr
    for k in range(len(ORDER)):
        if k > 0:
            adapt_options, at_step1_rate = STRATEGIES[strategy]
            out = folder / f"{backend}-{strategy.replace(' ', '')}-step{k + 1}-seed{seed}"
            if not (out / CONFIG).is_file():
                training = adapt_training(
                    backend, **{**LATER[backend], "seed": seed, **({"epochs": QUICK["epochs"]} if quick else {})}
                )
                if "encoder" in at_step1_rate:
                    training.encoder_lr = step1_lr
                if "head" in at_step1_rate:
                    training.head_lr = step1_lr
                prepared = prepare(model, d["train"][k], AdaptConfig(**adapt_options), seed, dev=d["dev"][k])
                prepared.tagger.precision = PRECISION[backend]  # the source tags in fp32, as loaded
                train_prepared(prepared, d["dev"][k], training, out, resume=(out / CHECKPOINT / CONFIG).is_file(),
                               command=f"python bench/incremental.py ({backend}, {strategy}, step {k + 1}, seed {seed})")
            model = tagshift.load(out, device)
        scores = evaluate_tagger(model, d["test"][k])
        seen = ORDER[: k + 1]
        steps.append({"step": k + 1, "types": seen, "micro": scores.restrict(seen).micro.f1,
                      "macro": scores.restrict(seen).macro.f1,
                      "per_type": {t: p.f1 for t, p in scores.per_type.items()}})
    return {"backend": backend, "strategy": strategy, "seed": seed, "precision": PRECISION[backend], "steps": steps}


def table(results: list[dict], quick: bool) -> str:
    """A row per (backend, strategy) with 3 seeds (--quick: 1); the runs of the rows still
    short of that are counted below the table, their scores not shown."""
    min_seeds = 1 if quick else 3
    lines = [f"Order: {' → '.join(ORDER)}. Test: eng.testb with the types seen so far. Published, {PUBLISHED}.", ""]
    lines += ["| backend | strategy | seeds | " + " | ".join(f"after step {k + 1} (micro / macro)" for k in range(len(ORDER)))
              + " |", "|---|---|---|" + "---|" * len(ORDER)]
    shown: list[dict] = []
    pending: dict[str, int] = {}
    for backend in BACKENDS:
        for strategy in STRATEGIES:
            rows = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            if len(rows) < min_seeds:
                pending[backend] = pending.get(backend, 0) + len(rows)
                continue
            shown += rows
            cells = [f"{mean_std([r['steps'][k]['micro'] for r in rows])} / {mean_std([r['steps'][k]['macro'] for r in rows])}"
                     for k in range(len(ORDER))]
            lines.append(f"| {backend} | {strategy} | {len(rows)} | " + " | ".join(cells) + " |")
        seeds, bound = joint_bound(backend) if not quick else (0, "")
        if seeds:
            lines.append(f"| {backend} | joint training, all types (upper bound; bench/conll.py {CONLL_ROW[backend]}) | {seeds} | "
                         + " | " * (len(ORDER) - 1) + f"{bound} |")
    lines += ["", ran_on(shown, "backend")] if shown else []
    lines += not_shown(pending, "strategies", min_seeds)
    return "\n".join(lines)


def joint_bound(backend: str) -> tuple[int, str]:
    """The upper bound, bench/conll.py's models trained on every type at once: its seeds and
    'micro / macro' test F1 over ORDER's types (0 and '' before those runs exist)."""
    joint = load_records("conll", f"{CONLL_ROW[backend]}-seed*.json")
    if not joint:
        return 0, ""
    micro = [r["test_f1"] for r in joint]
    macro = [statistics.mean(r["test_per_type"].get(t, 0.0) for t in ORDER) for r in joint]
    return len(joint), f"{mean_std(micro)} / {mean_std(macro)}"


# The README's rows, in its order, named by the adapt options a user would give.
HEADLINE = {
    "naive": "naive fine-tuning",
    "distill": "`--distill`",
    "pseudo-label": "`--pseudo-label`",
    "pseudo-label + full lr": "`--pseudo-label`, encoder at step 1's rate (`--encoder-lr`)",
}


def headline(results: list[dict]) -> str:
    """The README's rows: micro / macro F1 after the last step, a column per backend, for
    the strategies with 3 seeds, and joint training as the upper bound."""
    lines = ["| each step adapted with | " + " | ".join(BACKENDS) + " |", "|---|" + "---|" * len(BACKENDS)]
    seeds: set[int] = set()
    for strategy, name in HEADLINE.items():
        cells = []
        for backend in BACKENDS:
            rows = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            seeds |= {len(rows)} if len(rows) >= 3 else set()
            cells.append(f"{mean_std([r['steps'][-1]['micro'] for r in rows])} / "
                         f"{mean_std([r['steps'][-1]['macro'] for r in rows])}" if len(rows) >= 3 else "")
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bounds = [joint_bound(b) for b in BACKENDS]
    seeds |= {n for n, _ in bounds if n}
    lines.append("| joint training on every type (upper bound) | " + " | ".join(text for _, text in bounds) + " |")
    caption = (f"Class-incremental CoNLL-2003 ({' → '.join(ORDER)}, one type per step, each step's data "
               f"annotated for its type only), micro / macro F1 after the last step, {seeds_phrase(seeds)}. "
               f"Published, {PUBLISHED}.")
    return "\n".join([caption, "", *lines])


def record_name(record: dict) -> str:
    return f"{record['backend']}-{record['strategy'].replace(' ', '')}-seed{record['seed']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "STRATEGY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.seeds == [0, 1, 2]:
        args.seeds = [0]
    if args.quick and args.strategies == list(STRATEGIES):
        args.strategies = ["pseudo-label + distill"]
    name = "incremental-quick" if args.quick else "incremental"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        configure_run(args.threads)
        backend, strategy, seed = args.one[0], args.one[1], int(args.one[2])
        if strategy == STEP1:
            train_step1(backend, seed, args.quick, folder)
            return
        record = stamp(run_one(backend, strategy, seed, args.quick, folder, args.device), args.device)
        save_record(name, record_name(record), record)
        return

    from tagshift.bundle import CONFIG

    require_shared("conll2003", "eng.train")
    runs = [[b, s, str(seed)] for seed in args.seeds for b in args.backends for s in args.strategies
            if not (records(name) / f"{record_name({'backend': b, 'strategy': s, 'seed': seed})}.json").is_file()]
    # step 1 first, so that parallel strategies never train the same one
    firsts = sorted({(b, seed) for b, _, seed in runs if not (step1_path(folder, b, int(seed)) / CONFIG).is_file()})
    run_children(__file__, [[b, STEP1, seed] for b, seed in firsts], args)
    run_children(__file__, runs, args)
    results = load_records(name)
    body = table(results, args.quick)
    publish("incremental", body, results, args.quick, headline(results))
    print(body)


if __name__ == "__main__":
    main()
