"""Scoring one corpus against another, aligned sentence by sentence."""

from __future__ import annotations

from tagshift.corpus import Corpus
from tagshift.errors import AlignmentError, SchemeError
from tagshift.metrics import Scores, score_tags
from tagshift.schemes import detect_scheme


def check_aligned(gold: Corpus, pred: Corpus) -> None:
    """Raise unless both corpora hold the same sentences with the same tokens, in order."""
    if len(gold) != len(pred):
        raise AlignmentError(
            f"{gold.path} has {len(gold)} sentences but {pred.path} has {len(pred)}; "
            "predictions must hold the gold sentences, in order"
        )
    for index, (g, p) in enumerate(zip(gold.sentences, pred.sentences)):
        if g.tokens == p.tokens:
            continue
        if len(g) != len(p):
            detail = f"{len(g)} tokens in gold, {len(p)} in the prediction"
        else:
            k = next(i for i, (a, b) in enumerate(zip(g.tokens, p.tokens)) if a != b)
            detail = f"token {k + 1} is {g.tokens[k]!r} in gold but {p.tokens[k]!r} in the prediction"
        raise AlignmentError(
            f"{pred.location(index)}: sentence {index + 1} does not match {gold.location(index)}: {detail}"
        )


def evaluate_corpora(gold: Corpus, pred: Corpus, mode: str = "conlleval", scheme: str | None = None) -> Scores:
    """Entity-level scores of `pred` against `gold`. Strict mode reads both in gold's scheme
    (detected unless given)."""
    check_aligned(gold, pred)
    if mode == "strict" and scheme is None:
        scheme = detect_scheme(gold.tag_sequences).scheme
    try:
        return score_tags(gold.tag_sequences, pred.tag_sequences, mode, scheme)
    except SchemeError as err:
        raise SchemeError(f"{pred.path}: {err}") from None
