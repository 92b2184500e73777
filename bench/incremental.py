"""Class-incremental CoNLL-2003: entity types arrive one per step; the training set is split
into four disjoint parts, part k annotated only for step k's type (everything else O); after
each step the model is scored on eng.testb with the types seen so far annotated, micro and
macro F1 (conlleval mode, sentence by sentence, never flattened). Step 1 trains a model on
part 1; each later step adapts the previous step's model with `tagshift adapt` and one
strategy. Joint training on every type (bench/conll.py's models) is the upper bound.

Two protocols:

- "published", as the continual-NER papers run CoNLL-2003 FG-1-PG-1 (CFNER, Zheng et al.
  EMNLP 2022; RDP; TBCL): the types in alphabetical order (LOC, MISC, ORG, PER), the
  training set split by CFNER's greedy sampling (`greedy_split`), and the figure reported
  the micro and macro F1 averaged over all steps, the first included;
- "shuffled", this script's first protocol: PER, LOC, ORG, MISC, the training set shuffled
  with a fixed seed and cut in quarters.

    python bench/incremental.py                      # full: many hours on 2 CPU cores; resumable
    python bench/incremental.py --protocols published --backends bilstm-crf --strategies naive pseudo-label
    python bench/incremental.py --quick              # tiny slices, one strategy, the published protocol
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, add_run_options, configure_run, load_records, mean_std, new_tagger, not_shown, publish, quick_model,
    ran_on, records, require_shared, run_children, save_record, seeds_phrase, stamp,
)
from bench.conll import RECIPES as CONLL_RECIPES  # noqa: E402

# each protocol's order of the types; "published" also splits the data as CFNER does
PROTOCOLS = {"published": ["LOC", "MISC", "ORG", "PER"], "shuffled": ["PER", "LOC", "ORG", "MISC"]}
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
    # the rows of O and the learnt types fixed (`--keep-old-head`), as the continual-NER papers
    # fix the old classifier (CFNER's code: is_fix_trained_classifier, for every method it runs):
    # added when, in the published protocol, MISC (all of whose sentences CFNER's split gives to
    # MISC's step) was unlearnt in the later steps, whose data never shows it
    "pseudo-label + keep old head": ({"pseudo_label": 0.5, "keep_old_head": True}, set()),
    "distill + keep old head": ({"distill": 1.0, "keep_old_head": True}, set()),
}
# Step 1 trains as the CoNLL table's row of each backend (bench/conll.py), whose models on all
# types are also the joint upper bound. The BiLSTM-CRF: the published protocol's rows, run
# after bench/conll.py measured GloVe, use its best (frozen GloVe 6B vectors); the shuffled
# protocol's rows were run before, with frozen MiniLM input embeddings.
CONLL_ROW = {"published": {"bilstm-crf": "bilstm-crf-glove", "transformer": "transformer"},
             "shuffled": {"bilstm-crf": "bilstm-crf-frozen", "transformer": "transformer"}}
# Later steps train with `tagshift adapt`'s defaults (the BiLSTM-CRF: up to 30 epochs,
# patience 5; a transformer: 4 epochs, head at 5e-4, encoder at 5e-5). A 10-epoch cap, tried
# first, stopped each new type while its dev F1 was still rising by the epoch.
LATER: dict[str, dict] = {"bilstm-crf": {}, "transformer": {}}
# Every step of the transformer, the first included, computes in bf16 (`--precision bf16`:
# 1.56x the training speed on this CPU, bench/speed.py); the BiLSTM-CRF, which trains slower in it, in fp32.
PRECISION = {"bilstm-crf": "fp32", "transformer": "bf16"}
# the papers' FG-1-PG-1 figures: bert-base-cased on a GPU, micro / macro F1 averaged over the
# four steps (CFNER's repository and paper; RDP, CIKM 2023; TBCL)
PUBLISHED = ("bert-base-cased, GPU, the published protocol, micro / macro averaged over the steps: fine-tune "
             "50.84 / 40.64, ExtendNER 76.36 / 73.04, CFNER 80.91 / 79.11, RDP 82.55 / 80.64, TBCL 84.27 / 81.92")
STEP1 = "step1"  # the child that trains step 1 alone
QUICK = {"part": 40, "test": 50, "epochs": 1}


def only(corpus, types: set[str]):
    from tagshift.corpus import Corpus
    from tagshift.schemes import SCHEMES, chunks, encode

    return Corpus([s.with_tags(encode([x for x in chunks(s.tags) if x.label in types], len(s), SCHEMES["iob2"]))
                   for s in corpus.sentences], corpus.path)


def greedy_split(tags: list[list[str]], order: list[str], seed: int = 13) -> list[list[int]]:
    """CFNER's greedy sampling (`spilt_dataset` in its src/dataloader.py), from its description:
    each part's quota is a len(order)-th of the sentences; in file order, a sentence goes to
    the part of its rarest type (entities counted over the whole set) whose quota is not
    used up; a sentence without entities, or whose types' parts are full, goes to a random
    part with room (CFNER's draw is unseeded; ours is seeded); once every part is full, the
    rest is dropped. Parts are disjoint and listed in `order`.

    >>> greedy_split([["B-LOC"], ["B-PER"], ["O"], ["B-PER", "B-LOC"]], ["LOC", "PER"])
    [[0, 3], [1, 2]]
    """
    from tagshift.schemes import chunks

    types = [{c.label for c in chunks(t)} & set(order) for t in tags]
    count = Counter(label for t in tags for c in chunks(t) if (label := c.label) in order)
    quota = len(tags) // len(order)
    parts: dict[str, list[int]] = {t: [] for t in order}
    draw = random.Random(seed)
    for i, found in enumerate(types):
        rarest_first = sorted(found, key=lambda t: (count[t], order.index(t)))
        part = next((t for t in rarest_first if len(parts[t]) < quota), None)
        if part is None:
            room = [t for t in order if len(parts[t]) < quota]
            if not room:
                break
            part = draw.choice(room)
        parts[part].append(i)
    return [parts[t] for t in order]


def data(quick: bool, protocol: str) -> dict:
    """Step k's training part and dev set (type k only), and the test set with steps 1..k's types."""
    from tagshift.corpus import Corpus

    order = PROTOCOLS[protocol]
    train, dev, test = (read_shared("conll2003", f"eng.{n}") for n in ("train", "testa", "testb"))
    if protocol == "published":
        parts = [[train.sentences[i] for i in part] for part in greedy_split([s.tags for s in train.sentences], order)]
        parts = [part[: QUICK["part"]] if quick else part for part in parts]
    else:
        shuffled = list(range(len(train)))
        random.Random(13).shuffle(shuffled)
        size = QUICK["part"] if quick else len(shuffled) // len(order)
        parts = [[train.sentences[i] for i in shuffled[k * size:(k + 1) * size]] for k in range(len(order))]
    if quick:
        dev, test = Corpus(dev.sentences[:QUICK["test"]], dev.path), Corpus(test.sentences[:QUICK["test"]], test.path)
    return {
        "train": [only(Corpus(part, train.path), {t}) for part, t in zip(parts, order)],
        "dev": [only(dev, {t}) for t in order],
        "test": [only(test, set(order[: k + 1])) for k in range(len(order))],
    }


def tag(protocol: str) -> str:
    """The protocol's part of file names: none for "shuffled", whose runs were named before there were two."""
    return "" if protocol == "shuffled" else f"{protocol}-"


def step1_path(folder: Path, protocol: str, backend: str, seed: int) -> Path:
    return folder / f"{backend}-{tag(protocol)}step1-seed{seed}"  # shared by every strategy


def train_step1(protocol: str, backend: str, seed: int, quick: bool, folder: Path, device: str = "cpu") -> None:
    """Step 1's model (main trains it before the strategies, which start from it)."""
    from tagshift.bundle import CONFIG
    from tagshift.training import CHECKPOINT, TrainConfig, fit

    first = step1_path(folder, protocol, backend, seed)
    if (first / CONFIG).is_file():
        return
    d = data(quick, protocol)  # read only when step 1 must be trained
    recipe = CONLL_RECIPES[CONLL_ROW[protocol][backend]]
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
    fit(tagger, d["train"][0], d["dev"][0], training, first, resume=resume, command=f"python bench/incremental.py ({protocol}, step 1)")


def run_one(protocol: str, backend: str, strategy: str, seed: int, quick: bool, folder: Path,
            device: str = "cpu") -> dict:
    """All steps of one (backend, strategy, seed) from step 1's model; each step's model is cached."""
    import tagshift
    from tagshift.bundle import CONFIG
    from tagshift.training import CHECKPOINT, TrainConfig, evaluate_tagger
    from tagshift.transfer import AdaptConfig, adapt_training, prepare, train_prepared

    d, order = data(quick, protocol), PROTOCOLS[protocol]
    steps = []
    train_step1(protocol, backend, seed, quick, folder, device)
    model = tagshift.load(step1_path(folder, protocol, backend, seed), device)
    step1_lr = TrainConfig.for_backend(backend, **CONLL_RECIPES[CONLL_ROW[protocol][backend]]["training"]).lr
    for k in range(len(order)):
        if k > 0:
            adapt_options, at_step1_rate = STRATEGIES[strategy]
            out = folder / f"{backend}-{tag(protocol)}{strategy.replace(' ', '')}-step{k + 1}-seed{seed}"
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
                               command=f"python bench/incremental.py ({protocol}, {backend}, {strategy}, step {k + 1}, seed {seed})")
            model = tagshift.load(out, device)
        scores = evaluate_tagger(model, d["test"][k])
        seen = order[: k + 1]
        steps.append({"step": k + 1, "types": seen, "micro": scores.restrict(seen).micro.f1,
                      "macro": scores.restrict(seen).macro.f1,
                      "per_type": {t: p.f1 for t, p in scores.per_type.items()}})
    return {"protocol": protocol, "backend": backend, "strategy": strategy, "seed": seed,
            "precision": PRECISION[backend], "steps": steps}


def protocol_of(record: dict) -> str:
    return record.get("protocol", "shuffled")  # the records made before there were two protocols


def averaged(record: dict, measure: str) -> float:
    """The papers' figure: `measure` (micro or macro F1) averaged over all steps, the first included."""
    return statistics.mean(step[measure] for step in record["steps"])


def last(record: dict, measure: str) -> float:
    return record["steps"][-1][measure]


def both(rows: list[dict], value) -> str:
    """'micro / macro', each mean ± std over `rows`, `value(record, measure)` giving a run's score."""
    return f"{mean_std([value(r, 'micro') for r in rows])} / {mean_std([value(r, 'macro') for r in rows])}"


def table(results: list[dict], protocol: str, quick: bool) -> str:
    """One protocol's table: a row per (backend, strategy) with 3 seeds (--quick: 1), each
    step's micro / macro, their average over the steps and the last step's; the runs of the
    rows still short of that are counted below the table, their scores not shown."""
    min_seeds = 1 if quick else 3
    order = PROTOCOLS[protocol]
    results = [r for r in results if protocol_of(r) == protocol]
    split = ("CFNER's greedy split" if protocol == "published"
             else "eng.train shuffled (fixed seed) and cut in quarters")
    lines = [f"### Protocol: {protocol}", "",
             f"Order: {' → '.join(order)}; {split}. Test: eng.testb with the types seen so far, micro / macro F1 "
             f"(conlleval mode). Published, {PUBLISHED}.", ""]
    lines += ["| backend | strategy | seeds | " + " | ".join(f"step {k + 1}" for k in range(len(order)))
              + " | averaged over the steps | last step |", "|---|---|---|" + "---|" * (len(order) + 2)]
    shown: list[dict] = []
    pending: dict[str, int] = {}
    for backend in BACKENDS:
        for strategy in STRATEGIES:
            rows = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            if len(rows) < min_seeds:
                pending[backend] = pending.get(backend, 0) + len(rows)
                continue
            shown += rows
            cells = [both(rows, lambda r, m, k=k: r["steps"][k][m]) for k in range(len(order))]
            cells += [f"**{both(rows, averaged)}**", both(rows, last)]
            lines.append(f"| {backend} | {strategy} | {len(rows)} | " + " | ".join(cells) + " |")
        seeds, bound = joint_bound(protocol, backend) if not quick else (0, "")
        if seeds:
            lines.append(f"| {backend} | joint training, all types (upper bound; bench/conll.py {CONLL_ROW[protocol][backend]}) "
                         f"| {seeds} | " + " | " * (len(order) + 1) + f"{bound} |")
    lines += ["", ran_on(shown, "backend")] if shown else []
    lines += not_shown(pending, "strategies", min_seeds) or ([] if shown else ["", "No runs recorded yet."])
    return "\n".join(lines)


def joint_bound(protocol: str, backend: str) -> tuple[int, str]:
    """The upper bound, bench/conll.py's models (the protocol's recipe) trained on every type at
    once: its seeds and 'micro / macro' test F1 over the four types (0 and '' before those runs exist)."""
    joint = load_records("conll", f"{CONLL_ROW[protocol][backend]}-seed*.json")
    if not joint:
        return 0, ""
    micro = [r["test_f1"] for r in joint]
    macro = [statistics.mean(r["test_per_type"].get(t, 0.0) for t in PROTOCOLS["published"]) for r in joint]
    return len(joint), f"{mean_std(micro)} / {mean_std(macro)}"


# The README's rows, in its order, named by the adapt options a user would give.
HEADLINE = {
    "naive": "naive fine-tuning",
    "distill": "`--distill`",
    "pseudo-label": "`--pseudo-label`",
    "pseudo-label + full lr": "`--pseudo-label`, encoder at step 1's rate (`--encoder-lr`)",
    "distill + keep old head": "`--distill --keep-old-head`",
}


def headline(results: list[dict]) -> str:
    """The README's rows: micro / macro F1 averaged over the steps (the papers' figure) and
    after the last step, a column pair per backend, for the strategies with 3 seeds, and joint
    training as the upper bound. Each backend's columns come from the published protocol once
    it has such rows there (else from the shuffled one, its header says which)."""
    chosen = {}
    for backend in BACKENDS:
        counts = Counter(r["strategy"] for r in results if protocol_of(r) == "published" and r["backend"] == backend
                         and r["strategy"] in HEADLINE)
        chosen[backend] = "published" if max(counts.values(), default=0) >= 3 else "shuffled"
    lines = ["| each step adapted with | " + " | ".join(f"{b} ({chosen[b]}): averaged over the steps | {b}: last step"
                                                     for b in BACKENDS) + " |", "|---|" + "---|" * (2 * len(BACKENDS))]
    seeds: set[int] = set()
    for strategy, name in HEADLINE.items():
        cells = []
        for backend in BACKENDS:
            rows = [r for r in results if protocol_of(r) == chosen[backend] and r["backend"] == backend
                    and r["strategy"] == strategy]
            seeds |= {len(rows)} if len(rows) >= 3 else set()
            cells += ([both(rows, averaged), both(rows, last)] if len(rows) >= 3 else ["", ""])
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bounds = [joint_bound(chosen[b], b) for b in BACKENDS]
    seeds |= {n for n, _ in bounds if n}
    lines.append("| joint training on every type (upper bound) | "
                 + " | ".join(cell for _, text in bounds for cell in ("", text)) + " |")
    caption = (f"Class-incremental CoNLL-2003: one type per step, each step's data annotated for its type only; micro / "
               f"macro F1 (conlleval mode), {seeds_phrase(seeds)}. Columns marked published follow the papers' protocol "
               f"({' → '.join(PROTOCOLS['published'])}, CFNER's split) and compare with their figures: {PUBLISHED}.")
    if "shuffled" in chosen.values():
        caption += (f" Columns marked shuffled are this repo's first protocol ({' → '.join(PROTOCOLS['shuffled'])}, a "
                    f"shuffled split), not comparable with them.")
    return "\n".join([caption, "", *lines])


def record_name(record: dict) -> str:
    return f"{tag(protocol_of(record))}{record['backend']}-{record['strategy'].replace(' ', '')}-seed{record['seed']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=4, metavar=("PROTOCOL", "BACKEND", "STRATEGY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.seeds == [0, 1, 2]:
        args.seeds = [0]
    if args.quick and args.strategies == list(STRATEGIES):
        args.strategies = ["pseudo-label + distill"]
    if args.quick and args.protocols == list(PROTOCOLS):
        args.protocols = ["published"]
    name = "incremental-quick" if args.quick else "incremental"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        configure_run(args.threads)
        protocol, backend, strategy, seed = args.one[0], args.one[1], args.one[2], int(args.one[3])
        if strategy == STEP1:
            train_step1(protocol, backend, seed, args.quick, folder)
            return
        record = stamp(run_one(protocol, backend, strategy, seed, args.quick, folder, args.device), args.device)
        save_record(name, record_name(record), record)
        return

    from tagshift.bundle import CONFIG

    require_shared("conll2003", "eng.train")
    runs = [[p, b, s, str(seed)] for p in args.protocols for seed in args.seeds for b in args.backends
            for s in args.strategies
            if not (records(name) / f"{record_name({'protocol': p, 'backend': b, 'strategy': s, 'seed': seed})}.json").is_file()]
    # step 1 first, so that parallel strategies never train the same one
    firsts = sorted({(p, b, seed) for p, b, _, seed in runs
                     if not (step1_path(folder, p, b, int(seed)) / CONFIG).is_file()})
    run_children(__file__, [[p, b, STEP1, seed] for p, b, seed in firsts], args)
    run_children(__file__, runs, args)
    results = load_records(name)
    body = "\n\n".join(table(results, p, args.quick) for p in PROTOCOLS if not args.quick or p in args.protocols)
    publish("incremental", body, results, args.quick, headline(results))
    print(body)


if __name__ == "__main__":
    main()
