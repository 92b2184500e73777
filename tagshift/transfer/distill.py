"""Knowledge distillation from the frozen source model (as in ExtendNER).

At words the target gold leaves O, the adapted model's scores over the source's labels are
pulled towards the source's: KL(teacher || student) between temperature-scaled softmaxes,
times T^2 so the gradient's scale does not depend on T. The teacher's scores are computed
once, before training (the source is frozen and in eval mode, so they never change).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tagshift.taggers.tagger import Tagger

DEFAULT_WEIGHT = 1.0
DEFAULT_TEMPERATURE = 2.0


def teacher_scores(
    source: Tagger, sentences: list[list[str]], source_columns: list[int], batch_size: int = 64
) -> list[Tensor]:
    """The source's emission scores (words, len(source_columns)) for each sentence."""
    was_training = source.network.training
    source.network.eval()
    scores: list[Tensor] = [torch.empty(0)] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                emissions, _ = source.emissions([sentences[i] for i in indices])
                for b, i in enumerate(indices):
                    scores[i] = emissions[b, : len(sentences[i]), source_columns].cpu()
    finally:
        source.network.train(was_training)
    return scores


def kl_term(student: Tensor, teacher: Tensor, positions: Tensor, temperature: float) -> Tensor:
    """Mean over `positions` (batch, words) of T^2 * KL(softmax(teacher/T) || softmax(student/T));
    `student` and `teacher` are (batch, words, k) scores over the same k labels."""
    log_student = (student / temperature).log_softmax(dim=-1)
    log_teacher = (teacher / temperature).log_softmax(dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)  # (batch, words)
    return temperature**2 * torch.where(positions, kl, 0.0).sum() / positions.sum().clamp(min=1)


@dataclass
class Distillation:
    """The extra loss term of `fit`: weight * KL at the gold-O words of each batch."""

    teacher: list[Tensor]  # per training sentence, (words, k) source scores
    student_columns: list[int]  # the adapted model's label index for each of the k source labels
    outside: list[Tensor]  # per training sentence, (words,) True where the gold is O
    weight: float = DEFAULT_WEIGHT
    temperature: float = DEFAULT_TEMPERATURE

    def __call__(self, indices: list[int], emissions: Tensor, mask: Tensor) -> Tensor:
        pad = torch.nn.utils.rnn.pad_sequence
        teacher = pad([self.teacher[i] for i in indices], batch_first=True).to(emissions.device)
        positions = pad([self.outside[i] for i in indices], batch_first=True).to(emissions.device) & mask
        student = emissions[:, : teacher.size(1), self.student_columns]
        return self.weight * kl_term(student, teacher, positions, self.temperature)
