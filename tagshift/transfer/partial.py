"""Partial labels: in data that annotates only some types, an O is not evidence of O.

A word the target data tags O may belong to a type the data never annotates. `--partial`
turns each such O into the set {O} + every tag of the unannotated types: the CRF then sums
over all paths through those sets, the softmax head maximises their total probability,
instead of teaching O.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tagshift.schemes import split_tag


def partial_targets(tag_sequences: list[list[str]], labels: list[str], unannotated: list[str]) -> list[Tensor]:
    """Per sentence, a (words, labels) bool tensor of the tags each word may have.

    >>> partial_targets([["B-PER", "O"]], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], ["LOC"])[0].int().tolist()
    [[0, 1, 0, 0, 0], [1, 0, 0, 1, 1]]
    """
    index = {label: i for i, label in enumerate(labels)}
    open_set = torch.tensor([label == "O" or split_tag(label)[1] in unannotated for label in labels])
    targets = []
    for tags in tag_sequences:
        allowed = torch.zeros(len(tags), len(labels), dtype=torch.bool)
        for w, tag in enumerate(tags):
            if tag == "O":
                allowed[w] = open_set
            else:
                allowed[w, index[tag]] = True
        targets.append(allowed)
    return targets
