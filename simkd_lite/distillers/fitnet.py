"""FitNets (Romero et al., 2015): regress the student's hint map onto the teacher's.

Our hint layer is the last feature map of each network (the one SimKD aligns too), so the
two methods differ only in what they do with it: FitNet keeps the student's own classifier
and cross-entropy; SimKD drops both and reuses the teacher's classifier.
"""
from __future__ import annotations

from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.losses import align_feature_maps, cross_entropy, feature_l2_loss


class HintRegressor(nn.Sequential):
    """conv1x1(C_s -> C_t) + BN + ReLU: maps (N, C_s, H, W) to (N, C_t, H, W).

    This is the official `ConvReg` for maps of equal size (its kernel is 1 + H_s - H_t); when the
    sizes differ we pool the larger map first (SimKD's alignment) instead of using strided convs.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1),
            nn.BatchNorm2d(teacher_channels),
            nn.ReLU(inplace=True),
        )


@register_distiller("fitnet")
class FitNet(Distiller):
    """loss = ce_weight * CE(s, y) + hint_weight * MSE(regressor(f_s), f_t); official weight 100."""

    def __init__(self, student: nn.Module, teacher: nn.Module, hint_weight: float = 100.0,
                 ce_weight: float = 1.0):
        super().__init__(student, teacher)
        self.regressor = HintRegressor(student.feature_channels, teacher.feature_channels)
        self.hint_weight, self.ce_weight = hint_weight, ce_weight

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        teacher_features = self.teacher_outputs(x, teacher_out).features
        features = self.student.forward_features(x)
        logits = self.student.forward_head(features)
        source, target = align_feature_maps(features, teacher_features)
        return logits, {
            "ce": self.ce_weight * cross_entropy(logits, y),
            "hint": self.hint_weight * feature_l2_loss(self.regressor(source), target),
        }

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"regressor": self.regressor}
