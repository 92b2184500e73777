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


def names_in(system: Tagger, baseline: Tagger) -> dict[str, str | None]:
    """Baseline type -> the system's name for it (None: dropped), following the renames,
    merges and drops of every adapt step from the one that started from `baseline` (found
    in the system's lineage by the baseline's weights) to the last; without such a step,
    every type keeps its name."""
    digest = weights_sha256(baseline)
    steps = system.lineage
    start = next((i for i, step in enumerate(steps)
                  if step.get("step") == "adapt" and step.get("source_weights_sha256") == digest), None)
    names: dict[str, str | None] = {t: t for t in baseline.types}
    if start is None:
        return names
    for step in steps[start:]:
        if step.get("step") != "adapt":
            continue
        target_of = (step.get("plan") or {}).get("target_of") or {}
        names = {old: target_of.get(name) if name is not None else None for old, name in names.items()}
    return names


def renamed(corpus: Corpus, names: dict[str, str | None], scheme: str) -> Corpus:
    """Predictions with their types renamed and dropped types removed, re-encoded in
    `scheme` (two source types merged into one stay two entities)."""
    label_map = LabelMap(
        rename={old: new for old, new in names.items() if new is not None and old != new},
        drop=tuple(old for old, new in names.items() if new is None),
    )
    if not label_map.rename and not label_map.drop:
        return corpus
    return corpus.with_sentences([
        s.with_tags(encode(map_spans(chunks(s.tags), label_map), len(s), SCHEMES[scheme])) for s in corpus.sentences
    ])


def compare_models(
    system: Tagger, baseline: Tagger, test: Corpus, mode: str = "conlleval", scheme: str | None = None,
    batch_size: int = 32,
) -> Comparison:
    """Both models on `test`; the baseline's predictions under the system's type names, and
    the groups `old` (the baseline's types) and `new` (the system's others)."""
    names = names_in(system, baseline)
    system_scores = evaluate_corpora(test, system.predict_corpus(test, batch_size), mode, scheme)
    predicted = renamed(baseline.predict_corpus(test, batch_size), names, baseline.scheme)
    baseline_scores = evaluate_corpora(test, predicted, mode, scheme)
    old = sorted({name for name in names.values() if name is not None})
    new = sorted((set(system.types) | set(system_scores.per_type)) - set(old))
    return compare(system_scores, baseline_scores, {"old": old, "new": new})
