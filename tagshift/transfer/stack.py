"""`adapt --labels stack`: a new model for the target's types, built as training on the target
alone builds it (the source's family and model options, a vocabulary from the target's
training and dev words, every weight fresh), that also reads the source's tag probabilities
of each word (taggers/guide.py). The source stays whole and frozen inside it.

Where the other operations start from the source's weights and must unlearn what does not
carry, this one starts where training on the target alone starts and is given what the
source says as evidence. On CrossNER from the CoNLL GloVe BiLSTM-CRF (bench/crossner.py, 3
seeds) it was 0.53 above the target alone on average and behind on one domain of five,
where the map at the head's rate was 0.40 above and behind on three. The stacked model runs
the source whenever it tags, so adapt's recipe does not choose it (docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from tagshift.corpus import Corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.guide import Guide
from tagshift.taggers.tagger import Tagger
from tagshift.transfer.plan import LabelPlan
from tagshift.transfer.surgery import SurgeryReport


def stack_model(source: Tagger, plan: LabelPlan, train: Corpus, dev: Corpus | None, seed: int,
                head: str | None = None, states: bool = False) -> tuple[Tagger, SurgeryReport]:
    """The untrained stacked model of `plan`'s labels, guided by `source` (its encoder's states
    too with `states`), with a head of `head`'s kind (None: the source's), on the source's device."""
    config = copy.deepcopy(source.config)
    if head is not None:
        config = dataclasses.replace(config, head=head)
    tagger = source.backend.build(config, train, plan.scheme, seed, extra=dev, types=plan.types, guide=Guide(source, states))
    tagger.lineage = copy.deepcopy(source.lineage)
    tagger.network.eval()  # as a loaded model is: training switches it to train mode itself
    labels = list(source.labels)
    return tagger.to(source.device), StackReport("fresh", added=list(plan.labels), dropped=labels, read=labels)


@dataclasses.dataclass
class StackReport(SurgeryReport):
    """What a stacked model holds: a fresh head for every label; no row of the source's labels
    is kept (`dropped`), their probabilities are read (`read`)."""

    read: list[str] = dataclasses.field(default_factory=list)

    def render(self) -> str:
        return (f"new model: {len(self.added)} labels, every weight fresh; it reads the source's tag probabilities "
                f"over its {len(self.read)} labels")


def graft_guide(tagger: Tagger, guide: Guide, seed: int) -> None:
    """Let an adapted BiLSTM-CRF (its encoder the source's) read `guide` as a stacked model
    does, in place: a fresh projection of the guide's features joins the word BiLSTM's
    input through new columns of its first layer's input weights, at zero, so the model
    tags as it did until training teaches it what the guide's verdicts are worth."""
    if not tagger.backend.takes_guide:
        raise TagshiftError(f"a {tagger.backend.name} model cannot read a guide: its encoder takes no features "
                            "beside the text; adapt it without --guide")
    for held in (tagger.config, tagger.encoder.config):  # (the tagger's and the encoder's copies: bundles save the first)
        held.guide_labels, held.guide_states = list(guide.labels), guide.state_size
    torch.manual_seed(seed)
    tagger.encoder.add_guide(guide.size)
    tagger.guide = guide.to(tagger.device)
