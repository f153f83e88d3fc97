"""SimKD (Chen et al., CVPR 2022): align the last feature maps, then reuse the teacher's classifier.

    student map --align--> projector ("transfer") --MSE--> teacher map
                                     |
                          global avg pool -> teacher's frozen Linear -> logits

The only loss is the L2 distance between the projected student map and the teacher map.
If the two were equal, the student would inherit the teacher's accuracy exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.losses import align_feature_maps, feature_l2_loss, global_pool

if TYPE_CHECKING:  # student.py imports this module, so the real import happens inside export()
    from simkd_lite.distillers.student import SimKDStudent


def projector_parameter_count(student_channels: int, teacher_channels: int, factor: int = 2) -> int:
    """Closed form of SimKD's projector size: s*m + 9*m^2 + m*t + 4m + 2t, with m = t // factor.

    (three bias-free convs, then two BN(m) and one BN(t), each with a weight and a bias)
    """
    s, t = student_channels, teacher_channels
    m = t // factor
    return s * m + 9 * m * m + m * t + 4 * m + 2 * t


class SimKD(nn.Module):
    """The projector plus the official alignment, with the official parameter names.

    `transfer` = conv1x1(s->m) BN ReLU conv3x3(m->m) BN ReLU conv1x1(m->t) BN ReLU, m = t // factor,
    so an official `proj` state_dict (`transfer.0.weight`, `transfer.1.*`, ...) loads with strict=True.
    """

    def __init__(self, student_channels: int, teacher_channels: int, factor: int = 2):
        super().__init__()
        if teacher_channels // factor < 1:
            raise ValueError(f"factor={factor} leaves no channels in the bottleneck of a {teacher_channels}-channel teacher.")
        self.student_channels, self.teacher_channels, self.factor = student_channels, teacher_channels, factor
        mid = teacher_channels // factor
        self.transfer = nn.Sequential(
            nn.Conv2d(student_channels, mid, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, teacher_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(teacher_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, feat_s: Tensor, feat_t: Tensor, teacher_classifier: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C_s, H_s, W_s), (N, C_t, H_t, W_t) -> (projected student, aligned teacher, logits).

        The projected student and the aligned teacher share the shape (N, C_t, min(H), min(W)).
        """
        if feat_s.shape[1] != self.student_channels or feat_t.shape[1] != self.teacher_channels:
            raise ValueError(
                f"SimKD({self.student_channels}->{self.teacher_channels}) got maps with "
                f"{feat_s.shape[1]} and {feat_t.shape[1]} channels."
            )
        source, target = align_feature_maps(feat_s, feat_t)
        projected = self.transfer(source)
        logits = teacher_classifier(global_pool(projected))
        return projected, target, logits

    @staticmethod
    def loss(projected_s: Tensor, aligned_t: Tensor) -> Tensor:
        """The whole SimKD objective: MSE over every element, weight 1."""
        return feature_l2_loss(projected_s, aligned_t)


def predict_with_teacher_head(student: nn.Module, simkd: SimKD, teacher_head: nn.Module, x: Tensor,
                              target_size: int | None) -> Tensor:
    """Deployed SimKD prediction: encoder -> (pool to the teacher's size) -> projector -> pool -> head."""
    features = student.forward_features(x)
    if target_size is not None and features.shape[-1] > target_size:
        features = F.adaptive_avg_pool2d(features, target_size)
    return teacher_head(global_pool(simkd.transfer(features)))


@register_distiller("simkd")
class SimKDDistiller(Distiller):
    """Trains student encoder + projector with the L2 loss; predicts with the teacher's head."""

    def __init__(self, student: nn.Module, teacher: nn.Module, factor: int = 2):
        super().__init__(student, teacher)
        # The student's own classifier is never used (prediction goes through the teacher's head):
        # freeze it so that it is not optimised, decayed, or waited for by DDP's gradient sync.
        student.get_classifier().requires_grad_(False)
        self.simkd = SimKD(student.feature_channels, teacher.feature_channels, factor)
        # A frozen *copy* of the teacher's last Linear: part of the student's prediction head.
        self.teacher_head = self.teacher.classifier_copy()

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        teacher_features = self.teacher_outputs(x, teacher_out).features
        self.target_size = teacher_features.shape[-1]
        projected, target, logits = self.simkd(self.student.forward_features(x), teacher_features, self.teacher_head)
        return logits, {"simkd": SimKD.loss(projected, target)}

    def forward(self, x: Tensor) -> Tensor:
        # Evaluation never runs the teacher network: the alignment only needs the teacher
        # map's size, which training recorded in `target_size`.
        return predict_with_teacher_head(self.student, self.simkd, self.teacher_head, x, self.target_size)

    # H_t of the teacher map, recorded by the first training step and saved in state_dict.
    target_size: int | None = None

    def get_extra_state(self):
        return {"target_size": self.target_size}

    def set_extra_state(self, state) -> None:
        self.target_size = state["target_size"]

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"projector": self.simkd}

    def checkpoint_entries(self) -> dict:
        """The official `proj` entry, and `simkd`: what rebuilds the prediction head from a training
        checkpoint without the teacher file (`SimKDStudent.from_training_checkpoint`)."""
        return {"proj": self.simkd.state_dict(),
                "simkd": {"student_channels": self.simkd.student_channels,
                          "teacher_channels": self.simkd.teacher_channels, "factor": self.simkd.factor,
                          "target_size": self.target_size, "num_classes": self.teacher_head.out_features,
                          "teacher_model": getattr(self.teacher.model, "model_name", None),
                          "head": self.teacher_head.state_dict()}}

    def export(self) -> "SimKDStudent":
        """The deployable student: encoder + projector + teacher head, no teacher network."""
        from simkd_lite.distillers.student import SimKDStudent

        return SimKDStudent(self.student, self.simkd, self.teacher_head, teacher_feature_size=self.target_size,
                            teacher_model=getattr(self.teacher.model, "model_name", None))
