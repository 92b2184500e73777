"""CrossNER: a CoNLL-2003 source adapted to each of five domains (politics, science, music,
literature, ai; 100-200 training sentences each, 9-17 types, most of them new), scored on
each domain's test set; entity F1 in conlleval mode, 3 seeds, both backends.

Compared: training on the target only (no source; the transformer also with a softmax head
instead of the CRF head of its other rows); `replace` (a fresh head on the source's
encoder); `extend` with CoNLL's types renamed to CrossNER's (PER -> person, LOC ->
location, ORG -> organisation, MISC -> misc); `map` initialised from the map `tagshift
labels suggest` proposes on the domain's training data; the last two also with
`--pseudo-label` when asked (`--strategies`; here it writes nothing, see
DEFAULT_STRATEGIES); and, asked for with `--strategies`, issue 27's candidates, among them
`stack` (the target-only model reading the source's tag probabilities). The published average over the five domains (Liu et al., AAAI 2021):
BiLSTM-CRF about 47.6, BERT pre-train then fine-tune about 64.9, with domain-adaptive
pretraining about 69.6.

    python bench/crossner.py             # full: many hours on 2 CPU cores; resumable
    python bench/crossner.py --quick     # tiny slices, politics, two strategies: checks the script

The sources are bench/conll.py's models (trained there if missing).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, add_run_options, configure_run, load_records, mean_std, new_tagger, not_shown, publish, quick_model,
    ran_on, records, require_shared, run_children, save_record, seeds_phrase, stamp,
)
from bench.conll import RECIPES as CONLL_RECIPES  # noqa: E402

DOMAINS = ("politics", "science", "music", "literature", "ai")
# Issue 27 asks the same on a second new-domain target whose types CoNLL has none of: MIT
# Movie (12 types: ACTOR, TITLE, GENRE, PLOT, ...; lower-cased queries), cut to CrossNER's
# size: 200 training and 400 dev sentences drawn (seed 0, disjoint) from engtrain.bio, all of
# engtest.bio as test. Run when asked for (`--domains mit_movie`); its own table.
MOVIE = "mit_movie"
MOVIE_SIZES = {"train": 200, "dev": 400}
BACKENDS = ("bilstm-crf", "transformer")
# The BiLSTM-CRF again with bench/conll.py's GloVe recipe as source and as target-only model
# (issue 26: every GloVe word in its vocabulary, 89.18 on CoNLL test against the frozen
# MiniLM input embeddings' 87.54); run when asked for with --backends. A row name -> family.
GLOVE = "bilstm-crf-glove"
FAMILY = {GLOVE: "bilstm-crf"}
ROWS = (BACKENDS[0], GLOVE, *BACKENDS[1:])  # (the BiLSTM-CRF rows together)
CONLL_NAMES = {"PER": "person", "LOC": "location", "ORG": "organisation", "MISC": "misc"}
SOFTMAX_ROW = "target only, softmax head"
# Issue 27 asks why transfer loses to the target alone, one candidate at a time: adapt trains
# the encoder at a tenth of the head's rate, training from scratch everything at the full
# rate. These rows give the encoder the head's rate (asked for with --strategies).
FULL_RATE = ", encoder at the head's rate"
# ... and with the new rows drawn from N(mean, std) of the existing ones (`--init normal`; for
# the BiLSTM-CRF's new characters too) instead of starting quiet below O
DRAWN = ", new rows drawn"
# ... and with the dev set's words in the BiLSTM-CRF's vocabulary where a vector covers them,
# as training on the target alone builds its vocabulary (adapt grows it from the training
# data only: 5.5-9.2% of the dev tokens are UNK to the adapted model, none to that one)
DEV_WORDS = ", dev words"
# ... and with layer-wise rate decay (`--layer-decay 0.5`): the encoder's top layer at the head's
# rate, each layer down at half the rate above (the transformer's embeddings at 1/64 of it), so
# that the layers a CoNLL source specialised relearn while the lower ones keep what carries over;
# 0.7 keeps the lower layers livelier (the embeddings at 0.7^6 = 0.12 of the head's rate)
DECAYS = (0.5, 0.7)
LAYER_DECAYS = {f", layer decay {decay}": decay for decay in DECAYS}
# ... and with the source's encoder shrunk towards where a new one starts (`shrink_encoder`:
# K of the source's weights, 1 - K of a fresh BiLSTM's or of the pretrained transformer's), as
# a warm start tends to generalise worse than training afresh (Ash and Adams 2020); the
# transformer's on top of its layer-decay row
SHRINKS = (0.75, 0.5, 0.25)
SHRUNK = {f", shrink {keep}": keep for keep in SHRINKS}
# ... and in two stages, the head alone for its first epochs (`--freeze-epochs 5`), then the
# encoder too: "linear probing, then fine-tuning" (Kumar et al. 2022), so that the new rows
# learn on the source's features before the encoder moves
HEAD_FIRST = ", head alone for 5 epochs"
# ... and with the CRF's transition, start and end scores reset to zero, as a new CRF starts,
# instead of carried over from the source's (issue 27's candidate: the source's transitions
# between its types, mapped onto the target's, may hold the target's tags back)
TRANSITIONS_RESET = ", transitions reset"
# Issue 26 asks adapt's time down: `--dev-sample N` chooses the best epoch on a fixed draw of N
# dev sentences (the chosen epoch is then scored on all of dev); CrossNER's dev sets are 2-4x
# their training sets, and scoring them each epoch took ~30% of a BiLSTM-CRF's adapt
DEV_SAMPLE = 200
SAMPLED = f", dev sample {DEV_SAMPLE}"
# ... or all of dev, scored less often (`--dev-every`, `dev_every_for`): every ceil(dev / train)
# epochs (CrossNER: every 3 epochs on politics and science, 4 on the others), each epoch's
# training unchanged, the last epoch always scored
SPARSE_DEV = ", dev every ceil(dev/train) epochs"
# The row adapt's recipe (transfer/recipe.py) runs for a transformer on a new domain: the head
# first at layer decay 0.7 (HEAD_FIRST_ROW, the recipe until sparse dev scoring, which each
# epoch trains the same and chooses among fewer epochs, joined it). Where the source finds few
# of the target's entities (MIT Movie) the recipe also trains a target-only control and keeps
# the better on dev (`--compare-scratch`); the second target's table derives that row from this
# one's runs and target only's, seed by seed, by their best dev F1.
# Issue 27's "source's predictions as features": `adapt --labels stack` builds the target-only
# model afresh and gives it the frozen source's tag probabilities of each word as input
# (transfer/stack.py), trained at the full rate as training on the target alone is
STACK = "stack"
# ... with the source encoder's states of each word beside its probabilities (`--guide-states`)
STATES = ", with the source's states"
# ... or the map at the head's rate, its encoder the source's, reading the source's tag
# probabilities too (`adapt --guide`, transfer/stack.py's graft_guide): both head starts at once
READS = ", reading the source's tags"
# ... or the map at the head's rate with each encoder weight pulled towards the source's by an L2
# term (`adapt --anchor W`, L2-SP, Li et al. 2018): the rate's freedom, without drifting far
ANCHORS = (0.001, 0.01)
ANCHORED = {f", anchored to the source {weight}": weight for weight in ANCHORS}
# ... and with each new type's rows starting below those of the source type that finds its
# entities (`--init related`: science's person below PER's, mapped to scientist) instead of below O
RELATED = ", new rows below related source types"
# ... or beyond it: the encoder at twice the head's rate (the rate bullets and the anchor's say the
# BiLSTM-CRF's encoder gains from moving further from the CoNLL source)
TWICE_RATE = ", encoder at twice the head's rate"
# ("extend" + FULL_RATE: the old default's operation at the head's rate, issue 27's "the same
# for extend")
HEAD_FIRST_ROW = "map (suggested)" + FULL_RATE + ", layer decay 0.7" + HEAD_FIRST
RECIPE_ROW = HEAD_FIRST_ROW + SPARSE_DEV
# The row that runs what adapt's recipe chooses (transfer/recipe.py), by backend and operation:
# on MIT Movie the transformer's source finds 35-38% of the target's entities (a map, with a
# control); the cased BiLSTM-CRF sources mostly find none in the lower-cased queries (extend at
# the head's rate, with a control), or a few that all land (a map, with a control)
RECIPE_ROWS = {"transformer": {"map": RECIPE_ROW},
               **{b: {"map": "map (suggested)" + FULL_RATE, "extend": "extend" + FULL_RATE} for b in ("bilstm-crf", GLOVE)}}
CONTROLLED = "the recipe's row, or target only where dev prefers it"
STRATEGIES = ("target only", SOFTMAX_ROW, "replace", "extend", "extend + pseudo-label", "map (suggested)",
              "map (suggested) + pseudo-label", "replace" + FULL_RATE, "map (suggested)" + FULL_RATE,
              "map (suggested)" + FULL_RATE + DRAWN, "map (suggested)" + FULL_RATE + DEV_WORDS,
              *("map (suggested)" + FULL_RATE + row for row in LAYER_DECAYS), "map (suggested)" + FULL_RATE + SAMPLED,
              *("map (suggested)" + FULL_RATE + row for row in SHRUNK),
              *("map (suggested)" + FULL_RATE + ", layer decay 0.5" + row for row in SHRUNK),
              "map (suggested)" + FULL_RATE + HEAD_FIRST, "map (suggested)" + FULL_RATE + ", layer decay 0.5" + HEAD_FIRST,
              HEAD_FIRST_ROW, "map (suggested)" + FULL_RATE + TRANSITIONS_RESET, HEAD_FIRST_ROW + SAMPLED,
              RECIPE_ROW, STACK, STACK + STATES, "map (suggested)" + FULL_RATE + READS, "extend" + FULL_RATE,
              *("map (suggested)" + FULL_RATE + row for row in ANCHORED), "map (suggested)" + TWICE_RATE,
              "map (suggested)" + FULL_RATE + RELATED)
# Every CrossNER domain annotates person, location, organisation and misc, so once CoNLL's
# types are renamed or mapped onto them no source type is left unannotated and
# --pseudo-label writes nothing (the quick run records 0 sentences): the same run twice.
# Those rows run only when asked for with --strategies.
DEFAULT_STRATEGIES = tuple(s for s in STRATEGIES if "pseudo" not in s and FULL_RATE not in s and TWICE_RATE not in s
                           and STACK not in s)
# The transformer rows put a CRF head on the encoder (`adapt --head crf` over the softmax
# CoNLL source: its transitions start at 0, so it predicts what the source did, then
# learns): on 100-200 sentences a softmax head has to learn from each word alone where
# an entity starts and ends. SOFTMAX_ROW (the transformer's only) measures that choice.
HEAD = "crf"  # every row's but SOFTMAX_ROW (the BiLSTM-CRF's own default)
# Each backend's source is the CoNLL table's row (bench/conll.py; the BiLSTM-CRF with frozen
# word vectors, its best); training on the target only builds the same model afresh.
CONLL_ROW = {"bilstm-crf": "bilstm-crf-frozen", "transformer": "transformer", GLOVE: "bilstm-crf-glove-all"}
# The transformer's head learns at adapt's default head rate (ten times the BERT rate) in
# every row, training on the target only included, so that row is no weaker baseline; 20
# epochs because 100-200 sentences make only 7-13 steps an epoch (politics' dev F1 levels
# off after 15-20). Either backend's epochs rise where they would make fewer optimiser
# steps than adapt's note asks for (FEW_STEPS: 36 epochs for the 100-sentence domains).
# The transformer computes in bf16 (`--precision bf16`: 1.56x the training speed on the
# AVX512-BF16 CPU bench/speed.py measured; on an AVX2-only CPU many times slower, where
# `--precision fp32` runs every run in fp32); the BiLSTM-CRF, which trains slower in it, in fp32.
TRAINING = {"bilstm-crf": {"epochs": 30, "patience": 5},
            "transformer": {"epochs": 20, "patience": 5, "head_lr": 5e-4, "precision": "bf16"}}
TRAINING.update({row: TRAINING[family] for row, family in FAMILY.items()})
PUBLISHED = "BiLSTM-CRF ≈47.6, BERT pre-train then fine-tune ≈64.9, with domain-adaptive pretraining ≈69.6 (paper average)"
QUICK = {"train": 30, "dev": 30, "test": 50, "epochs": 1}


def domain(name: str, quick: bool) -> dict:
    from tagshift.corpus import Corpus

    splits = movie() if name == MOVIE else {split: read_shared("crossner", name, f"{split}.txt")
                                           for split in ("train", "dev", "test")}
    if quick:
        splits = {k: Corpus(c.sentences[: QUICK[k]], c.path) for k, c in splits.items()}
    return splits


def movie() -> dict:
    """MIT Movie at CrossNER's size (MOVIE_SIZES drawn from its training file, in file order)."""
    import random

    from tagshift.corpus import Corpus

    pool, test = read_shared("mit_movie", "engtrain.bio"), read_shared("mit_movie", "engtest.bio")
    drawn = random.Random(0).sample(range(len(pool)), sum(MOVIE_SIZES.values()))
    cut = MOVIE_SIZES["train"]
    return {"train": Corpus([pool.sentences[i] for i in sorted(drawn[:cut])], pool.path),
            "dev": Corpus([pool.sentences[i] for i in sorted(drawn[cut:])], pool.path), "test": test}


def source_path(backend: str, seed: int) -> Path:
    return CACHE / "conll" / f"{CONLL_ROW[backend]}-seed{seed}"


def source(backend: str, seed: int):
    """bench/conll.py's model (main trains the missing ones first)."""
    import tagshift

    path = source_path(backend, seed)
    return tagshift.load(path), path


def quick_source(backend: str, seed: int, folder: Path):
    """A tiny stand-in source for --quick."""
    import tagshift
    from tagshift.bundle import CONFIG
    from tagshift.corpus import Corpus
    from tagshift.training import TrainConfig, fit

    out = folder / f"source-{backend}-seed{seed}"
    if not (out / CONFIG).is_file():
        train = read_shared("conll2003", "eng.train")
        train = Corpus(train.sentences[:100], train.path)
        family = FAMILY.get(backend, backend)
        fit(new_tagger(family, {}, train, seed), train, None, TrainConfig.for_backend(family, epochs=1), out)
    return tagshift.load(out), out


def run_name(backend: str, name: str, strategy: str, seed: int) -> str:
    """The cache name of one run: "map (suggested)" -> mapsuggested, ", layer decay 0.5" -> layerdecay05."""
    return f"{backend}-{name}-{re.sub(r'[^a-z0-9+-]', '', strategy)}-seed{seed}"


def run_one(backend: str, name: str, strategy: str, seed: int, quick: bool, folder: Path, device: str = "cpu",
            model_options: dict | None = None, out: Path | None = None, precision: str | None = None,
            source_model: Path | None = None) -> dict:
    """One run of the table; `model_options` change the target-only model's (bench/pretrain.py
    gives it a pretrained encoder), `source_model` the transfer rows' source (default: the seed's
    CoNLL model; bench/pretrain.py gives one whose encoder it pretrained), `out` where it trains,
    `precision` how it computes (default: the row's; the record says which)."""
    from tagshift.training import TrainConfig, evaluate_tagger, fit
    from tagshift.transfer import enough_epochs

    data = domain(name, quick)
    family = FAMILY.get(backend, backend)
    options = {**TRAINING[backend], "seed": seed}
    row_precision = options.pop("precision", "fp32")
    precision = precision or row_precision  # the tagger's setting, kept through training and the test
    options["epochs"] = QUICK["epochs"] if quick else max(
        options["epochs"], enough_epochs(len(data["train"]), TrainConfig.for_backend(family, **options)))
    out = out or folder / run_name(backend, name, strategy, seed)
    record = {"backend": backend, "domain": name, "strategy": strategy, "seed": seed, "precision": precision}
    if strategy.startswith("target only"):
        # the source's model, built afresh (the transformer's with the rows' head)
        model = {**CONLL_RECIPES[CONLL_ROW[backend]]["model"], "head": "softmax" if strategy == SOFTMAX_ROW else HEAD,
                 **(model_options or {})}
        model = quick_model(model) if quick else model
        tagger = new_tagger(family, model, data["train"], seed, extra=data["dev"], device=device)
        tagger.precision = precision
        result = fit(tagger, data["train"], data["dev"], TrainConfig.for_backend(family, **options), out)
    else:
        if source_model is not None:
            import tagshift

            src, src_path = tagshift.load(source_model), source_model
        else:
            src, src_path = quick_source(backend, seed, folder) if quick else source(backend, seed)
        adapted, result, tagger = adapt_source(src.to(device), src_path, strategy, data, options, precision, seed, out)
        record.update(adapted)
    # (how the run ended: whether early stopping cut it short is part of the result; the best
    # epoch's dev F1, what `adapt --compare-scratch` compares, for the rows derived from two)
    record.update(dev_f1=result.best_dev.micro.f1 if result.best_dev else None, epochs_run=len(result.history), best_epoch=result.best_epoch, stopped_early=result.stopped_early,
                  steps=result.history[-1]["steps"] if result.history else 0,
                  # (where the training time went: the loop's seconds, of them scoring dev)
                  train_seconds=result.history[-1]["seconds"] if result.history else 0.0,
                  dev_seconds=sum(h.get("dev_seconds", 0.0) for h in result.history))
    scores = evaluate_tagger(tagger, data["test"])
    return {**record, "test_f1": scores.micro.f1, "test_macro_f1": scores.macro.f1,
            "per_type": {t: p.f1 for t, p in scores.per_type.items()}}


def adapt_source(src, src_path: Path, strategy: str, data: dict, options: dict, precision: str, seed: int,
                 out: Path) -> tuple[dict, Any, Any]:
    """One of the transfer rows: `src` adapted to the domain `data` by `strategy` (replace,
    extend with CoNLL's types renamed, or map from `labels suggest`, each optionally with
    pseudo-labels); the record's fields, the training result and the adapted tagger.
    (bench/spacy_new_types.py runs its imported Hugging Face source through it too.)"""
    from tagshift.labelmap import LabelMap
    from tagshift.training import dev_every_for
    from tagshift.transfer import AdaptConfig, adapt_training, prepare, train_prepared
    from tagshift.transfer.adapt import fresh_encoder_rate
    from tagshift.transfer.recipe import choose_recipe
    from tagshift.transfer.shrink import shrink_encoder
    from tagshift.transfer.suggest import suggest_map
    from tagshift.transfer.vocabulary import extend_vocabulary

    # what adapt would choose here with --labels left out (transfer/recipe.py), outside the timing
    record: dict = {"recipe": choose_recipe(src, data["train"], None, None).to_json()}
    started = time.perf_counter()
    if strategy.startswith("map"):
        suggestion = suggest_map(src, data["train"])
        label_map = suggestion.label_map()
        record["map"] = suggestion.mapping
    elif strategy.startswith("extend"):
        label_map = LabelMap(rename={a: b for a, b in CONLL_NAMES.items() if a in src.types})
    else:
        label_map = None
    operation = next((o for o in ("replace", "map", STACK) if strategy.startswith(o)), "extend")
    adapt_options = AdaptConfig(labels=operation, head=HEAD, pseudo_label=0.5 if "pseudo" in strategy else None,
                                init="normal" if strategy.endswith(DRAWN) else "related" if RELATED in strategy else "quiet",
                                guide=READS in strategy,
                                guide_states=STATES in strategy,
                                anchor=next((w for row, w in ANCHORED.items() if strategy.endswith(row)), None))
    prepared = prepare(src, data["train"], adapt_options, seed, label_map, data["dev"])
    prepared.tagger.precision = precision  # the source tags (pseudo-labels) in fp32, as loaded
    for row, keep in SHRUNK.items():
        if strategy.endswith(row):
            record["shrink"] = shrink_encoder(prepared.tagger, keep, seed).to_json()
    if strategy.endswith(TRANSITIONS_RESET):
        import torch

        crf = getattr(prepared.tagger.head, "inner", prepared.tagger.head).crf  # (a mapping head's inner one)
        with torch.no_grad():
            for scores in (crf.transitions, crf.start, crf.end):
                scores.zero_()
    if strategy.endswith(DEV_WORDS):
        record["dev_vocabulary"] = extend_vocabulary(prepared.tagger, data["dev"], adapt_options.init, seed).to_json()
    training = adapt_training(src.backend.name, **options)
    fresh_encoder_rate(adapt_options, training, {})  # (a stacked model's: the full rate, as adapt gives it)
    if FULL_RATE in strategy:
        training.encoder_lr = training.head_lr
    if TWICE_RATE in strategy:
        training.encoder_lr = 2 * training.head_lr
    for row, decay in LAYER_DECAYS.items():
        if row in strategy:
            training.layer_decay = decay
    if SAMPLED in strategy:
        training.dev_sample = DEV_SAMPLE
    if SPARSE_DEV in strategy:
        training.dev_every = dev_every_for(len(data["train"]), len(data["dev"]), training)  # (as the recipe)
    if HEAD_FIRST in strategy:
        training.freeze_epochs = 5
    record.update(rates={"head": training.head_lr, "encoder": training.encoder_lr, "layer_decay": training.layer_decay,
                         "freeze_epochs": training.freeze_epochs},
                  init=adapt_options.init, dev_sample=training.dev_sample, dev_every=training.dev_every)
    result = train_prepared(prepared, data["dev"], training, out, str(src_path))
    # speed.py's adapt-time share: the whole update (pseudo-labels, surgery, training)
    # against the source's training on all of CoNLL-2003
    record["adapt_seconds"] = time.perf_counter() - started
    # (the source's own training log: on a fresh clone the source may be a retrained model;
    # an imported source has none)
    log = src_path / "train_log.jsonl"
    source_log = log.read_text().splitlines() if log.is_file() else []
    record["source_seconds"] = json.loads(source_log[-1])["seconds"] if source_log else None
    record["pseudo_labels"] = prepared.pseudo.to_json() if prepared.pseudo else None
    return record, result, prepared.tagger


def table(results: list[dict], min_seeds: int = 3, domains: tuple[str, ...] = DOMAINS) -> str:
    """A row per (backend, strategy) once each of `domains` has `min_seeds` seeds; the runs
    of the rows still short of that are counted below the table, their scores not shown."""
    lines = [f"Published: {PUBLISHED}.", "",
             "| backend | strategy | seeds | " + " | ".join(domains) + " | average |", "|---|---|---|" + "---|" * (len(domains) + 1)]
    shown: list[dict] = []
    pending: dict[str, int] = {}
    for backend in ROWS:
        for strategy in STRATEGIES:
            rows = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            average = domain_average(rows, min_seeds, domains)
            if average is None:
                pending[backend] = pending.get(backend, 0) + len(rows)
                continue
            cells = [mean_std([r["test_f1"] for r in rows if r["domain"] == name]) for name in domains]
            lines.append(f"| {backend} | {strategy} | {average[0]} | " + " | ".join(cells) + f" | {average[1]} |")
            shown += rows
    lines += ["", ran_on(shown, "backend")] if shown else []
    lines += not_shown(pending, "rows", min_seeds, " in some domain")
    return "\n".join(lines)


def exploration_table(results: list[dict], seed: int = 0, domains: tuple[str, ...] = DOMAINS) -> str:
    """Candidates tried on one seed before they earn three (issue 27): each row still short of
    three seeds that has `seed` in every domain, beside the same seed's runs of training on the
    target alone and of the row it adds to (the longest row name it extends). One seed is an
    exploration, not a result: a row's published scores are the table's, at three seeds."""
    def runs(backend: str, strategy: str) -> list[dict]:
        return [r for r in results if r["backend"] == backend and r["strategy"] == strategy and r["seed"] == seed
                and r["domain"] in domains]

    def line(backend: str, strategy: str, tried: bool) -> str | None:
        found = {r["domain"]: r["test_f1"] for r in runs(backend, strategy)}
        if len(found) < len(domains):
            return None
        cells = [f"{100 * found[d]:.2f}" for d in domains]
        name = strategy if tried else f"({strategy})"
        return f"| {backend} | {name} | " + " | ".join(cells) + f" | {100 * statistics.mean(found.values()):.2f} |"

    lines = []
    for backend in ROWS:
        for strategy in STRATEGIES:
            rows = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            if domain_average(rows, 3, domains) is not None or not (tried := line(backend, strategy, True)):
                continue
            base = max((s for s in STRATEGIES if strategy.startswith(s) and s != strategy), key=len, default=None)
            lines += [compared for s in ("target only", base) if s and (compared := line(backend, s, False))]
            lines.append(tried)
    if not lines:
        return ""
    head = ["| backend | strategy (in brackets: what it is compared with) | " + " | ".join(domains) + " | average |",
            "|---|---|" + "---|" * (len(domains) + 1)]
    return "\n".join(head + list(dict.fromkeys(lines)))


# The rows the by-type table sets against training on the target alone: the map at adapt's
# usual rates, each backend's recipe row for a new domain, and for the BiLSTM-CRFs the
# stacked models too
BY_TYPE_ROWS = {"transformer": ("map (suggested)", RECIPE_ROW),
                **{b: ("map (suggested)", "map (suggested)" + FULL_RATE, STACK, STACK + STATES) for b in ("bilstm-crf", GLOVE)}}
CAPITALISED = 0.5  # a type is "capitalised" when at least this share of its test entities starts upper-case


def capitalised_share(corpus) -> dict[str, float]:
    """Per type, the share of the corpus's gold entities whose first word starts with an
    upper-case letter (a proper name, as CoNLL's; "physics" or "protein kinase" do not)."""
    from tagshift.schemes import chunks

    upper: dict[str, list[bool]] = {}
    for sentence in corpus.sentences:
        for span in chunks(sentence.tags):
            upper.setdefault(span.label, []).append(sentence.tokens[span.start][:1].isupper())
    return {label: sum(flags) / len(flags) for label, flags in upper.items()}


def type_changes(results: list[dict], backend: str, strategy: str,
                 shares: dict[str, dict[str, float]]) -> dict[bool, list[float]] | None:
    """Per type of each domain, `strategy`'s test F1 minus training on the target alone's
    (the mean over the seeds both have, in points), keyed by whether the type is capitalised;
    None while some domain has fewer than 3 such seeds."""
    def per_type(row: str, name: str) -> dict[int, dict[str, float]]:
        return {r["seed"]: r["per_type"] for r in results
                if r["backend"] == backend and r["strategy"] == row and r["domain"] == name}

    change: dict[bool, list[float]] = {True: [], False: []}
    for name in DOMAINS:
        alone, adapted = per_type("target only", name), per_type(strategy, name)
        seeds = sorted(set(alone) & set(adapted))
        if len(seeds) < 3:
            return None
        for label, share in shares[name].items():
            delta = statistics.mean(adapted[s].get(label, 0.0) - alone[s].get(label, 0.0) for s in seeds)
            change[share >= CAPITALISED].append(100 * delta)
    return change


def by_type_table(results: list[dict], shares: dict[str, dict[str, float]]) -> str:
    """Where transfer gains and loses (issue 27, item 1): per type of each domain, a row's test
    F1 against training on the target alone, the types split by whether their test entities
    are mostly capitalised (`shares`: per domain, per type, from `capitalised_share`).
    CoNLL's sources learnt that entities are proper names."""
    lines = []
    for backend in ROWS:
        for strategy in BY_TYPE_ROWS.get(backend, ()):
            change = type_changes(results, backend, strategy, shares)
            if change is None:
                continue
            cells = [f"{len(v)}, {statistics.mean(v):+.2f}, {sum(d < 0 for d in v)}" for v in (change[True], change[False])]
            lines.append(f"| {backend} | {strategy} | " + " | ".join(cells) + " |")
    head = ["| backend | strategy | capitalised types: count, mean F1 change, behind on | "
            "lower-case types: count, mean F1 change, behind on |", "|---|---|---|---|"]
    return "\n".join(head + lines) if lines else ""


def endings_table(results: list[dict]) -> str:
    """How the runs of each row ended (issue 27 asks whether the epochs and early stopping
    make transfer lose): the mean best epoch against the epochs run, how many runs were still
    improving at their last epoch, and how many early stopping ended. Runs recorded before
    these fields were are left out."""
    lines = ["| backend | strategy | runs | best epoch / epochs run (mean) | best at the last epoch | stopped early |",
             "|---|---|---|---|---|---|"]
    for backend in ROWS:
        for strategy in STRATEGIES:
            runs = [r for r in results if r["backend"] == backend and r["strategy"] == strategy and "best_epoch" in r]
            if runs:
                lines.append(f"| {backend} | {strategy} | {len(runs)} | "
                             f"{statistics.mean(r['best_epoch'] for r in runs):.1f} / "
                             f"{statistics.mean(r['epochs_run'] for r in runs):.1f} | "
                             f"{sum(r['best_epoch'] == r['epochs_run'] for r in runs)} | "
                             f"{sum(bool(r['stopped_early']) for r in runs)} |")
    return "\n".join(lines)


def time_table(results: list[dict]) -> str:
    """Adapt's wall time (issue 26, item 3: at most 0.1 of the source's training time), from
    the runs that record where their time went (dev_seconds: the runs since the training
    loop writes its checkpoint at most every 30 s; the earlier runs' times are not comparable).
    The dev-sample row ran pair by pair with the row it samples (the same source, domain and
    seed one after the other), two runs at a time with one thread each, as the sources trained;
    so did RECIPE_ROW with HEAD_FIRST_ROW (rerun beside it on 2026-12-04, its sources retrained).
    A row once two seeds have run in every domain (a single seed's exploration stays out)."""
    timed = [r for r in results if "dev_seconds" in r and r.get("source_seconds")]
    rows, shown = [], []
    for backend in ROWS:
        for strategy in STRATEGIES:
            runs = [r for r in timed if r["backend"] == backend and r["strategy"] == strategy]
            if not runs:
                continue
            shares = [r["adapt_seconds"] / r["source_seconds"] for r in runs]
            dev = statistics.mean(r["dev_seconds"] / r["adapt_seconds"] for r in runs)
            average = domain_average(runs, 1)  # (over the seeds that ran in every domain)
            if not average or average[0] < 2:
                continue
            shown += runs
            rows.append(f"| {backend} | {strategy} | {len(runs)} | {average[1]} ({average[0]} seeds) | "
                         f"{mean_std([r['adapt_seconds'] for r in runs], 1.0, 1)} | {100 * dev:.0f}% | "
                         f"{statistics.mean(shares):.3f}, {max(shares):.3f} |")
    if not rows:
        return ""
    lines = ["| backend | strategy | runs | test F1, five-domain average | adapt s | of it scoring dev | "
             "adapt / source training (mean, max) |",
             "|---|---|---|---|---|---|---|", *rows]
    sources = sorted({(r["backend"], r["seed"], r["source_seconds"]) for r in shown})
    lines += ["", "Sources' training time (bench/conll.py, each source's train_log.jsonl): " + "; ".join(
        f"{backend} seed {seed} {seconds:,.0f} s" for backend, seed, seconds in sources) + "."] if sources else []
    return "\n".join(lines)


def record_recipes(backends: list[str], seeds: list[int], domains: list[str], quick: bool, folder: Path,
                   name: str) -> None:
    """What adapt's recipe chooses for each cached source on each domain's training data: a
    record per source (the sources that are not in the cache are skipped, and said so)."""
    from tagshift.bundle import CONFIG
    from tagshift.transfer.recipe import choose_recipe

    for backend in backends:
        for seed in seeds:
            if not quick and not (source_path(backend, seed) / CONFIG).is_file():
                print(f"--recipes: no {backend} source of seed {seed} in {CACHE}; skipped", file=sys.stderr)
                continue
            src, _ = quick_source(backend, seed, folder) if quick else source(backend, seed)
            chosen = {}
            for domain_name in domains:
                recipe = choose_recipe(src, domain(domain_name, quick)["train"], None, None)
                evidence = recipe.evidence or {}
                chosen[domain_name] = {"labels": recipe.labels, "control": recipe.control, "reason": recipe.reason,
                                       **{key: evidence.get(key) for key in ("landed", "found", "mapping")}}
            save_record(name, f"{backend}-seed{seed}", stamp({"backend": backend, "seed": seed, "domains": chosen}, "cpu"))


def recipe_table(results: list[dict]) -> str:
    """Per source, the operation the recipe chose on each domain, the share of the source's
    predicted entities that landed on a target entity (the recipe takes a new domain at 80%)
    and the share of the target's entities it found (exact span; below 40% it warns and adds
    a target-only control, "+ control")."""
    names = [d for d in (*DOMAINS, MOVIE) if any(d in r["domains"] for r in results)]
    if not names:
        return ""
    lines = ["| source | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in sorted(results, key=lambda r: (ROWS.index(r["backend"]), r["seed"])):
        cells = [c["labels"] + (" + control" if c.get("control") else "")
                 + (f", {100 * c['landed']:.1f}% landed" if c["landed"] is not None else "")
                 + (f", {100 * c['found']:.0f}% found" if c.get("found") is not None else "")
                 for c in (r["domains"].get(d, {"labels": "", "landed": None}) for d in names)]
        lines.append(f"| {r['backend']} seed {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def movie_table(results: list[dict], min_seeds: int = 3) -> str:
    """The second target's rows (issue 27): test F1 and macro F1 for each (backend, strategy)
    with `min_seeds` seeds, and its mean's difference to the same backend's target only."""
    precisions = ", ".join(sorted({r["precision"] for r in results}))
    lines = [f"{MOVIE_SIZES['train']} training and {MOVIE_SIZES['dev']} dev sentences of engtrain.bio, "
             f"tested on all of engtest.bio; entity F1 (conlleval mode), mean ± std over seeds; computed in {precisions}.", "",
             "| backend | strategy | seeds | test F1 | macro F1 | against target only |", "|---|---|---|---|---|---|"]
    rows = []
    for backend in ROWS:
        alone = [r["test_f1"] for r in results if r["backend"] == backend and r["strategy"] == "target only"]
        for strategy in STRATEGIES:
            runs = [r for r in results if r["backend"] == backend and r["strategy"] == strategy]
            if len(runs) < min_seeds:
                continue
            gain = (f"{100 * (statistics.mean(r['test_f1'] for r in runs) - statistics.mean(alone)):+.2f}"
                    if len(alone) >= min_seeds and strategy != "target only" else "")
            rows.append(f"| {backend} | {strategy} | {len(runs)} | {mean_std([r['test_f1'] for r in runs])} | "
                        f"{mean_std([r['test_macro_f1'] for r in runs])} | {gain} |")
        kept = controlled(results, backend)
        if len(kept) >= min_seeds and len(alone) >= min_seeds:
            gain = 100 * (statistics.mean(r["test_f1"] for r in kept) - statistics.mean(alone))
            adapted = sum(r["strategy"] != "target only" for r in kept)
            rows.append(f"| {backend} | {CONTROLLED} (the adapted model kept on {adapted} of {len(kept)} seeds) | {len(kept)} | {mean_std([r['test_f1'] for r in kept])} | "
                        f"{mean_std([r['test_macro_f1'] for r in kept])} | {gain:+.2f} |")
    return "\n".join(lines + rows) if rows else ""


def controlled(results: list[dict], backend: str) -> list[dict]:
    """Per seed, the run of the row that does what the recipe chose for that seed's source
    (RECIPE_ROWS; each adapt run records the recipe's choice) or the target-only run,
    whichever has the higher best dev F1 (a tie keeps the adapted model, as adapt does): what
    `adapt --compare-scratch` keeps. Only seeds where both runs recorded their dev F1."""
    def run(strategy: str, seed: int) -> dict | None:
        return next((r for r in results if r["backend"] == backend and r["strategy"] == strategy
                     and r["seed"] == seed and r.get("dev_f1") is not None), None)

    def recipe_row(seed: int) -> str | None:
        chosen = next((r["recipe"]["labels"] for r in results if r["backend"] == backend and r["seed"] == seed
                       and r.get("recipe")), None)
        return RECIPE_ROWS.get(backend, {}).get(chosen)

    seeds = sorted({r["seed"] for r in results})
    pairs = [(run(recipe_row(seed), seed), run("target only", seed)) for seed in seeds]
    return [adapted if adapted["dev_f1"] >= alone["dev_f1"] else alone for adapted, alone in pairs if adapted and alone]


def domain_average(rows: list[dict], min_seeds: int = 3, domains: tuple[str, ...] = DOMAINS) -> tuple[int, str] | None:
    """One row's average F1 over `domains`: the seeds that ran in every domain, and 'mean ±
    std' of their averages; None while some domain has fewer than `min_seeds` seeds."""
    seeds = {name: sorted(r["seed"] for r in rows if r["domain"] == name) for name in domains}
    if not rows or min(len(s) for s in seeds.values()) < min_seeds:
        return None
    complete = set.intersection(*(set(s) for s in seeds.values()))
    averages = [statistics.mean(r["test_f1"] for r in rows if r["seed"] == s and r["domain"] in domains)
                for s in sorted(complete)]
    return len(complete), mean_std(averages)


# The README's rows, in its order, named by what a user would run.
HEADLINE = {
    "target only": "trained on the target only (no source)",
    SOFTMAX_ROW: "the same, the transformer with its default softmax head (its other rows: a CRF head)",
    "map (suggested)" + FULL_RATE: "`adapt` with `--labels` left out, the BiLSTM-CRF's recipe: the suggested map, "
                                   "the encoder at the head's rate",
    RECIPE_ROW: "`adapt` with `--labels` left out, the transformer's recipe: the same, layer decay 0.7, the head "
                "alone for its first 5 epochs, dev scored every ceil(dev / train) epochs",
    "map (suggested)": "`adapt --labels map` with the map `labels suggest` proposes",
    "replace": "`adapt --labels replace`",
    "extend": "`adapt --labels extend`",
    STACK: "`adapt --labels stack`: a new model that reads the source's tag probabilities",
}


def headline(results: list[dict]) -> str:
    """The README's rows: average F1 over the five domains, a column per backend, for the
    rows the full table shows (3 seeds in every domain)."""
    # (GloVe's column once one of its rows has run in every domain)
    columns = [b for b in ROWS if b in BACKENDS or any(
        domain_average([r for r in results if r["backend"] == b and r["strategy"] == s]) for s in HEADLINE)]
    titles = {"bilstm-crf": "bilstm-crf (MiniLM input embeddings)", GLOVE: "bilstm-crf (GloVe, `--vectors glove`)"}
    lines = ["| strategy | " + " | ".join(titles.get(c, c) if GLOVE in columns else c for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    seeds: set[int] = set()
    for strategy, name in HEADLINE.items():
        averages = [domain_average([r for r in results if r["backend"] == b and r["strategy"] == strategy])
                    for b in columns]
        seeds |= {a[0] for a in averages if a}
        if any(averages):
            lines.append(f"| {name} | " + " | ".join(a[1] if a else "" for a in averages) + " |")
    caption = (f"CrossNER: a CoNLL-2003 source adapted to each of {len(DOMAINS)} domains ({', '.join(DOMAINS)}; "
               f"100-200 training sentences each), average test F1 over the domains, {seeds_phrase(seeds)}. "
               f"Published: {PUBLISHED}.")
    return "\n".join([caption, "", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=ROWS,
                        help=f"default: {' '.join(BACKENDS)}; {GLOVE}: the BiLSTM-CRF with GloVe vectors")
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=(*DOMAINS, MOVIE),
                        help=f"default: CrossNER's five; {MOVIE}: the second target (issue 27)")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), choices=STRATEGIES)
    add_run_options(parser, parallel=True)
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="every run computes in it (default: each row's, the transformer's bf16; a CPU "
                             "without bf16 instructions runs bf16 many times slower); records say which")
    parser.add_argument("--recipes", action="store_true",
                        help="instead of runs: record what adapt's recipe chooses (--labels left out) with each "
                             "source in the cache (--backends, --seeds) on each of --domains, then publish")
    parser.add_argument("--one", nargs=4, metavar=("BACKEND", "DOMAIN", "STRATEGY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
        args.domains = ["politics"] if args.domains == list(DOMAINS) else args.domains
        if args.strategies == list(DEFAULT_STRATEGIES):
            args.strategies = ["extend + pseudo-label", "map (suggested)"]
    name = "crossner-quick" if args.quick else "crossner"
    recipes = "crossner-recipes-quick" if args.quick else "crossner-recipes"  # (what --recipes records)
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)

    def done(backend: str, domain_name: str, strategy: str, seed: int) -> Path:
        return records(name) / f"{run_name(backend, domain_name, strategy, seed)}.json"

    if args.one:
        configure_run(args.threads)
        backend, domain_name, strategy, seed = args.one[0], args.one[1], args.one[2], int(args.one[3])
        record = stamp(run_one(backend, domain_name, strategy, seed, args.quick, folder, args.device,
                               precision=args.precision), args.device)
        save_record(name, run_name(backend, domain_name, strategy, seed), record)
        return

    from tagshift.bundle import CONFIG

    require_shared("crossner", "politics", "train.txt")
    if MOVIE in args.domains:
        require_shared("mit_movie", "engtrain.bio")
    if args.recipes:
        record_recipes(args.backends, args.seeds, args.domains, args.quick, folder, recipes)
    runs = [] if args.recipes else [[backend, domain_name, strategy, str(seed)]
            for seed in args.seeds for backend in args.backends for domain_name in args.domains for strategy in args.strategies
            # the BiLSTM-CRF's head is a CRF in every row
            if (strategy != SOFTMAX_ROW or backend == "transformer") and not done(backend, domain_name, strategy, seed).is_file()]
    # the sources first, so that parallel runs never train the same one
    sources = sorted({(backend, seed) for backend, _, strategy, seed in runs if not strategy.startswith("target only")})
    if args.quick:
        for backend, seed in sources:
            quick_source(backend, int(seed), folder)
    missing = [[CONLL_ROW[b], s] for b, s in sources if not args.quick and not (source_path(b, int(s)) / CONFIG).is_file()]
    run_children(str(Path(__file__).parent / "conll.py"), missing, args)
    run_children(__file__, runs, args)
    everything = load_records(name)
    results = [r for r in everything if r["domain"] in DOMAINS]  # (CrossNER's; the second target has its table)
    # --quick: the domains it ran, one seed; a full table: all five, 3 seeds
    body = table(results, 1, tuple(d for d in DOMAINS if d in args.domains)) if args.quick else table(results)
    explored = exploration_table(results)
    body += (f"\n\n**Tried on seed 0 only** (issue 27: candidates before they earn three seeds; one seed is not "
             f"a result)\n\n{explored}") if explored and not args.quick else ""
    if not args.quick:
        shares = {name: capitalised_share(domain(name, False)["test"]) for name in DOMAINS}
        typed = by_type_table(results, shares)
        body += (f"\n\n**Where transfer gains and loses, by type** (issue 27; a type is capitalised when at least "
                 f"{CAPITALISED:.0%} of its test entities start upper-case; the F1 change is against `target only`, "
                 f"per type, mean over 3 seeds)\n\n{typed}") if typed else ""
    body += "\n\n**How the runs ended**\n\n" + endings_table(results)
    timed = time_table(results)
    body += "\n\n**Adapt time** (issue 26)\n\n" + timed if timed else ""
    chosen = recipe_table(load_records(recipes))
    body += "\n\n**What adapt chooses with `--labels` left out** (issue 27; transfer/recipe.py)\n\n" + chosen if chosen else ""
    second = movie_table([r for r in everything if r["domain"] == MOVIE], 1 if args.quick else 3)
    body += "\n\n**A second target: MIT Movie at CrossNER's size** (issue 27)\n\n" + second if second else ""
    publish("crossner", body, everything, args.quick, headline(results))
    print(body)


if __name__ == "__main__":
    main()
