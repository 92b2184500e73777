"""CrossNER with task-adaptive pretraining (issue 24): the default encoder's masked-LM
pretraining (`tagshift pretrain`) continued on each domain's unlabelled training and dev text
(never its test text) and, for politics and music, on that plus raw domain text from
../shared/data/raw (UN General Debate speeches; Last.fm artist biographies); then the domain's
training set as bench/crossner.py's target-only transformer row trains it (CRF head, bf16,
the same epochs), 3 seeds, beside that row. Then the same pretraining of the CoNLL source
itself (`tagshift pretrain MODEL`, its head kept; 20 and 40 epochs), adapted by adapt's recipe
for a new domain, beside the same source adapted unpretrained. Also pretraining's cost: word
pieces a second and wall time per domain.

Goal: five-domain average ≥ 66 with the default encoder (BERT-base fine-tuning ≈64.9 in the
CrossNER paper; GLiNER-L zero-shot 65.3 over these five domains).

    python bench/pretrain.py --jobs 2 --threads 1     # hours on 2 CPU cores; resumable
    python bench/pretrain.py --quick                  # tiny slices, one epoch: checks the script
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import crossner  # noqa: E402
from bench.common import (  # noqa: E402
    CACHE, add_run_options, configure_run, load_records, mean_std, publish, records, require_shared, run_children,
    save_record, stamp,
)

RAW = {"politics": "politics_ungd.txt", "music": "music_lastfm.txt"}
RAW_SENTENCES = 20_000  # sentences of the raw domain text, beside the task text
VARIANTS = ("task text", "task + raw text")
# The masked-LM run: the task text is small (700-1,000 sentences), so many passes, as
# task-adaptive pretraining does (Gururangan et al. 2020: 100 epochs); fewer here for the CPU,
# with every 20th sentence held out to keep the best epoch. The default MiniLM comes without a
# masked-LM head (docs/pretrain.md): a new one learns alone for the first epoch, at a higher
# rate, so that a random head's gradients do not reach the encoder.
PRETRAIN = {"epochs": 20, "lr": 1e-4, "head_lr": 1e-3, "freeze_epochs": 1, "seed": 0}
PRETRAIN_RAW = {**PRETRAIN, "epochs": 3}  # 20,000 more sentences: fewer passes
# Pretraining with issue 27's head start: the CoNLL source's encoder (its head kept) pretrained
# on the task text as above (20 epochs; and 40, as every 20-epoch run kept its last epoch),
# once a domain from seed 0's source (as the encoders above are pretrained once), then adapt's
# recipe for a new domain (bench/crossner.py's RECIPE_ROW), 3 seeds; beside it the same recipe
# from the same source unpretrained, so that the rows differ in the pretraining alone.
SOURCE_SEED = 0
ADAPTED = ("the CoNLL source", "the CoNLL source pretrained on the task text",
           "the CoNLL source pretrained on the task text, 40 epochs")
SOURCE_EPOCHS = {ADAPTED[1]: PRETRAIN["epochs"], ADAPTED[2]: 40}
QUICK = {"sentences": 40, "epochs": 1}


def text_file(domain: str, variant: str, folder: Path, quick: bool) -> Path:
    """The pretraining text: the domain's train and dev sentences (test never), a line each,
    and for the second variant the raw domain text's first RAW_SENTENCES sentences after them."""
    out = folder / f"text-{domain}-{variant.replace(' ', '')}.txt"
    if out.is_file():
        return out
    data = crossner.domain(domain, quick)
    lines = [" ".join(s.tokens) for split in ("train", "dev") for s in data[split].sentences]
    if variant != VARIANTS[0]:
        from tagshift.rawtext import read_raw

        wanted = QUICK["sentences"] if quick else RAW_SENTENCES
        lines += [s.text for _, (_, s) in zip(range(wanted), read_raw(require_shared("raw", RAW[domain])))]
    lines = lines[: QUICK["sentences"]] if quick else lines
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def encoder_dir(domain: str, variant: str, folder: Path) -> Path:
    return folder / f"encoder-{domain}-{variant.replace(' ', '')}"


def source_dir(domain: str, variant: str, folder: Path) -> Path:
    epochs = SOURCE_EPOCHS[variant]
    return folder / f"source-{domain}-tasktext{'' if epochs == PRETRAIN['epochs'] else f'-{epochs}epochs'}"


def conll_source(quick: bool, folder: Path) -> Path:
    """The CoNLL source ADAPTED starts from (--quick: bench/crossner.py's tiny stand-in)."""
    return crossner.quick_source("transformer", SOURCE_SEED, folder)[1] if quick else crossner.source_path(
        "transformer", SOURCE_SEED)


def pretrain_one(domain: str, variant: str, quick: bool, folder: Path, device: str) -> dict:
    """An encoder of VARIANTS pretrained, or for ADAPTED the CoNLL source's (on the task text)."""
    from tagshift.jobs import run_pretrain
    from tagshift.training.mlm import MaskingConfig

    of_source = variant in ADAPTED
    options = {**(PRETRAIN_RAW if variant == VARIANTS[1] else PRETRAIN),
               **({"epochs": SOURCE_EPOCHS[variant]} if of_source else {}), **({"epochs": 1} if quick else {})}
    out = source_dir(domain, variant, folder) if of_source else encoder_dir(domain, variant, folder)
    text = text_file(domain, VARIANTS[0] if of_source else variant, folder, quick)
    result = run_pretrain(text, out, model=conll_source(quick, folder) if of_source else None, training=options,
                          masking=MaskingConfig(), resume=(out / "checkpoint").is_dir(),
                          progress=sys.stderr.isatty(), device=device)
    pieces = result.text["pieces"] * len(result.history)
    return {"kind": "pretrain", "domain": domain, "variant": variant, "epochs": len(result.history),
            "best_epoch": result.best_epoch, "held_out": result.held_out, "text": result.text,
            "seconds": result.seconds, "pieces_per_second": pieces / max(result.seconds, 1e-9),
            "lm_head_on": "masked pieces"}


def finetune_one(domain: str, variant: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    record = crossner.run_one("transformer", domain, "target only", seed, quick, folder, device,
                              model_options={"encoder": str(encoder_dir(domain, variant, folder))},
                              out=folder / f"finetune-{domain}-{variant.replace(' ', '')}-seed{seed}")
    return {**record, "kind": "finetune", "variant": variant}


def adapt_one(domain: str, variant: str, seed: int, quick: bool, folder: Path, device: str) -> dict:
    pretrained = variant in SOURCE_EPOCHS
    source = source_dir(domain, variant, folder) if pretrained else conll_source(quick, folder)
    record = crossner.run_one("transformer", domain, crossner.RECIPE_ROW, seed, quick, folder, device,
                              out=folder / f"adapt-{source.name if pretrained else f'{domain}-plain'}-seed{seed}",
                              source_model=source)
    return {**record, "kind": "adapt", "variant": variant, "source_seed": SOURCE_SEED}


def variants_of(domain: str, quick: bool = False) -> tuple[str, ...]:
    """--quick: the task text only (the raw text's variant runs the same code on more text)."""
    return VARIANTS if domain in RAW and not quick else VARIANTS[:1]


def score_rows(rows: list[tuple[str, list[dict]]], domains: tuple[str, ...], min_seeds: int) -> list[str]:
    """A table line per (name, runs) with some domain at `min_seeds` seeds; the average once all are."""
    lines = []
    for name, runs in rows:
        cells, averages = [], []
        for domain in domains:
            scores = [r["test_f1"] for r in runs if r["domain"] == domain]
            cells.append(mean_std(scores) if len(scores) >= min_seeds else "")
            averages.append(statistics.mean(scores) if len(scores) >= min_seeds else None)
        if not any(cells):
            continue
        average = f"{100 * statistics.mean(averages):.2f}" if all(a is not None for a in averages) else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {average} |")
    return lines


def table(results: list[dict], domains: tuple[str, ...], min_seeds: int) -> str:
    base = [r for r in load_records("crossner", "transformer-*-targetonly-seed*.json")]
    lines = ["CrossNER test, entity F1 (conlleval mode), mean ± std over seeds: the transformer trained on the "
             "target only (bench/crossner.py's row), and the same after masked-LM pretraining of its encoder.", "",
             "| encoder | " + " | ".join(domains) + " | average |", "|---|" + "---|" * (len(domains) + 1)]
    rows = [("the default encoder (bench/crossner.py)", base)]
    rows += [(f"pretrained on the {variant}", [r for r in results if r["kind"] == "finetune" and r["variant"] == variant])
             for variant in VARIANTS]
    lines += score_rows(rows, domains, min_seeds)
    recipe = [r for r in load_records("crossner", "transformer-*-seed*.json") if r["strategy"] == crossner.RECIPE_ROW]
    adapted = [("bench/crossner.py's recipe row (sources of seeds 0-2)", recipe)]
    adapted += [(variant, [r for r in results if r["kind"] == "adapt" and r["variant"] == variant]) for variant in ADAPTED]
    if any(r["kind"] == "adapt" for r in results):
        lines += ["", "The same test, from a CoNLL source adapted by adapt's recipe for a new domain (bench/crossner.py's "
                  f"recipe row): that row, then its seed-{SOURCE_SEED} source alone, as it is and with its encoder "
                  "pretrained on the task text first (its head kept), adapted with seeds 0-2:", "",
                  "| source | " + " | ".join(domains) + " | average |", "|---|" + "---|" * (len(domains) + 1)]
        lines += score_rows(adapted, domains, min_seeds)
    cost = [r for r in results if r["kind"] == "pretrain"]
    if cost:
        lines += ["", "| pretraining | text sentences | word pieces | epochs (best) | minutes | pieces/s | LM head on |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(cost, key=lambda r: (r["domain"], r["variant"])):
            sentences = r["text"].get("examples", 0) + r["text"].get("held_out_examples", 0)
            # runs recorded before commit "pretrain: the LM head reads the masked pieces only" ran it on every piece
            lines.append(f"| {r['domain']}, {r['variant']} | {sentences} | {r['text'].get('pieces', 0)} | "
                         f"{r['epochs']} ({r['best_epoch']}) | {r['seconds'] / 60:.1f} | {r['pieces_per_second']:,.0f} | "
                         f"{r.get('lm_head_on', 'every piece')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", nargs="+", default=list(crossner.DOMAINS), choices=crossner.DOMAINS)
    add_run_options(parser, parallel=True)
    parser.add_argument("--one", nargs=3, metavar=("DOMAIN", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0] if args.seeds == [0, 1, 2] else args.seeds
        args.domains = ["politics"] if args.domains == list(crossner.DOMAINS) else args.domains
    name = "pretrain-quick" if args.quick else "pretrain"
    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True)

    def filename(domain: str, variant: str, seed: str) -> str:
        return f"{domain}-{re.sub(r'[^A-Za-z0-9+]', '', variant)}-{'pretrain' if seed == 'pretrain' else f'seed{seed}'}"

    if args.one:
        configure_run(args.threads)
        domain, variant, seed = args.one
        record = (pretrain_one(domain, variant, args.quick, folder, args.device) if seed == "pretrain"
                  else adapt_one(domain, variant, int(seed), args.quick, folder, args.device) if variant in ADAPTED
                  else finetune_one(domain, variant, int(seed), args.quick, folder, args.device))
        save_record(name, filename(domain, variant, seed), stamp(record, args.device))
        return

    require_shared("crossner", "politics", "train.txt")

    def missing(runs: list[list[str]]) -> list[list[str]]:
        return [r for r in runs if not (records(name) / f"{filename(*r)}.json").is_file()]

    # the encoders first (a run each, so two can pretrain at once), then the fine-tuning on them;
    # an encoder whose record is kept but whose folder is gone (a fresh clone) is made again
    # when a fine-tuning on it is still to run
    pairs = [(d, v) for d in args.domains for v in variants_of(d, args.quick)]
    finetunes = missing([[d, v, str(s)] for s in args.seeds for d, v in pairs])
    wanted = {(d, v) for d, v, _ in finetunes}
    encoders = [[d, v, "pretrain"] for d, v in pairs]
    gone = [r for r in encoders
            if (r[0], r[1]) in wanted and not (encoder_dir(r[0], r[1], folder) / "config.json").is_file()]
    # the source pretrained (a run a domain), then the recipe from it and from the source as it is
    adapts = missing([[d, v, str(s)] for s in args.seeds for d in args.domains for v in ADAPTED])
    sources = [[d, v, "pretrain"] for v in SOURCE_EPOCHS for d in args.domains]
    gone += [r for r in sources if r[:2] in [a[:2] for a in adapts]
             and not (source_dir(r[0], r[1], folder) / "config.json").is_file()]
    unrecorded = missing(encoders + sources)
    run_children(__file__, [r for r in encoders + sources if r in unrecorded or r in gone], args)
    run_children(__file__, finetunes + adapts, args)
    body = table(load_records(name, "*.json"), tuple(args.domains), 1 if args.quick else 3)
    publish("pretrain", body, load_records(name, "*.json"), args.quick)
    print(body)


if __name__ == "__main__":
    main()
