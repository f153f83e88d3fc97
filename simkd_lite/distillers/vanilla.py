"""Vanilla training: the student learns from the labels alone (the baseline of every table)."""
from __future__ import annotations

from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.losses import cross_entropy


@register_distiller("vanilla")
class Vanilla(Distiller):
    needs_teacher = False

    def __init__(self, student: nn.Module):
        super().__init__(student, teacher=None)

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        logits = self.student(x)
        return logits, {"ce": cross_entropy(logits, y)}
