"""FitNets (Romero et al., 2015), as the SimKD repository runs it for the paper's table.

    loss = ce_weight * CE(s, y) + kd_weight * KD(s, t; T) + hint_weight * MSE(regressor(s_hint), t_hint)

with the SimKD repository's protocol (`--distill hint -c 1 -d 1 -b 100 --hint_layer 1`, T = 4):
`s_hint` / `t_hint` are the maps at index `hint_layer` of each network's official feature list
(`model.forward_feature_list`; index 1 is the first residual stage's output, 64x32x32 for both
ResNet-32x4 and ResNet-8x4), and the regressor is the official `ConvReg`. The student predicts
with its own classifier. RepDistiller's protocol (`-r 1 -a 0 -b 100`, hint layer 2: no KD term)
is a different recipe with different published numbers; see `experiments.profiles`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.checks import check_number, check_whole
from simkd_lite.distillers.losses import cross_entropy, feature_l2_loss, kd_loss


class ConvReg(nn.Module):
    """The official FitNet regressor: conv -> BN -> ReLU, the conv chosen from the two map sizes.

    student (N, C_s, H_s, W_s) -> (N, C_t, H_t, W_t), with the conv (official rule, in this order):
      - H_s == 2 * H_t: 3x3, stride 2, padding 1 (halves the student map);
      - 2 * H_s == H_t: 4x4 transposed conv, stride 2, padding 1 (doubles it);
      - H_s >= H_t: a (1 + H_s - H_t) x (1 + W_s - W_t) conv without padding (1x1 for equal sizes);
      - otherwise: 3x3, padding 1 (keeps the student size), and the *teacher* map is average-pooled
        down to the student's size instead.
    Parameter names (`conv.*`, `bn.*`) are the official ones.
    """

    def __init__(self, student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]):
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = student_shape, teacher_shape
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)
        self.pool_teacher_to = None
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, padding=1)
            self.pool_teacher_to = (s_h, s_w)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, feat_s: Tensor, feat_t: Tensor) -> tuple[Tensor, Tensor]:
        """-> (regressed student map, teacher map), of equal shapes."""
        target = F.adaptive_avg_pool2d(feat_t, self.pool_teacher_to) if self.pool_teacher_to else feat_t
        return self.relu(self.bn(self.conv(feat_s))), target


@torch.no_grad()
def feature_list_shapes(model: nn.Module, image_size: int, in_channels: int) -> list[tuple[int, ...]]:
    """Per-sample shapes of `model.forward_feature_list` for square inputs (eval mode, 2 zero images)."""
    was_training = model.training
    parameter = next(model.parameters())
    probe = torch.zeros(2, in_channels, image_size, image_size, device=parameter.device, dtype=parameter.dtype)
    feats, _ = model.eval().forward_feature_list(probe)
    model.train(was_training)
    return [tuple(f.shape[1:]) for f in feats]


def _spatial(shapes: list[tuple[int, ...]], index: int, who: str) -> tuple[int, int, int]:
    if not -len(shapes) <= index < len(shapes) or len(shapes[index]) != 3:
        maps = [i for i, s in enumerate(shapes) if len(s) == 3]
        raise ValueError(f"hint_layer {index} is not a spatial map of the {who}'s feature list "
                         f"{[list(s) for s in shapes]}: choose one of {maps}.")
    return shapes[index]


@register_distiller("fitnet")
class FitNet(Distiller):
    """CE + KD + hint (SimKD repository protocol by default: weights 1, 1, 100; T = 4; hint layer 1)."""

    paper_options = {"hint_weight": 100.0, "ce_weight": 1.0, "kd_weight": 1.0, "temperature": 4.0, "hint_layer": 1}

    def __init__(self, student: nn.Module, teacher: nn.Module, hint_weight: float = 100.0,
                 ce_weight: float = 1.0, kd_weight: float = 1.0, temperature: float = 4.0,
                 hint_layer: int = 1, image_size: int = 32):
        super().__init__(student, teacher)
        temperature = check_number("temperature", temperature)
        hint_weight, ce_weight, kd_weight = (check_number(name, value, strict=False) for name, value in
                                             (("hint_weight", hint_weight), ("ce_weight", ce_weight),
                                              ("kd_weight", kd_weight)))
        hint_layer, image_size = check_whole("hint_layer", hint_layer, minimum=-10), check_whole("image_size", image_size)
        in_channels = student.in_channels
        s_shape = _spatial(feature_list_shapes(student, image_size, in_channels), hint_layer, "student")
        t_shape = _spatial(feature_list_shapes(self.teacher.model, image_size, in_channels), hint_layer, "teacher")
        self.regressor = ConvReg(s_shape, t_shape)
        self.teacher_hint_layer = hint_layer
        self.hint_weight, self.ce_weight, self.kd_weight = hint_weight, ce_weight, kd_weight
        self.temperature, self.image_size = temperature, image_size

    @classmethod
    def data_options(cls, image_size: int) -> dict:
        # The regressor's conv depends on both maps' sizes, hence on the images' size.
        return {"image_size": image_size}

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        teacher = self.teacher_outputs(x, teacher_out)
        if teacher.hint is None or tuple(teacher.hint.shape[1:]) != self.regressor.teacher_shape:
            got = None if teacher.hint is None else list(teacher.hint.shape[1:])
            raise ValueError(f"FitNet needs the teacher's map at hint layer {self.teacher_hint_layer}, shape "
                             f"{list(self.regressor.teacher_shape)} (its regressor was built for "
                             f"{self.image_size}x{self.image_size} images: image_size=...); the teacher outputs "
                             f"hold {got} (cache them with cache_teacher_outputs(..., hint_layer=...)).")
        feats, logits = self.student.forward_feature_list(x)
        regressed, target = self.regressor(feats[self.teacher_hint_layer], teacher.hint)
        return logits, {
            "ce": self.ce_weight * cross_entropy(logits, y),
            "kd": self.kd_weight * kd_loss(logits, teacher.logits, self.temperature),
            "hint": self.hint_weight * feature_l2_loss(regressed, target),
        }

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"regressor": self.regressor}
