"""Hinton et al. (2015): match the teacher's temperature-softened class probabilities."""
from __future__ import annotations

from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.checks import check_number
from simkd_lite.distillers.losses import cross_entropy, kd_loss


@register_distiller("kd")
class KD(Distiller):
    """loss = ce_weight * CE(s, y) + kd_weight * KL(t/T || s/T) * T^2.

    Defaults are the SimKD repository's protocol behind the paper's KD row (`-c 1 -d 1 -b 0`, T=4:
    1*CE + 1*KD). RepDistiller published its KD numbers with `-r 0.1 -a 0.9` instead
    (`simkd_lite.experiments.profiles.REPDISTILLER_METHOD_OPTIONS`).
    """

    paper_options = {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0}

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 4.0,
                 ce_weight: float = 1.0, kd_weight: float = 1.0):
        super().__init__(student, teacher)
        self.temperature = check_number("temperature", temperature)  # T <= 0: a NaN loss, or a reversed softmax
        self.ce_weight = check_number("ce_weight", ce_weight, strict=False)
        self.kd_weight = check_number("kd_weight", kd_weight, strict=False)

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        teacher_logits = self.teacher_outputs(x, teacher_out).logits
        logits = self.student(x)
        return logits, {
            "ce": self.ce_weight * cross_entropy(logits, y),
            "kd": self.kd_weight * kd_loss(logits, teacher_logits, self.temperature),
        }
