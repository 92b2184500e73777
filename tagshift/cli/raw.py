"""From raw text: `tagshift terms` (a terminology list grown from seeds with word vectors),
`tagshift patterns` (the list as spaCy EntityRuler patterns), `tagshift weak-label` (raw text
pre-labelled by patterns and a model, as a silver corpus) and `tagshift vectors` (word
vectors trained on the text, merged with pretrained ones, for the BiLSTM-CRF)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tagshift.atomic import check_writable, open_atomic, write_text_atomic
from tagshift.cli.options import PROGRESS, app, command_line, user_errors
from tagshift.lock import output_lock
from tagshift.progress import progress_bar

RAW_HELP = ("Raw text: a .txt file (a document a line, or paragraphs between blank lines), .jsonl with "
            "{\"text\": ...} a line, a PDF (its text layer), or a directory of them.")


class CaseOption(str, Enum):
    variants = "variants"
    lower = "lower"
    exact = "exact"


@app.command()
def terms(
    seeds: list[str] = typer.Argument(..., help="Seed terms of the type (quote a multi-word one)."),
    vectors: str = typer.Option(..., "--vectors", help="glove (GloVe 6B, the 'glove' extra), a GloVe/word2vec text file, spacy:PACKAGE with vectors, or hf:NAME (a transformer's input embeddings)."),
    out: Path = typer.Option(..., "--out", help="The terms file to write: a term a line with its score and corpus count; edit it, then give it to 'tagshift patterns'."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help=f"Words and phrases of this text are candidates too. {RAW_HELP}"),
    n: int = typer.Option(200, "-n", "--n", min=1, help="How many candidates."),
    max_words: int = typer.Option(100_000, "--max-words", min=1, help="The vectors' most frequent words ranked (rarer ones are mostly noise)."),
    interactive: bool = typer.Option(False, "--interactive", help="Ask keep/reject/quit for each candidate in the terminal; only kept ones are written."),
    progress: bool = PROGRESS,
) -> None:
    """Grow a terminology list from a few seed terms with word vectors.

    Example: tagshift terms cancer diabetes "breast cancer" --vectors glove --corpus abstracts.txt --out disease.terms
    """
    from tagshift.rawtext import RawReport, read_raw
    from tagshift.taggers.vectors import load_vectors
    from tagshift.terms import phrases, rank_terms, review

    with user_errors():
        check_writable(out)
        with output_lock(out, command_line()):
            table = load_vectors(vectors)
            counts, report = None, RawReport()
            if corpus is not None:
                sentences = progress_bar(read_raw(corpus, report), "reading", enabled=progress, unit="sentence")
                counts = phrases(s.tokens for _, s in sentences)
                typer.echo(report.render(), err=True)
            found = rank_terms(seeds, table, n, counts, str(corpus) if corpus else None, max_words)
            if found.missing:
                typer.echo(f"warning: no vector for the seeds {', '.join(found.missing)} (kept in the list, "
                           "not used to rank)", err=True)
            for seed, words in found.partly_missing.items():
                typer.echo(f"warning: no vector for {', '.join(words)} in the seed {seed!r}: ranked by its other words",
                           err=True)
            if interactive:
                found = review(found, _ask)
            write_text_atomic(out, found.text())
        typer.echo(f"wrote {out}: {len(found.seeds)} seeds and {len(found.terms)} candidates"
                   + (f" ({found.phrases} phrases from the corpus ranked)" if corpus else "")
                   + "; delete the lines you reject, then: tagshift patterns "
                   f"{out} --label TYPE --out patterns.jsonl", err=True)


def _ask(term, number: int, total: int) -> str:
    seen = f", {term.count} times in the corpus" if term.count else ""
    while True:
        answer = typer.prompt(f"[{number}/{total}] {term.text} (similarity {term.score:.2f}{seen}) keep? y/n, q to stop",
                              err=True).strip().lower()[:1]
        if answer in ("y", "n", "q"):
            return answer
        typer.echo("answer y (keep), n (reject) or q (stop here)", err=True)


@app.command()
def patterns(
    terms_file: Path = typer.Argument(..., help="A terms file ('tagshift terms' writes one): a term a line, first column; # comments."),
    label: str = typer.Option(..., "--label", help="The entity type the terms are."),
    out: Path = typer.Option(..., "--out", help="Patterns to write, in spaCy's EntityRuler JSONL format."),
    case: CaseOption = typer.Option(CaseOption.variants, "--case", help="variants: a token pattern per casing (as written, lower, Title, UPPER); lower: one LOWER pattern a term (any casing); exact: as written."),
) -> None:
    """Turn a terms list into token patterns (spaCy EntityRuler JSONL; they load in spaCy too).

    Example: tagshift patterns disease.terms --label Disease --out disease.patterns.jsonl
    """
    from tagshift.patterns import term_patterns
    from tagshift.terms import read_terms

    with user_errors():
        check_writable(out)
        listed = read_terms(terms_file)
        records = term_patterns(listed, label, case.value)
        with output_lock(out, command_line()):
            write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        typer.echo(f"wrote {out}: {len(records)} patterns for {len(listed)} terms, label {label}", err=True)


@app.command("weak-label")
def weak_label_command(
    raw: Path = typer.Argument(..., help=RAW_HELP),
    patterns_files: list[Path] = typer.Option(..., "--patterns", help="EntityRuler JSONL patterns ('tagshift patterns' writes them); repeat for several files."),
    out: Path = typer.Option(..., "--out", help="The silver corpus to write: JSONL of text and spans (train and adapt read it)."),
    model: Optional[str] = typer.Option(None, "--model", help="A source model (bundle, HF token classifier, spacy:PACKAGE) whose entities of the other types join the patterns'."),
    uncertain_below: Optional[float] = typer.Option(None, "--uncertain-below", min=0.0, max=1.0, help="Mark the model's entities less confident than this (or without a confidence) uncertain: trained as partial labels."),
    uncertain_patterns: bool = typer.Option(False, "--uncertain-patterns", help="Mark every pattern match uncertain (trained as partial labels: the type or O)."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the counts (per pattern, per type, conflicts) as JSON here."),
    progress: bool = PROGRESS,
) -> None:
    """Pre-label raw text with patterns (and a model's other types): a silver corpus.

    Example: tagshift weak-label abstracts.txt --patterns disease.patterns.jsonl --model models/news --out silver.jsonl
    """
    from tagshift.bundle import load_source
    from tagshift.patterns import Matcher, read_patterns
    from tagshift.weak import WeakReport, weak_label

    with user_errors():
        check_writable(out)
        if report_file is not None:
            check_writable(report_file)
        matcher = Matcher([p for path in patterns_files for p in read_patterns(path)])
        source = load_source(model) if model is not None else None
        report = WeakReport()
        with output_lock(out, command_line()), open_atomic(out) as handle:
            records = weak_label(raw, matcher, source, report, uncertain_below, uncertain_patterns)
            for record in progress_bar(records, "labelling", enabled=progress, unit="sentence"):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            if report_file is not None:  # (before the silver file is renamed in: a report that fails keeps it out)
                write_text_atomic(report_file, json.dumps(report.to_json(), indent=2) + "\n")
        typer.echo(report.render(), err=True)
        typer.echo(f"wrote {out}: {report.sentences} sentences, {report.labelled} with entities", err=True)
        if not report.labelled:
            typer.echo("warning: no entity at all: no pattern matched and the model found nothing (check the "
                       "patterns' --case, or the terms)", err=True)


@app.command()
def vectors(
    text: Path = typer.Option(..., "--text", help=RAW_HELP),
    out: Path = typer.Option(..., "--out", help="The word2vec text file to write (--vectors FILE reads it)."),
    base: Optional[str] = typer.Option(None, "--base", help="Pretrained vectors to merge with (glove, a text file, spacy:PACKAGE, hf:NAME): the domain vectors are mapped into their space."),
    dim: int = typer.Option(100, "--dim", min=2, help="Dimensions of the vectors trained on the text."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Passes over the text."),
    min_count: int = typer.Option(3, "--min-count", min=1, help="A word must occur this often to get a vector."),
    window: int = typer.Option(5, "--window", min=1, help="Words of context on each side."),
    base_words: int = typer.Option(50_000, "--base-words", min=0, help="With --base: its most frequent words written beside the domain's."),
    seed: int = typer.Option(0, "--seed", help="The same seed gives the same vectors."),
) -> None:
    """Train word vectors on raw domain text (word2vec, gensim), merged with pretrained ones.

    Example: tagshift vectors --text abstracts/ --base glove --out med.vectors.txt; then
    tagshift train --backend bilstm-crf --vectors med.vectors.txt ...
    """
    from tagshift.domain_vectors import merge, train_domain_vectors, write_vectors
    from tagshift.taggers.vectors import load_vectors

    with user_errors():
        check_writable(out)
        with output_lock(out, command_line()):
            pretrained = load_vectors(base) if base is not None else None
            domain = train_domain_vectors(text, dim, epochs, min_count, window, seed)
            typer.echo(domain.report.render(), err=True)
            if pretrained is not None:
                domain = merge(domain, pretrained)
            with open_atomic(out) as handle:
                written = write_vectors(handle, domain, pretrained, base_words)
        typer.echo(domain.render(), err=True)
        typer.echo(f"wrote {out}: {written} words; use it with --vectors {out}", err=True)
