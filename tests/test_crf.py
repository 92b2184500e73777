"""The CRF against brute-force enumeration of every tag path."""

from __future__ import annotations

import itertools

import pytest
import torch

from tagshift.crf import CRF, scheme_constraints
from tagshift.schemes import SCHEMES, check_prefixes, invalid_chunks


def path_score(crf: CRF, emissions, path, start, transitions, end) -> torch.Tensor:
    score = start[path[0]] + emissions[0, path[0]]
    for a, b, t in zip(path, path[1:], range(1, len(path))):
        score = score + transitions[a, b] + emissions[t, b]
    return score + end[path[-1]]


def random_crf(num_tags: int, seed: int, constraints=None) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags, constraints).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@pytest.mark.parametrize("seed", range(5))
def test_log_partition_viterbi_and_marginals_equal_brute_force(seed):
    num_tags, lengths = 3, [4, 2, 1]
    crf = random_crf(num_tags, seed)
    emissions = torch.randn(len(lengths), max(lengths), num_tags, dtype=torch.double)
    mask = torch.tensor([[t < n for t in range(max(lengths))] for n in lengths])
    start, transitions, end = crf._scores()
    log_z = crf.log_partition(emissions, mask)
    best = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for b, n in enumerate(lengths):
        paths = list(itertools.product(range(num_tags), repeat=n))
        scores = torch.stack([path_score(crf, emissions[b], p, start, transitions, end) for p in paths])
        # float64 throughout: forward algorithm vs enumeration differ by ~1e-15 relative, so
        # rel=1e-6 (pytest's default) is rounding-proof on any CPU and still far below a real error
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), rel=1e-6)
        assert tuple(best[b]) == paths[int(scores.argmax())]
        probs = torch.softmax(scores, 0)
        for t in range(n):
            expected = [sum(probs[k] for k, p in enumerate(paths) if p[t] == tag).item() for tag in range(num_tags)]
            assert marginals[b, t].tolist() == pytest.approx(expected, rel=1e-6)  # float64, as above
            assert marginals[b, t].sum().item() == pytest.approx(1.0, rel=1e-6)  # float64, as above
        assert marginals[b, n:].abs().sum().item() == 0.0  # padding rows are multiplied by 0: exact


def test_the_forward_algorithm_holds_for_wide_scores_and_forbidden_steps():
    """log_partition sums in exp space, shifted by each step's best score; against a float64
    logsumexp forward (the textbook recursion) on 69 tags (17 types in IOBES, a CrossNER
    domain's size), scores 30 times a unit normal's spread and a scheme's forbidden steps:
    equal within float32's rounding over 40 words (1e-5 relative), gradients finite."""
    from tagshift.crf import FORBIDDEN, log_partition

    num_tags, length = 69, 40
    constraints = scheme_constraints([f"{p}-T{i}" for i in range(17) for p in "BIES"] + ["O"], SCHEMES["iobes"])
    crf = random_crf(num_tags, 0, constraints).float()
    with torch.no_grad():
        for p in crf.parameters():
            p.mul_(30)
    emissions = (30 * torch.randn(2, length, num_tags)).requires_grad_(True)
    mask = torch.tensor([[True] * length, [True] * 25 + [False] * 15])
    start, transitions, end = crf._scores()
    ours = log_partition(emissions, mask, start, transitions, end)
    e, s, tr, en = (x.detach().double() for x in (emissions, start, transitions, end))
    alpha = s + e[:, 0]
    for t in range(1, length):
        step = torch.logsumexp(alpha.unsqueeze(2) + tr + e[:, t].unsqueeze(1), dim=1)
        alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
    reference = torch.logsumexp(alpha + en, dim=1)
    assert ours.double().tolist() == pytest.approx(reference.tolist(), rel=1e-5)
    ours.sum().backward()
    assert torch.isfinite(emissions.grad).all() and emissions.grad[1, 25:].abs().sum() == 0
    assert bool((transitions == FORBIDDEN).any())  # the scheme did forbid steps


def test_gold_and_partial_likelihoods():
    crf = random_crf(3, 0)
    emissions = torch.randn(1, 3, 3, dtype=torch.double)
    mask = torch.ones(1, 3, dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1]])
    start, transitions, end = crf._scores()
    gold = path_score(crf, emissions[0], [0, 2, 1], start, transitions, end)
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    assert nll.item() == pytest.approx((crf.log_partition(emissions, mask)[0] - gold).item(), rel=1e-6)  # float64
    # Partial labels where everything is allowed: the loss is zero, log Z minus log Z; in float64
    # 1e-9 of log Z's size is ~10^6 eps, rounding-proof yet far below any real loss.
    everything = torch.ones(1, 3, 3, dtype=torch.bool)
    log_z = abs(crf.log_partition(emissions, mask)[0].item())
    assert crf.neg_log_likelihood(emissions, everything, mask).item() == pytest.approx(0.0, abs=1e-9 * log_z)
    nll.backward()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "iobes", "bilou", "io"])
def test_constraints_allow_exactly_the_valid_sequences(scheme):
    definition = SCHEMES[scheme]
    prefixes = sorted(definition.prefixes)
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("X", "Y")]
    c = scheme_constraints(tags, definition)
    for n in (1, 2, 3):
        for path in itertools.product(range(len(tags)), repeat=n):
            seq = [tags[i] for i in path]
            allowed = bool(c.start[path[0]]) and bool(c.end[path[-1]])
            allowed = allowed and all(bool(c.transitions[a, b]) for a, b in zip(path, path[1:]))
            assert allowed == (invalid_chunks(seq, definition) == []), seq


def test_constrained_decoding_never_emits_an_invalid_sequence():
    scheme = SCHEMES["iobes"]
    tags = ["O"] + [f"{p}-{t}" for p in "BIES" for t in ("X", "Y")]
    crf = random_crf(len(tags), 3, scheme_constraints(tags, scheme))
    emissions = torch.randn(64, 7, len(tags), dtype=torch.double) * 5
    mask = torch.ones(64, 7, dtype=torch.bool)
    for path in crf.viterbi(emissions, mask):
        seq = [tags[i] for i in path]
        check_prefixes(seq, scheme)
        assert invalid_chunks(seq, scheme) == [], seq


def test_a_forbidden_gold_sequence_is_an_error():
    tags = ["O", "B-X", "I-X"]
    crf = CRF(3, scheme_constraints(tags, SCHEMES["iob2"]))
    with pytest.raises(ValueError, match="repair the data first"):
        crf.neg_log_likelihood(torch.zeros(1, 2, 3), torch.tensor([[0, 2]]), torch.ones(1, 2, dtype=torch.bool))
