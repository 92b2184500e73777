"""Partial labels: in data that annotates only some types, an O is not evidence of O; in
silver data, a span marked uncertain is not evidence of its type.

A word the target data tags O may belong to a type the data never annotates. `--partial`
turns each such O into the set {O} + every tag of the unannotated types: the CRF then sums
over all paths through those sets, the softmax head maximises their total probability,
instead of teaching O.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tagshift.schemes import split_tag


def partial_targets(tag_sequences: list[list[str]], labels: list[str], unannotated: list[str],
                    uncertain: list[list[bool] | None] | None = None) -> list[Tensor]:
    """Per sentence, a (words, labels) bool tensor of the tags each word may have. A word in
    a span marked uncertain (`uncertain`, per sentence per word; silver data) may have its tag
    or O: the model is not taught the span, only not taught against it.

    >>> partial_targets([["B-PER", "O"]], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], ["LOC"])[0].int().tolist()
    [[0, 1, 0, 0, 0], [1, 0, 0, 1, 1]]
    >>> partial_targets([["B-PER", "O"]], ["O", "B-PER", "I-PER"], [], [[True, False]])[0].int().tolist()
    [[1, 1, 0], [1, 0, 0]]
    """
    index = {label: i for i, label in enumerate(labels)}
    open_set = torch.tensor([label == "O" or split_tag(label)[1] in unannotated for label in labels])
    targets = []
    for number, tags in enumerate(tag_sequences):
        flags = uncertain[number] if uncertain is not None else None
        allowed = torch.zeros(len(tags), len(labels), dtype=torch.bool)
        for w, tag in enumerate(tags):
            if tag == "O":
                allowed[w] = open_set
            else:
                allowed[w, index[tag]] = True
                if flags is not None and flags[w]:
                    allowed[w, index["O"]] = True
        targets.append(allowed)
    return targets


def uncertain_flags(sentences: list) -> list[list[bool] | None] | None:
    """Each sentence's uncertain-word flags, or None when no sentence has any."""
    flags = [s.uncertain if s.uncertain and any(s.uncertain) else None for s in sentences]
    return flags if any(f is not None for f in flags) else None
