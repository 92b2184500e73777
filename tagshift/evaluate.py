"""Scoring one corpus against another, aligned sentence by sentence."""

from __future__ import annotations

from tagshift.corpus import Corpus
from tagshift.errors import AlignmentError, SchemeError
from tagshift.metrics import Scores, score_tags
from tagshift.schemes import detect_scheme


def check_aligned(gold: Corpus, pred: Corpus) -> None:
    """Raise unless both corpora hold the same sentences with the same tokens, in order.

    The error names the first sentence where they part: a missing blank line shows up there
    as a length mismatch, not only as a different sentence count.
    """
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
    if len(gold) != len(pred):
        longer, shorter = (gold, pred) if len(gold) > len(pred) else (pred, gold)
        raise AlignmentError(
            f"{longer.location(len(shorter))}: sentence {len(shorter) + 1} has no counterpart in {shorter.path} "
            f"({len(gold)} gold sentences, {len(pred)} predicted); predictions must hold the gold sentences, in order"
        )


def evaluate_corpora(gold: Corpus, pred: Corpus, mode: str = "conlleval", scheme: str | None = None) -> Scores:
    """Entity-level scores of `pred` against `gold`.

    Strict mode reads each corpus in its own scheme, detected unless `scheme` is given (then
    both are read in it): IOB2 predictions against IOB1 gold are not all invalid.
    A prediction without entities is read in gold's scheme.
    """
    check_aligned(gold, pred)
    pred_scheme = scheme
    if mode == "strict" and scheme is None:
        scheme = detect_scheme(gold.tag_sequences).scheme
        guess = detect_scheme(pred.tag_sequences)
        pred_scheme = guess.scheme if guess.entities else scheme
    try:
        return score_tags(gold.tag_sequences, pred.tag_sequences, mode, scheme, pred_scheme)
    except SchemeError as err:
        raise SchemeError(f"{pred.path}: {err}") from None
