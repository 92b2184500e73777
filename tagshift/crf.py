"""A linear-chain CRF over tag scores, batched: likelihood, Viterbi decoding, marginals.

Index convention: `transitions[i, j]` is the score of tag `j` following tag `i` (from, to).
`start[j]` scores a sentence starting with tag `j`; `end[i]` one ending with tag `i`.
Every parameter is indexed by tag, so the transfer layer can add or remove tags (rows and
columns) and leave every other entry untouched.

Hard constraints (`allowed_*`, from `scheme_constraints`) forbid scheme-invalid paths: a
forbidden step scores `FORBIDDEN`, so low that its probability underflows to exactly zero
and no decoded path uses it while an allowed one exists. It is finite, not -inf, because
logsumexp over only -inf entries has a NaN gradient that would leak into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tagshift.schemes import Scheme, split_tag

FORBIDDEN = -1e4  # score of a forbidden step: exp(-1e4) is 0 in float32 and float64


@dataclass(frozen=True)
class Constraints:
    """Which tags may start a sentence, follow each other, and end a sentence."""

    start: Tensor  # (tags,) bool
    transitions: Tensor  # (tags, tags) bool, [from, to]
    end: Tensor  # (tags,) bool


def unconstrained(num_tags: int) -> Constraints:
    """Every start, transition and end allowed."""
    return Constraints(
        torch.ones(num_tags, dtype=torch.bool),
        torch.ones(num_tags, num_tags, dtype=torch.bool),
        torch.ones(num_tags, dtype=torch.bool),
    )


def scheme_constraints(tags: list[str], scheme: Scheme) -> Constraints:
    """The transitions a scheme allows between `tags`, derived from its prefix table.

    >>> c = scheme_constraints(["O", "B-X", "I-X"], __import__("tagshift.schemes").schemes.SCHEMES["iob2"])
    >>> c.transitions.int().tolist(), c.start.int().tolist()
    ([[1, 1, 0], [1, 1, 1], [1, 1, 1]], [1, 1, 0])
    """
    parts = [split_tag(tag) for tag in tags]

    def can_end(prefix: str) -> bool:  # an entity may close after this tag
        return prefix in ("O", scheme.single, scheme.last, scheme.begin_after_same)

    def can_continue(prefix: str) -> bool:  # an entity may go on after this tag
        return prefix != "O" and prefix in (scheme.begin, scheme.inside, scheme.begin_after_same)

    def starts(prefix: str) -> bool:  # this tag may open an entity (or be O)
        return prefix in ("O", scheme.single, scheme.begin)

    n = len(tags)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i, (prefix_a, type_a) in enumerate(parts):
        for j, (prefix_b, type_b) in enumerate(parts):
            same_type = prefix_a != "O" and prefix_b != "O" and type_a == type_b
            opens = starts(prefix_b) or (same_type and prefix_b == scheme.begin_after_same)
            continues = same_type and prefix_b in (scheme.inside, scheme.last)
            allowed[i, j] = (can_end(prefix_a) and opens) or (can_continue(prefix_a) and continues)
    start = torch.tensor([starts(p) for p, _ in parts], dtype=torch.bool)
    end = torch.tensor([can_end(p) for p, _ in parts], dtype=torch.bool)
    return Constraints(start, allowed, end)


class CRF(nn.Module):
    """Linear-chain CRF. Inputs are emissions (batch, words, tags) and a mask (batch, words)
    that is True for real words; every sentence has at least one word, left-aligned."""

    def __init__(self, num_tags: int, constraints: Constraints | None = None) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        allowed = constraints or unconstrained(num_tags)
        for name, mask, shape in (
            ("allowed_start", allowed.start, (num_tags,)),
            ("allowed_transitions", allowed.transitions, (num_tags, num_tags)),
            ("allowed_end", allowed.end, (num_tags,)),
        ):
            if tuple(mask.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {shape}")
            self.register_buffer(name, mask.clone())

    def _scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """Start, transition and end scores with forbidden entries at FORBIDDEN."""
        return (
            self.start.masked_fill(~self.allowed_start, FORBIDDEN),
            self.transitions.masked_fill(~self.allowed_transitions, FORBIDDEN),
            self.end.masked_fill(~self.allowed_end, FORBIDDEN),
        )

    def log_partition(self, emissions: Tensor, mask: Tensor, allowed: Tensor | None = None) -> Tensor:
        """log of the summed score of all paths (batch,); with `allowed` (batch, words, tags)
        only paths through allowed tags count: one-hot gold tags give the gold path's score,
        sets of tags give partial labels."""
        return log_partition(emissions, mask, *self._scores(), allowed)

    def neg_log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Mean over the batch of -log p(tags | emissions). `tags` is (batch, words) of indices,
        or (batch, words, tags) bool for partial labels (any allowed tag may be the gold one)."""
        allowed = tags if tags.dim() == 3 else nn.functional.one_hot(tags.clamp(min=0), self.num_tags).bool()
        return sentence_neg_log_likelihood(emissions, mask, *self._scores(), allowed).mean()

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """p(tag at word t | sentence), (batch, words, tags): the gradient of log Z with
        respect to the emissions. Rows of padding words are zero."""
        with torch.enable_grad():
            emissions = emissions.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_partition(emissions, mask).sum(), emissions)
        return grad * mask.unsqueeze(2)

    def viterbi(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """The best tag path of each sentence (only its real words)."""
        return viterbi(emissions, mask, *self._scores())


def forbid(constraints: Constraints) -> tuple[Tensor, Tensor, Tensor]:
    """Start, transition and end scores that are 0 where allowed and FORBIDDEN elsewhere:
    decoding a softmax head with them finds the best valid sequence."""
    start, transitions, end = (
        torch.zeros(m.shape).masked_fill(~m, FORBIDDEN)
        for m in (constraints.start, constraints.transitions, constraints.end)
    )
    return start, transitions, end


def log_partition(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor, allowed: Tensor | None = None
) -> Tensor:
    """The forward algorithm: log of the summed score of all paths (batch,) under these
    scores, only through `allowed` (batch, words, tags) tags when given.

    Each step sums over the previous tag in exp space, as one matrix product with
    exp(transitions), the forward scores shifted by their maximum first so that nothing
    overflows: for the tens of tags a domain's types make, several times faster (forward and
    backward) than a logsumexp over (batch, from, to). It runs in float64, where a path's share
    underflows only when it lies 708 nats below the best (float32's floor is 87); a tag no path
    reaches (a forbidden one) scores FORBIDDEN at that step. The tests compare it with
    brute-force enumeration and with the logsumexp recursion on wide scores."""
    if allowed is not None:
        emissions = emissions.masked_fill(~allowed, FORBIDDEN)
    dtype = emissions.dtype
    with torch.autocast(emissions.device.type, enabled=False):
        # float64 in exp space: a path's share underflows only 708 nats below the best (float32: 87)
        emissions, start, transitions, end = (x.double() for x in (emissions, start, transitions, end))
        shift = transitions.max(dim=0).values.detach()  # (to,): each column's best step scores 0
        weights = torch.exp(transitions - shift)  # (from, to), in [0, 1]
        alpha = start + emissions[:, 0]  # (batch, tags)
        for t in range(1, emissions.size(1)):
            top = alpha.max(dim=1, keepdim=True).values.detach()  # (batch, 1); log Z does not depend on it
            summed = torch.exp(alpha - top) @ weights  # (batch, from) @ (from, to) -> (batch, to)
            # a tag no path reaches (a forbidden one) scores FORBIDDEN, not log 0
            reached = summed > 0
            logged = torch.where(reached, torch.log(torch.where(reached, summed, 1.0)), FORBIDDEN)
            step = logged + top + shift + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1).to(dtype)


def sentence_neg_log_likelihood(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor, allowed: Tensor
) -> Tensor:
    """-log of the share of all paths' score that goes through `allowed` (batch, words, tags),
    per sentence (batch,): the likelihood of gold tags, or of partial labels."""
    gold = log_partition(emissions, mask, start, transitions, end, allowed)
    if (gold < FORBIDDEN / 2).any():
        raise ValueError("a gold tag sequence is forbidden by the scheme's constraints; repair the data first")
    return log_partition(emissions, mask, start, transitions, end) - gold


def viterbi(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> list[list[int]]:
    """The best tag path of each sentence (only its real words) under these scores."""
    score = start + emissions[:, 0]  # (batch, tags)
    history = []
    for t in range(1, emissions.size(1)):
        # best previous tag for each next tag: (batch, from, to) -> max over from
        candidates = score.unsqueeze(2) + transitions
        best, best_prev = candidates.max(dim=1)
        history.append(best_prev)
        score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
    score = score + end
    lengths = mask.sum(dim=1).tolist()
    last = score.argmax(dim=1).tolist()
    # Backtrack in plain Python lists: indexing tensors element by element is far slower.
    pointers = torch.stack(history, dim=1).tolist() if history else []  # (batch, words - 1, tags)
    paths = []
    for b, length in enumerate(lengths):
        tag = last[b]
        path = [tag]
        for t in range(length - 1, 0, -1):
            tag = pointers[b][t - 1][tag]
            path.append(tag)
        paths.append(path[::-1])
    return paths
