"""The forgetting report: an adapted model beside its source on one test set, type by type,
old types (the source's, under the adapted model's names) and new ones."""

from __future__ import annotations

from tagshift.corpus import Corpus
from tagshift.evaluate import evaluate_corpora
from tagshift.labelmap import LabelMap, map_spans
from tagshift.metrics import Comparison, compare
from tagshift.schemes import SCHEMES, chunks, encode
from tagshift.taggers.tagger import Tagger
from tagshift.transfer.adapt import weights_sha256


def names_in(system: Tagger, baseline: Tagger) -> dict[str, str]:
    """Baseline type -> the system's name for it: the renames and merges of the adapt step
    that made `system` from `baseline` (found in its lineage by the baseline's weights), else
    every type under its own name."""
    digest = weights_sha256(baseline)
    for step in reversed(system.lineage):
        if step.get("step") == "adapt" and step.get("source_weights_sha256") == digest:
            target_of = (step.get("plan") or {}).get("target_of") or {}
            return {t: target_of.get(t, t) for t in baseline.types}
    return {t: t for t in baseline.types}


def renamed(corpus: Corpus, names: dict[str, str]) -> Corpus:
    """Predictions with their types renamed (two source types merged into one stay two entities)."""
    label_map = LabelMap(rename={old: new for old, new in names.items() if old != new})
    return corpus.with_sentences([
        s.with_tags(encode(map_spans(chunks(s.tags), label_map), len(s), SCHEMES["iob2"])) for s in corpus.sentences
    ])


def compare_models(
    system: Tagger, baseline: Tagger, test: Corpus, mode: str = "conlleval", scheme: str | None = None,
    batch_size: int = 32,
) -> Comparison:
    """Both models on `test`; the baseline's predictions under the system's type names, and
    the groups `old` (the baseline's types) and `new` (the system's others)."""
    names = names_in(system, baseline)
    system_scores = evaluate_corpora(test, system.predict_corpus(test, batch_size), mode, scheme)
    baseline_scores = evaluate_corpora(test, renamed(baseline.predict_corpus(test, batch_size), names), mode, scheme)
    old = sorted(set(names.values()))
    new = sorted((set(system.types) | set(system_scores.per_type)) - set(old))
    return compare(system_scores, baseline_scores, {"old": old, "new": new})
