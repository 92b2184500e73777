"""Head surgery: give a trained tagger the labels of a plan, row by row.

The output layer holds one row per label and the CRF one row and one column per label, so
every label the plan keeps (under its own name or another) takes its source row bit for
bit, a label merged from several takes their mean, a dropped label's row goes, and a new
label's row is initialised:

- `quiet`: a copy of the O row with its bias lowered by `QUIET_MARGIN`, and O's CRF
  scores. On any input, a path through a new tag then scores less than the same path with
  O in its place, so the adapted model, untrained, predicts exactly what the source did.
- `related`: as `quiet`, but a copy of the row of the source type the new type is related
  to (its `related` tag of the same prefix: where the source's predictions found the new
  type's entities, `related_types`), lowered by the same margin, with that tag's CRF
  scores. The source tag keeps its row one-to-one under its own or a new name, so a path
  through a new tag still scores less than the same path through the source's, and the
  untrained model predicts exactly what the source did; but the new type starts where the
  source sees its entities (science's `person` below PER's row, mapped to `scientist`)
  rather than below O, where it has to learn entity-ness from nothing. A new type with no
  related source type starts from O.
- `normal`: drawn from N(mean, std) of the existing rows (weights, biases and CRF scores
  separately), as in the transfer paper. Untrained, it changes some predictions.
- `fresh` (the `replace` operation): the head's own initialisation, nothing copied.

The new head may be of another kind than the source's (`--head`). A softmax head becomes a
CRF head whose transition, start and end scores start at zero: the CRF's Viterbi over the
raw scores then finds the same path as the softmax head's over their log-softmax (which
only subtracts a constant per word), under the same scheme constraints, so nothing the
source predicted changes. A CRF head becoming a softmax head loses its transition scores.

The `map` operation keeps the source's output layer whole and applies the same rules to a
mapping layer from its label scores to the new labels (see `MappingHead`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from tagshift.errors import TagshiftError
from tagshift.schemes import split_tag
from tagshift.taggers.heads import CRFHead, Head, MappingHead, head_kind, make_head
from tagshift.taggers.tagger import Network, Tagger
from tagshift.transfer.plan import LabelPlan

QUIET_MARGIN = 2.0  # how far below O a new tag starts: e^-2 of O's probability
INITS = ("quiet", "related", "normal")


@dataclass
class SurgeryReport:
    """What the surgery kept, copied under another name, combined, added and dropped."""

    init: str
    copied: list[str] = field(default_factory=list)  # label kept its own source row
    renamed: dict[str, str] = field(default_factory=dict)  # label -> the source label whose row it took
    combined: dict[str, list[str]] = field(default_factory=dict)  # label -> source labels averaged
    added: list[str] = field(default_factory=list)  # rows initialised
    related: dict[str, str] = field(default_factory=dict)  # added label -> the source label it started below
    dropped: list[str] = field(default_factory=list)  # source labels with no row any more

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"head surgery: {len(self.copied)} rows copied bit for bit, {len(self.added)} added ({self.init})"]
        if self.renamed:
            lines.append("  copied under a new name: " + ", ".join(f"{a} <- {b}" for a, b in self.renamed.items()))
        if self.combined:
            lines.append("  averaged: " + ", ".join(f"{a} <- {'+'.join(b)}" for a, b in self.combined.items()))
        if self.related:
            lines.append("  started below a related source tag: " + ", ".join(f"{a} <- {b}" for a, b in self.related.items()))
        if self.dropped:
            lines.append(f"  dropped: {', '.join(self.dropped)}")
        return "\n".join(lines)


def _normal_like(values: Tensor, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Draws from N(mean, std) of `values`."""
    mean, std = float(values.mean()), float(values.std()) if values.numel() > 1 else 0.0
    return torch.randn(shape, generator=generator, dtype=values.dtype) * std + mean


def rebuild_head(
    head: Head,
    source_labels: list[str],
    labels: list[str],
    scheme: str,
    origin: dict[str, list[str]],
    init: str,
    generator: torch.Generator,
    mapping: bool = False,
    kind: str | None = None,
    related: dict[str, str] | None = None,
) -> tuple[Head | MappingHead, SurgeryReport]:
    """A head for `labels`, of `kind` (crf or softmax; None: the source head's kind);
    `origin` names the source labels each row comes from (see the module docstring for the
    rest). `related` (init `related`; empty otherwise): a new label -> the source label it
    starts below.

    With `mapping`, the source's output layer stays as it is and the rows are those of a
    mapping from its label scores to the new labels': the same rules applied to the
    identity (a kept label's row picks its source label's score; a merged label's averages
    its sources'), in a `MappingHead`.
    """
    if init not in (*INITS, "fresh"):
        raise TagshiftError(f"--init {init}: choose one of {', '.join(INITS)}")
    index = {label: i for i, label in enumerate(source_labels)}
    missing = sorted({s for rows in origin.values() for s in rows} - set(index))
    if missing:
        raise TagshiftError(f"the plan copies rows of {', '.join(missing)}, which the source head does not have")
    kind = kind or head_kind(head)
    new = make_head(kind, head.linear.in_features, labels, scheme, head.dropout.p)
    old_weight, old_bias = head.linear.weight.detach(), head.linear.bias.detach()
    layer = new.linear
    if mapping:
        old_weight, old_bias = torch.eye(len(source_labels)), torch.zeros(len(source_labels))
        new = MappingHead(new, source_labels)
        with torch.no_grad():
            new.source.weight.copy_(head.linear.weight)
            new.source.bias.copy_(head.linear.bias)
        layer = new.mapping
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    report = SurgeryReport(init)
    stand_in: dict[int, list[int]] = {}  # new label -> source labels whose CRF scores it takes
    for j, label in enumerate(labels):
        rows = [index[s] for s in origin.get(label, [])]
        if rows:
            weight[j], bias[j] = old_weight[rows].mean(dim=0), old_bias[rows].mean()
            stand_in[j] = rows
            if len(rows) > 1:
                report.combined[label] = origin[label]
            elif origin[label][0] != label:
                report.renamed[label] = origin[label][0]
            else:
                report.copied.append(label)
            continue
        report.added.append(label)
        if init in ("quiet", "related"):
            below = (related or {}).get(label, "O")
            if below != "O":
                report.related[label] = below
            o = index[below]
            weight[j], bias[j] = old_weight[o], old_bias[o] - QUIET_MARGIN
            stand_in[j] = [o]
        elif init == "normal":
            weight[j] = _normal_like(old_weight, tuple(weight[j].shape), generator)
            bias[j] = _normal_like(old_bias, (), generator)
    kept = {s for rows in origin.values() for s in rows}
    report.dropped = [label for label in source_labels if label not in kept]
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    inner = new.inner if isinstance(new, MappingHead) else new
    if isinstance(head, CRFHead) and isinstance(inner, CRFHead) and init != "fresh":
        _rebuild_crf(head, inner, stand_in, generator)
    return new, report


def _rebuild_crf(old: CRFHead, new: CRFHead, stand_in: dict[int, list[int]], generator: torch.Generator) -> None:
    """Each new CRF entry is the mean of its stand-ins' entries (one stand-in: a bit-identical
    copy); entries of labels without stand-ins are drawn from the old allowed entries'
    statistics."""
    old_crf, new_crf = old.crf, new.crf
    transitions, allowed = old_crf.transitions.detach(), old_crf.allowed_transitions
    n = new_crf.num_tags

    def taken(values: Tensor, allowed_there: Tensor, everything_allowed: Tensor, allowed_now: bool) -> Tensor:
        """The mean of the stand-ins' entries that the old scheme allowed (forbidden ones were
        never trained). When the new scheme allows a step the old one forbade everywhere,
        the mean of all the old allowed entries; a step forbidden in both is copied as is."""
        if allowed_there.any():
            return values[allowed_there].mean()
        return everything_allowed.mean() if allowed_now else values.mean()

    with torch.no_grad():
        for vector, old_vector, old_allowed, new_allowed in (
            (new_crf.start, old_crf.start.detach(), old_crf.allowed_start, new_crf.allowed_start),
            (new_crf.end, old_crf.end.detach(), old_crf.allowed_end, new_crf.allowed_end),
        ):
            for j in range(n):
                if j in stand_in:
                    vector[j] = taken(
                        old_vector[stand_in[j]], old_allowed[stand_in[j]], old_vector[old_allowed], bool(new_allowed[j])
                    )
                else:
                    vector[j] = _normal_like(old_vector[old_allowed], (), generator)
        for i in range(n):
            for j in range(n):
                if i in stand_in and j in stand_in:
                    rows, columns = stand_in[i], stand_in[j]
                    new_crf.transitions[i, j] = taken(
                        transitions[rows][:, columns], allowed[rows][:, columns], transitions[allowed],
                        bool(new_crf.allowed_transitions[i, j]),
                    )
                else:
                    new_crf.transitions[i, j] = _normal_like(transitions[allowed], (), generator)


def adapt_head(
    source: Tagger, plan: LabelPlan, init: str = "quiet", seed: int = 0, kind: str | None = None,
    related: dict[str, str] | None = None,
) -> tuple[Tagger, SurgeryReport]:
    """A new tagger with `plan`'s labels: a copy of the source's encoder and a rebuilt head
    of `kind` (None: the source's). The source is left untouched (it may still teach or
    pseudo-label). `related` (init `related`): new type -> the source type it starts below
    (`related_types`)."""
    generator = torch.Generator().manual_seed(seed)
    network = copy.deepcopy(source.network).cpu()  # surgery on the CPU, then back to the source's device
    if isinstance(network.head, MappingHead):  # a checkpoint of an adapt --labels map run
        network.head = network.head.fold()
    with torch.random.fork_rng():  # a fresh head's own initialisation, without touching the caller's RNG
        torch.manual_seed(seed)
        head, report = rebuild_head(
            network.head, source.labels, plan.labels, plan.scheme, plan.origin,
            "fresh" if plan.operation == "replace" else init, generator, mapping=plan.operation == "map", kind=kind,
            related=related_tags(plan, related or {}),
        )
    config = dataclasses.replace(source.config, head=head_kind(head).value)
    tagger = Tagger(source.backend, config, plan.labels, plan.scheme, Network(network.encoder, head),
                    copy.deepcopy(source.lineage), source.guide)  # (a stacked source keeps its guide)
    tagger.network.eval()  # as a loaded model is: training switches it to train mode itself
    return tagger.to(source.device), report


def related_tags(plan: LabelPlan, related: dict[str, str]) -> dict[str, str]:
    """Each new type's tags -> its related source type's tags of the same prefix, where every
    one of those source tags keeps its row one-to-one (kept or renamed: not merged, not
    dropped; else the new type starts from O)."""
    one_to_one = {rows[0] for rows in plan.origin.values() if len(rows) == 1}
    tags: dict[str, str] = {}
    for new_type, source_type in related.items():
        if new_type not in plan.new:
            continue
        own = {label: f"{prefix}-{source_type}" if prefix else source_type for label in plan.labels
               for prefix, entity_type in [split_tag(label)] if label != "O" and entity_type == new_type}
        if all(tag in one_to_one for tag in own.values()):
            tags.update(own)
    return tags


def keep_old_rows(tagger: Tagger, plan: LabelPlan) -> None:
    """Keep the head's scores of the labels that come from the source as they are while the
    adapted model trains (`--keep-old-head`): gradient hooks zero their output-layer rows
    and, with a CRF, their start and end scores and the transitions between them. Only the
    new types' rows (and their transitions to and from the old labels) learn; the encoder
    still does, at its rate. This is the continual-NER papers' fixed old classifier (CFNER's
    `is_fix_trained_classifier`, O's row included): a type that the new data never shows
    cannot be unlearnt through its own row. (An optimiser's weight decay, AdamW's 0.01 for a
    transformer, still shrinks them a little: decay does not go through the gradient.)"""
    if plan.operation != "extend":
        raise TagshiftError(f"--keep-old-head keeps the source's rows of an extended head; --labels {plan.operation} "
                            "builds another head: drop one of them")
    head = tagger.head  # (a plain head: only `map` builds a mapping head)
    old_types = set(plan.old_types)
    old = torch.tensor([label == "O" or split_tag(label)[1] in old_types for label in plan.labels])

    def frozen(parameter: torch.nn.Parameter, mask: Tensor) -> None:
        parameter.register_hook(lambda grad: grad.masked_fill(mask.to(grad.device), 0.0))

    frozen(head.linear.weight, old.unsqueeze(1))
    frozen(head.linear.bias, old)
    if isinstance(head, CRFHead):
        frozen(head.crf.transitions, old.unsqueeze(1) & old.unsqueeze(0))
        frozen(head.crf.start, old)
        frozen(head.crf.end, old)
