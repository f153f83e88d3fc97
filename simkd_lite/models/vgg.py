"""VGG with BatchNorm for CIFAR, in the layout of the official SimKD / RepDistiller code.

Five blocks of 3x3 conv(bias)-BN-ReLU layers; the three fully connected layers of ImageNet VGG are
replaced by a single Linear, so "VGG-8" has 6 convolutions + 1 Linear (the name counts the FC layers
the ImageNet version would have)::

    x (N, C_in, 32, 32)
    block0 -> ReLU -> maxpool     (N,  64, 16, 16)
    block1 -> ReLU -> maxpool     (N, 128,  8,  8)
    block2 -> ReLU -> maxpool     (N, 256,  4,  4)
    block3 -> ReLU                (N, 512,  4,  4)   (max-pooled only for 64x64 inputs)
    block4 -> ReLU                (N, 512,  4,  4)   <- forward_features (SimKD's feat[-2])
    global average pool -> classifier (N, num_classes)

Each block's LAST ReLU is not a module of the block: the official code drops it from the
Sequential and applies it in forward. That keeps the state_dict keys (block0.0, block0.1, ...) of
the official checkpoints and lets the block output be read before the activation.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import ZooModel, register_model

# Output widths of the convolutions of each of the five blocks.
VGG8_CFG = ((64,), (128,), (256,), (512,), (512,))
VGG13_CFG = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))


def _make_block(widths: Sequence[int], in_channels: int) -> nn.Sequential:
    """[conv3x3(bias) - BN - ReLU] * len(widths), without the final ReLU."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                   nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers[:-1])  # the last ReLU is applied in forward


class VGG(ZooModel):
    """VGG-BN for small images.

    Args:
        cfg: five tuples of convolution widths (see VGG8_CFG, VGG13_CFG).
        num_classes: outputs of the final Linear `classifier`.
        in_channels: image channels; only the first convolution depends on it.
    """

    classifier_on_features = True

    def __init__(self, cfg: Sequence[Sequence[int]], num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if len(cfg) != 5:
            raise ValueError(f"VGG cfg needs 5 blocks, got {len(cfg)}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_channels = cfg[4][-1]

        self.block0 = _make_block(cfg[0], in_channels)
        self.block1 = _make_block(cfg[1], cfg[0][-1])
        self.block2 = _make_block(cfg[2], cfg[1][-1])
        self.block3 = _make_block(cfg[3], cfg[2][-1])
        self.block4 = _make_block(cfg[4], cfg[3][-1])
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[4][-1], num_classes)

        # Official initialisation: He-normal (fan_out) conv weights, zero biases, BN as the
        # identity, and a small N(0, 0.01) classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output after its ReLU (before the next pool), as the official feature list:
        [(N, 64, H, W), (N, 128, H/2, W/2), (N, 256, H/4, W/4), (N, 512, H/8, W/8), (N, 512, H/8, W/8)].

        The last one is `forward_features` (4x4 also for 64x64 inputs).
        """
        height = x.shape[2]
        f0 = F.relu(self.block0(x))
        f1 = F.relu(self.block1(self.pool0(f0)))
        f2 = F.relu(self.block2(self.pool1(f1)))
        f3 = F.relu(self.block3(self.pool2(f2)))
        x = self.pool3(f3) if height == 64 else f3  # official rule: a 4th pool only for 64x64 inputs
        return [f0, f1, f2, f3, F.relu(self.block4(x))]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 512, h, w) -> logits (N, num_classes): global average pool, then classifier."""
        pooled = torch.flatten(self.pool4(features), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.classifier


@register_model("vgg8")
def vgg8(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-8 with BN (official `vgg8` = RepDistiller's vgg8_bn): one conv per block."""
    return VGG(VGG8_CFG, num_classes=num_classes, in_channels=in_channels)


@register_model("vgg13")
def vgg13(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-13 with BN (official `vgg13` = RepDistiller's vgg13_bn): two convs per block."""
    return VGG(VGG13_CFG, num_classes=num_classes, in_channels=in_channels)
