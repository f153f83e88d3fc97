"""SimKD's projector and its deployed prediction path, shared by the distiller and the deployable student.

SimKD's parts have one name each, everywhere in the package:
    student       the student network (its `forward_features` is the encoder; its own classifier is unused)
    projector     `SimKDProjector`: student map -> teacher channels (the official code calls it `SimKD`)
    teacher_head  a frozen copy of the teacher's final Linear, reused to classify the projected map
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from simkd_lite.distillers.checks import check_whole
from simkd_lite.distillers.losses import align_feature_maps, feature_l2_loss, global_pool


def projector_parameter_count(student_channels: int, teacher_channels: int, factor: int = 2) -> int:
    """Closed form of SimKD's projector size: s*m + 9*m^2 + m*t + 4m + 2t, with m = t // factor.

    (three bias-free convs, then two BN(m) and one BN(t), each with a weight and a bias)
    """
    s, t = student_channels, teacher_channels
    m = t // factor
    return s * m + 9 * m * m + m * t + 4 * m + 2 * t


class SimKDProjector(nn.Module):
    """The projector plus the official alignment, with the official parameter names.

    `transfer` = conv1x1(s->m) BN ReLU conv3x3(m->m) BN ReLU conv1x1(m->t) BN ReLU, m = t // factor,
    so an official `proj` state_dict (`transfer.0.weight`, `transfer.1.*`, ...) loads with strict=True.
    """

    def __init__(self, student_channels: int, teacher_channels: int, factor: int = 2):
        super().__init__()
        factor = check_whole("factor", factor)
        student_channels, teacher_channels = check_whole("student_channels", student_channels), \
            check_whole("teacher_channels", teacher_channels)
        if teacher_channels // factor < 1:
            raise ValueError(f"factor={factor} leaves no channels in the bottleneck of a {teacher_channels}-channel "
                             f"teacher: choose 1 <= factor <= {teacher_channels}.")
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

    def forward(self, feat_s: Tensor, feat_t: Tensor, teacher_head: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C_s, H_s, W_s), (N, C_t, H_t, W_t) -> (projected student, aligned teacher, logits).

        The projected student and the aligned teacher share the shape (N, C_t, min(H), min(W)).
        """
        if feat_s.shape[1] != self.student_channels or feat_t.shape[1] != self.teacher_channels:
            raise ValueError(
                f"SimKDProjector({self.student_channels}->{self.teacher_channels}) got maps with "
                f"{feat_s.shape[1]} and {feat_t.shape[1]} channels."
            )
        source, target = align_feature_maps(feat_s, feat_t)
        projected = self.transfer(source)
        logits = teacher_head(global_pool(projected))
        return projected, target, logits

    @staticmethod
    def loss(projected_s: Tensor, aligned_t: Tensor) -> Tensor:
        """The whole SimKD objective: MSE over every element, weight 1."""
        return feature_l2_loss(projected_s, aligned_t)


# The official code's name for the projector module.
SimKD = SimKDProjector


def projected_pooled(student: nn.Module, projector: SimKDProjector, x: Tensor, target_size: int | None) -> Tensor:
    """(N, C_t): encoder -> (pool to the teacher map's size) -> projector -> global pool; what the head reads."""
    features = student.forward_features(x)
    if target_size is not None and features.shape[-1] > target_size:
        features = F.adaptive_avg_pool2d(features, target_size)
    return global_pool(projector.transfer(features))


def predict_with_teacher_head(student: nn.Module, projector: SimKDProjector, teacher_head: nn.Module, x: Tensor,
                              target_size: int | None) -> Tensor:
    """Deployed SimKD prediction: the projected pooled features through the teacher's frozen head."""
    return teacher_head(projected_pooled(student, projector, x, target_size))
