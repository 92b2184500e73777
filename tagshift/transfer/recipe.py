"""What `adapt` chooses when the user leaves the label operation open (no --labels, no --map).

It looks at the target's training data and at what the source predicts on it:

- the target uses the source's type names (all of them its own, or some beside new ones):
  `extend` at adapt's usual rates (the same types in a new domain; new types added);
- the target uses none of the source's type names, and the source's entities land on the
  target's (at least NEW_DOMAIN_LANDED of them touch one): a new domain with its own tag set
  (CoNLL -> CrossNER: person where the source said PER). `map` with the map `tagshift labels
  suggest` proposes, and the encoder at the head's rate, a transformer's layers decaying
  downwards from there (its backend's `new_domain_layer_decay`), and for a transformer the
  head alone for the first epochs (`new_domain_head_epochs`) and a dev set larger than the
  training set scored every ceil(dev / train) epochs (`new_domain_sparse_dev`: scoring it
  after every epoch took 29% of the adapt time). That is the recipe that
  beat training on the target alone in bench/crossner.py, where `extend` at a tenth of the
  head's rate lost to it on both backends (docs/benchmarks.md, "Why transfer loses here");
- a source that finds no entities of its own in the target's data (lower-cased queries for a
  cased news model): `extend` with the encoder at the head's rate (a transformer's layers
  decaying as for a new domain) and a target-only control, the better on dev kept;
- otherwise (the source's entities fall where the target annotates nothing: a new type
  taught on data that leaves the old ones O) `extend` at the usual rates, with a hint to keep
  the old types by --pseudo-label; and `extend` too where the user asked to keep the source's
  types (--pseudo-label, --partial, --distill, --keep-old-head).

Where the source finds under FEW_FOUND of the target's entities, the map comes with a
target-only control (`--compare-scratch`, on when dev is given): the better on dev is kept.

Options the user gives (--encoder-lr, --layer-decay, --freeze-epochs, --dev-every,
--[no-]compare-scratch) win over the recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tagshift.corpus import Corpus
from tagshift.labelmap import LabelMap
from tagshift.schemes import split_tag
from tagshift.taggers.tagger import Tagged, Tagger
from tagshift.training import TrainConfig, dev_every_for
from tagshift.transfer.plan import annotated_types
from tagshift.transfer.suggest import suggest_map

NEW_DOMAIN_LANDED = 0.8  # share of the source's predicted entities that must touch a target entity
# Below this share of the target's entities found (exact span), a new domain's map comes with a
# warning and a target-only control (the better on dev kept): on bench/crossner.py's targets
# the transfer rows lost to training on the target alone where the source found fewest (MIT
# Movie, 0.36 with the CoNLL transformer; CrossNER ai 0.47 with the GloVe BiLSTM-CRF, level
# there) and gained where it found most (politics, 0.80)
FEW_FOUND = 0.4


@dataclass
class Recipe:
    """The label operation (and map) adapt chose, the training rates that go with it, and why."""

    labels: str  # "extend" or "map"
    label_map: LabelMap | None  # the suggested map, with "map"
    encoder_at_head_rate: bool
    layer_decay: float | None  # None: training's (no decay)
    reason: str
    evidence: dict[str, Any] | None = None  # the suggestion behind it, where one was made
    head_epochs: int | None = None  # epochs that train the head alone first (at most a quarter of training's)
    control: bool = False  # also train a target-only control and keep the better on dev (--compare-scratch)
    sparse_dev: bool = False  # a dev set larger than train scored every ceil(dev / train) epochs

    def apply(self, training: TrainConfig, given: dict[str, Any], train: int = 0, dev: int = 0) -> TrainConfig:
        """`training` with the recipe's rates and dev scoring, where `given` (the user's training
        options) leaves them open; `train` and `dev`: the sentences in each."""
        if self.encoder_at_head_rate and given.get("encoder_lr") is None:
            training.encoder_lr = training.head_lr
        if self.layer_decay is not None and given.get("layer_decay") is None:
            training.layer_decay = self.layer_decay
        if self.head_epochs and given.get("freeze_epochs") is None:
            # a quarter at most, so that a short run still fine-tunes the encoder (4 epochs: 1 alone)
            training.freeze_epochs = min(self.head_epochs, training.epochs // 4)
        if self.sparse_dev and given.get("dev_every") is None:
            training.dev_every = dev_every_for(train, dev, training)
        return training

    def render(self) -> str:
        rates = []
        if self.encoder_at_head_rate:
            rates.append("the encoder at the head's rate")
        if self.layer_decay is not None:
            rates.append(f"layer decay {self.layer_decay}")
        if self.head_epochs:
            rates.append(f"the head alone first, for {self.head_epochs} epochs or a quarter of them if fewer")
        if self.sparse_dev:
            rates.append("a dev set larger than the training set scored every ceil(dev / train) epochs")
        if self.control:
            rates.append("a target-only control, the better on dev kept")
        chosen = f"--labels {self.labels}" + (f" ({', '.join(rates)})" if rates else "")
        return (f"adapt chose {chosen}: {self.reason} "
                "(--labels, --map, --encoder-lr, --layer-decay, --freeze-epochs, --dev-every and --compare-scratch "
                "choose otherwise)")

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "rename": dict(self.label_map.rename) if self.label_map else {},
                "merge": {k: list(v) for k, v in self.label_map.merge.items()} if self.label_map else {},
                "encoder_at_head_rate": self.encoder_at_head_rate, "layer_decay": self.layer_decay,
                "head_epochs": self.head_epochs, "sparse_dev": self.sparse_dev, "control": self.control,
                "reason": self.reason, "evidence": self.evidence}


def choose_recipe(source: Tagger, train: Corpus, labels: str | None, label_map: LabelMap | None,
                  keeping: list[str] = (), progress: bool = False,
                  predicted: list[Tagged] | None = None) -> Recipe | None:
    """The recipe for a target, or None when the user chose the operation (`labels`) or gave a
    map. `keeping`: the options given that keep the source's types as they are (--pseudo-label,
    --distill, ...): they ask for extend. `predicted`: the source's predictions on `train`, if
    made already."""
    if labels is not None or label_map is not None:
        return None
    if keeping:
        verb = "keeps" if len(keeping) == 1 else "keep"
        return Recipe("extend", None, False, None, f"{', '.join(keeping)} {verb} the source's types as they are")
    source_types = {split_tag(label)[1] for label in source.labels} - {""}
    target_types = annotated_types(train)
    if target_types <= source_types:
        return Recipe("extend", None, False, None, "the target annotates only types the source has")
    if target_types & source_types:
        return Recipe("extend", None, False, None, "the target keeps the source's type names "
                      f"({', '.join(sorted(target_types & source_types))}) and adds its own")
    suggestion = suggest_map(source, train, progress=progress, predicted=predicted)
    landed = suggestion.evidence.landed()
    found = suggestion.evidence.found()
    evidence = {"landed": round(landed, 4), "found": round(found, 4), **suggestion.to_json()}
    new = ", ".join(sorted(target_types)[:5]) + (", ..." if len(target_types) > 5 else "")
    if suggestion.mapping and landed >= NEW_DOMAIN_LANDED:
        rules = ", ".join(f"{old} -> {new_type}" for old, new_type in sorted(suggestion.mapping.items()))
        few = found < FEW_FOUND
        far = (f"; warning: the source finds only {found:.0%} of the target's entities, so its head start may not "
               "carry: a target-only control trains too, and the better on dev is kept") if few else ""
        return Recipe("map", suggestion.label_map(), True, source.backend.new_domain_layer_decay,
                      f"the target's types ({new}) are not the source's, and {landed:.0%} of the source's entities "
                      f"land on the target's: a new domain, taken with the suggested map ({rules}){far}",
                      evidence, source.backend.new_domain_head_epochs, few, source.backend.new_domain_sparse_dev)
    if not sum(suggestion.evidence.predicted.values()):
        # (on MIT Movie's lower-cased queries the CoNLL BiLSTM-CRFs find nothing: `extend` at a
        # tenth of the head's rate lost 3.3-6.4 points to the target alone there, at the head's
        # rate -1.3 to +0.2; bench/crossner.py, 3 seeds)
        return Recipe("extend", None, True, source.backend.new_domain_layer_decay,
                      f"the target's types ({new}) are not the source's, and the source finds no entities of its own "
                      "in the target's training data: nothing to map, so its types are kept as they are and the "
                      "encoder learns at the head's rate; what it knows may not carry to this text, so a target-only "
                      "control trains too, and the better on dev is kept", evidence, control=True)
    return Recipe("extend", None, False, None,
                  f"the target's types ({new}) are not the source's, and only {landed:.0%} of the source's entities "
                  "land on the target's: its types are kept as they are (--pseudo-label writes them into the "
                  "data so the model does not unlearn them)", evidence)
