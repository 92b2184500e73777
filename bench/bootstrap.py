"""The bootstrap workflow on NCBI-disease (issue 24): 15 seed terms -> `terms` (GloVe 6B,
with the training text's phrases) -> `patterns` -> weak labels over NCBI's training text
(its gold labels unused) -> `adapt` of the CoNLL BiLSTM-CRF source with that silver corpus.
Disease F1 on NCBI test (entity level, conlleval mode), 3 seeds, beside:

- the patterns alone, matched over the test sentences (no training);
- the same adapt with the gold labels of the same sentences;
- the same adapt with a person's half-hour of corrections, simulated: the silver corpus with
  the gold labels of the 100 training sentences the silver-trained model is least sure of
  (the lowest confidence of a Disease entity it predicts there).

The term list is taken as `terms` ranks it, unedited (a person would delete some lines: this
is the floor). Every adapt is `adapt --pseudo-label` (the source's types kept by its own
entities) with the BiLSTM-CRF's adapt defaults, a fixed number of epochs and no dev set: a
user bootstrapping a type has no gold dev set, so the last epoch is kept.

    python bench/bootstrap.py --jobs 2 --threads 1   # under an hour on 2 CPU cores once the source exists
    python bench/bootstrap.py --quick                # tiny slices, one epoch: checks the script

The source is bench/conll.py's BiLSTM-CRF (frozen vectors), its seed 0 for every run (trained
there if missing): the seeds measure the spread of the adaptation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CACHE, add_run_options, configure_run, load_records, mean_std, publish, records, require_shared, run_children,
    save_record, stamp,
)

SEEDS = ["cancer", "breast cancer", "colorectal cancer", "diabetes", "asthma", "tuberculosis", "malaria", "leukemia",
         "hypertension", "arthritis", "cystic fibrosis", "muscular dystrophy", "hemophilia", "ataxia", "tumor"]
LABEL = "Disease"
TERMS = 200  # candidates `terms` ranks, all kept
SIZES = {"train": 2000, "corrected": 100}
QUICK = {"train": 60, "test": 60, "corrected": 5, "terms": 20, "epochs": 1}
EPOCHS = 8
ROWS = ("patterns alone", "adapt: silver", "adapt: silver + 100 corrected", "adapt: gold")
BACKEND = "bilstm-crf"


def filename(row: str, seed: int) -> str:
    """A run's record and model name: "adapt: silver + 100 corrected" -> adapt-silver-and-100-corrected."""
    return f"{row.replace(': ', '-').replace(' + ', '-and-').replace(' ', '-')}-seed{seed}"


def ncbi(quick: bool) -> dict:
    from tagshift.corpus import Corpus, read_corpus

    folder = require_shared("ncbi_disease")
    train, test = read_corpus(folder / "train.tsv"), read_corpus(folder / "test.tsv")
    train = Corpus(train.sentences[: QUICK["train"] if quick else SIZES["train"]], train.path)
    return {"train": train, "test": Corpus(test.sentences[: QUICK["test"]], test.path) if quick else test}


def patterns_file(folder: Path, quick: bool) -> Path:
    """seeds -> terms (GloVe, the training text's phrases) -> patterns, as the commands do."""
    from collections import Counter

    from tagshift.patterns import term_patterns
    from tagshift.taggers.vectors import load_vectors
    from tagshift.terms import phrases, rank_terms

    out = folder / "disease.patterns.jsonl"
    if out.is_file():
        return out
    train = ncbi(quick)["train"]
    counts: Counter[str] = phrases(s.tokens for s in train.sentences)
    ranked = rank_terms(SEEDS, load_vectors("glove"), QUICK["terms"] if quick else TERMS, counts, "NCBI train text")
    (folder / "disease.terms").write_text(ranked.text(), encoding="utf-8")
    records_ = term_patterns(ranked.seeds + [t.text for t in ranked.terms], LABEL)
    out.write_text("".join(json.dumps(r) + "\n" for r in records_), encoding="utf-8")
    return out


def silver(corpus, matcher):
    """`corpus` with its gold replaced by the patterns' matches (what weak-label writes)."""
    from tagshift.schemes import SCHEMES, encode

    return corpus.with_sentences([s.with_tags(encode([span for span, _ in matcher.matches(s.tokens)[0]], len(s),
                                                     SCHEMES["iob2"])) for s in corpus.sentences])


def disease_f1(gold, predicted_tags) -> dict:
    from tagshift.metrics import score_tags

    scores = score_tags(gold.tag_sequences, predicted_tags).restrict([LABEL])
    return {"f1": scores.micro.f1, "precision": scores.micro.precision, "recall": scores.micro.recall}


def least_certain(tagger, corpus, n: int) -> list[int]:
    """The `n` sentences whose least confident predicted Disease entity is least confident
    (a sentence without one counts as sure: the limit of asking the model)."""
    predicted = tagger.predict([s.tokens for s in corpus.sentences], 64)
    certainty = [min((e.confidence for e in p.entities if e.label == LABEL and e.confidence is not None), default=1.0)
                 for p in predicted]
    return sorted(range(len(corpus)), key=lambda i: (certainty[i], i))[:n]


def run_one(row: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    from tagshift.patterns import Matcher, read_patterns
    from tagshift.transfer import AdaptConfig, adapt_training, prepare, train_prepared

    from bench.crossner import quick_source, source

    data = ncbi(quick)
    matcher = Matcher(read_patterns(patterns_file(folder, quick)))
    record: dict = {"row": row, "seed": seed}
    if row == "patterns alone":
        matched = silver(data["test"], matcher)
        record["silver_vs_gold_train"] = disease_f1(data["train"], silver(data["train"], matcher).tag_sequences)
        return {**record, "test": disease_f1(data["test"], matched.tag_sequences), "patterns": len(matcher.patterns)}
    train = silver(data["train"], matcher) if row != "adapt: gold" else data["train"]
    if row == "adapt: silver + 100 corrected":
        import tagshift

        silver_model = tagshift.load(folder / filename("adapt: silver", seed))
        chosen = set(least_certain(silver_model, train, QUICK["corrected"] if quick else SIZES["corrected"]))
        train = train.with_sentences([data["train"].sentences[i] if i in chosen else s
                                      for i, s in enumerate(train.sentences)])
        record["corrected"] = len(chosen)
    # one source for every seed (its seed 0): the seeds measure the adaptation's spread
    src, src_path = quick_source(BACKEND, 0, folder) if quick else source(BACKEND, 0)
    prepared = prepare(src.to(device), train, AdaptConfig(labels="extend", pseudo_label=0.5), seed)
    options = adapt_training(BACKEND, epochs=QUICK["epochs"] if quick else EPOCHS, seed=seed)
    train_prepared(prepared, None, options, folder / filename(row, seed), str(src_path))
    predicted = prepared.tagger.predict([s.tokens for s in data["test"].sentences], 64, confidence=False)
    record["pseudo_labels"] = prepared.pseudo.to_json() if prepared.pseudo else None
    return {**record, "test": disease_f1(data["test"], [p.tags for p in predicted])}


def table(results: list[dict], min_seeds: int) -> str:
    lines = ["NCBI-disease test, Disease entity F1 (conlleval mode), mean ± std over seeds; precision and recall "
             "beside it.", "", "| route | seeds | F1 | precision | recall |", "|---|---|---|---|---|"]
    for row in ROWS:
        runs = [r for r in results if r["row"] == row]
        if not runs or (row != "patterns alone" and len(runs) < min_seeds):
            continue
        cells = [mean_std([r["test"][k] for r in runs]) for k in ("f1", "precision", "recall")]
        lines.append(f"| {row} | {len(runs)} | " + " | ".join(cells) + " |")
    alone = [r for r in results if r["row"] == "patterns alone"]
    if alone:
        quality = alone[0]["silver_vs_gold_train"]
        lines += ["", f"The silver training data against its gold: F1 {100 * quality['f1']:.2f}, precision "
                  f"{100 * quality['precision']:.2f}, recall {100 * quality['recall']:.2f} ({alone[0]['patterns']} "
                  f"patterns from {len(SEEDS)} seeds and {TERMS} ranked terms)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=2, metavar=("ROW", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
    name = "bootstrap-quick" if args.quick else "bootstrap"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)

    if args.one:
        configure_run(args.threads)
        record = run_one(args.one[0], int(args.one[1]), args.quick, folder, args.device)
        save_record(name, filename(args.one[0], int(args.one[1])), stamp(record, args.device))
        return

    require_shared("ncbi_disease", "train.tsv")
    from tagshift.bundle import CONFIG

    from bench.crossner import CONLL_ROW, quick_source, source_path

    patterns_file(folder, args.quick)
    if args.quick:
        quick_source(BACKEND, 0, folder)
    elif not (source_path(BACKEND, 0) / CONFIG).is_file():
        run_children(str(Path(__file__).parent / "conll.py"), [[CONLL_ROW[BACKEND], "0"]], args)

    def missing(rows: list[str], seeds: list[int]) -> list[list[str]]:
        return [[r, str(s)] for s in seeds for r in rows if not (records(name) / f"{filename(r, s)}.json").is_file()]

    # the corrected row asks the silver row's model which sentences to correct: it runs after
    run_children(__file__, missing(["patterns alone"], [0]) + missing(["adapt: silver", "adapt: gold"], args.seeds), args)
    run_children(__file__, missing(["adapt: silver + 100 corrected"], args.seeds), args)
    results = load_records(name, "*.json")
    body = table(results, 1 if args.quick else 3)
    publish("bootstrap", body, results, args.quick)
    print(body)


if __name__ == "__main__":
    main()
