"""MobileNetV2 for CIFAR (Sandler et al., 2018), in the layout of the official SimKD / RepDistiller code.

Built from inverted residual blocks: a 1x1 "expand" conv widens the input t times, a 3x3 depthwise
conv filters each channel, and a linear 1x1 "project" conv narrows it again (no ReLU after the
projection: the narrow representation would lose information to it)::

    x (N, C_in, 32, 32)
    conv1 3x3 stride 2 -BN-ReLU     (N, 32w, 16, 16)
    blocks[0..6] (see SETTINGS)     (N, 320w, 2, 2)   <- forward_features (SimKD's feat[-2])
    conv2 1x1 -BN-ReLU              (N, 1280, 2, 2)
    global average pool -> classifier[0]  (N, num_classes)

w is the width multiplier (0.5 for the official "MobileNetV2", 1.0 for "MobileNetV2_1_0").

The classifier acts on the 1280 channels of conv2, NOT on the map SimKD aligns: a MobileNetV2
teacher's classifier cannot be reused on forward_features, so `classifier_on_features` is False
and this net can only be a SimKD *student*.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .registry import ZooModel, register_model

# (expand ratio t, output channels c, repeats n, first stride s) per group of blocks;
# `None` stands for the model's expand ratio (6 in all official models).
SETTINGS = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def conv_bn_relu(inp: int, oup: int, kernel_size: int, stride: int) -> nn.Sequential:
    """conv(no bias) - BN - ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise (stride s) - 1x1 linear projection, + identity if shapes allow.

    (N, inp, H, W) -> (N, oup, H/s, W/s).
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),                           # 0: expand
            nn.BatchNorm2d(hidden),                                                 # 1
            nn.ReLU(inplace=True),                                                  # 2
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),     # 3: depthwise
            nn.BatchNorm2d(hidden),                                                 # 4
            nn.ReLU(inplace=True),                                                  # 5
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),                            # 6: project
            nn.BatchNorm2d(oup),                                                    # 7 (no ReLU)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(ZooModel):
    """MobileNetV2 for small images.

    Args:
        width_mult: channel multiplier w (0.5 or 1.0 in the official models).
        expand_ratio: t of every group but the first (6 in the official models).
        num_classes: outputs of the final Linear `classifier[0]`.
        in_channels: image channels; only the first convolution depends on it.
    """

    classifier_on_features = False  # the classifier sees conv2's 1280 channels, not forward_features

    def __init__(self, width_mult: float = 0.5, expand_ratio: int = 6, num_classes: int = 100,
                 in_channels: int = 3):
        super().__init__()
        self.width_mult = width_mult
        self.num_classes = num_classes
        self.in_channels = in_channels

        channels = int(32 * width_mult)
        self.conv1 = conv_bn_relu(in_channels, channels, kernel_size=3, stride=2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in SETTINGS:
            out_channels = int(c * width_mult)
            group = []
            for i in range(n):
                group.append(InvertedResidual(channels, out_channels, s if i == 0 else 1,
                                              expand_ratio if t is None else t))
                channels = out_channels
            self.blocks.append(nn.Sequential(*group))
        self.feature_channels = channels

        # Official rule: the last conv keeps 1280 channels unless the net is wider than 1.0.
        last_channels = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = conv_bn_relu(channels, last_channels, kernel_size=1, stride=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # = the official 2x2 average at 32x32 input
        self.classifier = nn.Sequential(nn.Linear(last_channels, num_classes))

        # Official initialisation: He-normal (fan_out) convs, BN as identity, N(0, 0.01) classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The official feature list's maps: conv1, blocks[1], blocks[2], blocks[4] and blocks[6] outputs.

        The last, (N, 320w, ceil(H/16), ceil(W/16)) before conv2, is `forward_features`.
        """
        f0 = self.conv1(x)
        f1 = self.blocks[1](self.blocks[0](f0))
        f2 = self.blocks[2](f1)
        f3 = self.blocks[4](self.blocks[3](f2))
        return [f0, f1, f2, f3, self.blocks[6](self.blocks[5](f3))]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 320w, h, w) -> logits (N, num_classes): conv2 (to 1280), pool, classifier.

        `pre_logits=True` stops after the pool: (N, 1280), the official `feat[-1]`.
        """
        pooled = torch.flatten(self.avgpool(self.conv2(features)), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.classifier[0]


@register_model("MobileNetV2")
def mobilenetv2_half(num_classes: int = 100, in_channels: int = 3) -> MobileNetV2:
    """The official "MobileNetV2" (RepDistiller's mobile_half): width 0.5, expand ratio 6."""
    return MobileNetV2(width_mult=0.5, num_classes=num_classes, in_channels=in_channels)


@register_model("MobileNetV2_1_0")
def mobilenetv2_1_0(num_classes: int = 100, in_channels: int = 3) -> MobileNetV2:
    """The official "MobileNetV2_1_0": width 1.0, expand ratio 6."""
    return MobileNetV2(width_mult=1.0, num_classes=num_classes, in_channels=in_channels)
