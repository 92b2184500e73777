"""spaCy 3.8's own NER, trained here on CoNLL-2003, beside tagshift's (issue 26, item 4).

Per seed, on the same eng.train (training) and eng.testa (dev):

- spaCy: `spacy init config --lang en --pipeline ner --optimize PRESET` (CPU), then `spacy
  train` with its defaults (evaluation every 200 steps, patience 1600 steps, the best model
  on dev kept). The efficiency preset as generated; the accuracy preset without the
  en_core_web_lg static vectors it names (not installed here: `--paths.vectors null`, no
  static vectors in the embedding), so its wider, deeper tok2vec alone. Training minutes are
  the wall time of `spacy train`.
- tagshift's BiLSTM-CRF with bench/conll.py's recipe (bilstm-crf-frozen), trained with a
  time budget (`--max-minutes`) equal to the efficiency preset's training minutes of the
  same seed: test F1 at equal wall time. Its full-length runs are bench/conll.py's rows,
  quoted from bench/records/conll.

Every model is scored on eng.testb by tagshift's scorer (entity level, conlleval mode) over
the corpus's own tokens (spaCy's tokenizer is not used), and timed tagging them (words/s,
best of 3, as bench/conll.py times).

    python bench/spacy_conll.py --threads 1     # hours on 2 CPU cores; resumable per run
    python bench/spacy_conll.py --quick         # tiny slices, a few steps: checks the script
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import conll  # noqa: E402
from bench.common import (  # noqa: E402
    CACHE, add_run_options, configure_run, load_records, mean_std, publish, records, require_shared, run_children,
    save_record, stamp,
)

PRESETS = {
    "efficiency": [],
    "accuracy": ["--paths.vectors", "null", "--components.tok2vec.model.embed.include_static_vectors", "false"],
}
TAGSHIFT_ROW = "bilstm-crf-frozen"  # bench/conll.py's BiLSTM-CRF with the MiniLM's input embeddings
GLOVE_ROW = "bilstm-crf-glove-all"  # ... and with GloVe 6B vectors, its best (`--vectors glove`, an extra)
# the equal-time rows: `--one NAME SEED`'s NAME -> (bench/conll.py's recipe, the table's row)
EQUAL_TIME = {"equal-time": (TAGSHIFT_ROW, "tagshift bilstm-crf, equal time"),
              "equal-time-glove": (GLOVE_ROW, "tagshift bilstm-crf GloVe, equal time")}
QUICK_STEPS = ["--training.max_steps", "20", "--training.eval_frequency", "10"]


def docbin(corpus, path: Path) -> Path:
    """A corpus as spaCy's training format: one Doc a sentence, its entities from the tags."""
    from spacy.tokens import Doc, DocBin
    from spacy.vocab import Vocab

    from tagshift.schemes import chunks

    if path.is_file():
        return path
    vocab, docs = Vocab(), DocBin()
    for sentence in corpus.sentences:
        doc = Doc(vocab, words=sentence.tokens)
        doc.ents = [doc.char_span(doc[c.start].idx, doc[c.end - 1].idx + len(doc[c.end - 1]), label=c.label)
                    for c in chunks(sentence.tags)]
        docs.add(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    docs.to_disk(path.with_suffix(".tmp.spacy"))
    path.with_suffix(".tmp.spacy").replace(path)
    return path


def train_spacy(preset: str, seed: int, quick: bool, folder: Path, threads: int | None) -> tuple[Path, float]:
    """`spacy init config` and `spacy train` for one preset and seed; the best model's path
    and the training minutes (kept in the run's folder, so a finished run is not retrained)."""
    train, dev, _ = conll.corpora(quick)
    run = folder / f"spacy-{preset}-seed{seed}"
    minutes_file = run / "train_minutes.txt"
    if minutes_file.is_file() and (run / "model-best").is_dir():
        return run / "model-best", float(minutes_file.read_text())
    run.mkdir(parents=True, exist_ok=True)
    config = run / "config.cfg"
    spacy = [sys.executable, "-m", "spacy"]
    subprocess.run([*spacy, "init", "config", str(config), "--lang", "en", "--pipeline", "ner", "--optimize", preset,
                    "--force"], check=True, capture_output=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)} if threads else {})}
    started = time.perf_counter()
    subprocess.run([*spacy, "train", str(config), "--output", str(run),
                    "--paths.train", str(docbin(train, folder / "train.spacy")),
                    "--paths.dev", str(docbin(dev, folder / "dev.spacy")),
                    "--system.seed", str(seed), *PRESETS[preset], *(QUICK_STEPS if quick else [])],
                   check=True, env=env, stdout=sys.stderr)
    minutes = (time.perf_counter() - started) / 60
    minutes_file.write_text(f"{minutes}\n")
    return run / "model-best", minutes


def tagging_speed(predictor, test) -> float:
    """Words/s of anything that predicts as a tagger does, tagging the test tokens."""
    return conll.words_per_second(lambda batch: predictor.predict(batch, batch_size=64, confidence=False),
                                  [s.tokens for s in test.sentences])


def scored(predictor, test) -> dict:
    """Test F1 (conlleval mode) and tagging words/s."""
    from tagshift.training import evaluate_tagger

    scores = evaluate_tagger(predictor, test)
    return {"test_f1": scores.micro.f1, "test_per_type": {t: p.f1 for t, p in scores.per_type.items()},
            "words_per_second": tagging_speed(predictor, test)}


def run_spacy(preset: str, seed: int, quick: bool, folder: Path, threads: int | None) -> dict:
    from tagshift.taggers.spacy_pipeline import SPACY, SpacyPipeline

    best, minutes = train_spacy(preset, seed, quick, folder, threads)
    _, _, test = conll.corpora(quick)
    return {"row": f"spaCy NER, {preset} preset", "seed": seed, "train_minutes": minutes,
            **scored(SpacyPipeline(f"{SPACY}{best}"), test)}


def run_equal_time(name: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    """A tagshift BiLSTM-CRF recipe given the efficiency preset's training minutes of this seed."""
    import tagshift

    recipe, row = EQUAL_TIME[name]
    budget = load_records(name_of(quick), f"{filename('efficiency', seed)}.json")[0]["train_minutes"]
    out = folder / f"tagshift-{name}-seed{seed}"
    record = conll.run_one(recipe, seed, quick, folder, device, overrides={"max_minutes": budget}, out=out)
    speed = tagging_speed(tagshift.load(out), conll.corpora(quick)[2])  # (its F1 is run_one's)
    return {"row": row, "seed": seed, "train_minutes": record["train_seconds"] / 60, "budget_minutes": budget,
            "epochs_run": record["epochs_run"], "test_f1": record["test_f1"], "test_per_type": record["test_per_type"],
            "words_per_second": speed}


def name_of(quick: bool) -> str:
    return "spacy_conll-quick" if quick else "spacy_conll"


def filename(preset: str, seed: int) -> str:
    return f"{preset}-seed{seed}"


def table(results: list[dict], quick: bool) -> str:
    """A row per system with its seeds: test F1, training minutes, tagging words/s; tagshift's
    full-length rows from bench/conll.py's records (their speed from its table's run)."""
    min_seeds = 1 if quick else 3
    lines = ["CoNLL-2003 eng.testb, entity F1 (conlleval mode) over the corpus's tokens, mean ± std over seeds; "
             "trained on eng.train, the best model on eng.testa kept.", "",
             "| system | seeds | test F1 | train min | words/s |", "|---|---|---|---|---|"]
    rows = [f"spaCy NER, {p} preset" for p in PRESETS] + [row for _, row in EQUAL_TIME.values()]
    for row in rows:
        runs = [r for r in results if r["row"] == row]
        if len(runs) < min_seeds:
            continue
        lines.append(f"| {row} | {len(runs)} | {mean_std([r['test_f1'] for r in runs])} | "
                     f"{mean_std([r['train_minutes'] for r in runs], 1, 1)} | "
                     f"{statistics.mean(r['words_per_second'] for r in runs):,.0f} |")
    for recipe in (TAGSHIFT_ROW, GLOVE_ROW):
        full = [] if quick else load_records("conll", f"{recipe}-seed*.json")
        if len(full) >= min_seeds:
            lines.append(f"| tagshift {recipe}, full length (bench/conll.py) | {len(full)} | "
                         f"{mean_std([r['test_f1'] for r in full])} | "
                         f"{mean_std([r['train_seconds'] / 60 for r in full], 1, 1)} | see bench/conll.py |")
    for recipe, row in EQUAL_TIME.values():
        equal = [r for r in results if r["row"] == row]
        if equal:
            budgets = ", ".join(f"{r['budget_minutes']:.1f}" for r in equal)
            begun = ", ".join(str(r["epochs_run"]) for r in equal)
            lines += ["", f"{row}: bench/conll.py's {recipe}, given the efficiency preset's training minutes of the "
                          f"same seed ({budgets}); epochs begun: {begun}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--equal-time", nargs="+", default=list(EQUAL_TIME), choices=list(EQUAL_TIME),
                        help="the tagshift recipes trained for the efficiency preset's minutes")
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=2, metavar=("ROW", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
        args.presets = ["efficiency"] if args.presets == list(PRESETS) else args.presets
    name = name_of(args.quick)
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        configure_run(args.threads)
        row, seed = args.one[0], int(args.one[1])
        record = (run_equal_time(row, seed, args.quick, folder, args.device) if row in EQUAL_TIME
                  else run_spacy(row, seed, args.quick, folder, args.threads))
        save_record(name, filename(row, seed), stamp(record, args.device))
        return

    require_shared("conll2003", "eng.train")

    def missing(runs: list[list[str]]) -> list[list[str]]:
        return [r for r in runs if not (records(name) / f"{filename(r[0], int(r[1]))}.json").is_file()]

    # spaCy first: the equal-time runs take their budget from the efficiency preset's minutes
    spacy_runs = [[p, str(s)] for s in args.seeds for p in args.presets]
    run_children(__file__, missing(spacy_runs), args)
    equal = [[row, str(s)] for row in args.equal_time for s in args.seeds
             if (records(name) / f"{filename('efficiency', s)}.json").is_file()]
    run_children(__file__, missing(equal), args)
    results = load_records(name, "*.json")
    body = table(results, args.quick)
    publish("spacy_conll", body, results, args.quick)
    print(body)


if __name__ == "__main__":
    main()
