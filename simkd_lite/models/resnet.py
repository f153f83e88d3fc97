"""CIFAR ResNets (He et al., 2016), in the layout of the official SimKD / RepDistiller code.

A CIFAR ResNet is a 3x3 stem convolution followed by three stages of BasicBlocks::

    x (N, C_in, 32, 32)
    conv1 3x3 -> bn1 -> ReLU        (N, f0, 32, 32)
    layer1: n blocks, stride 1      (N, f1, 32, 32)
    layer2: n blocks, stride 2      (N, f2, 16, 16)
    layer3: n blocks, stride 2      (N, f3,  8,  8)   <- forward_features (SimKD's feat[-2])
    global average pool -> fc       (N, num_classes)

with ``num_filters = [f0, f1, f2, f3]`` and ``n = (depth - 2) // 6`` blocks per stage
(each block has two convolutions: 3 stages * n * 2 + stem + fc = depth layers).

The official names encode the widths: "x4" means [32, 64, 128, 256], "x2" means [16, 32, 64, 128],
no suffix means the classic [16, 16, 32, 64]. resnet14x2 / resnet38x2 / resnet38 are the models older
papers call WRN-16-2 / WRN-40-2 / WRN-40-1 (up to three extra BN layers in the shortcuts).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import ZooModel, register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows, whose shift makes a bias redundant)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, add the shortcut, then ReLU.

    (N, in_planes, H, W) -> (N, planes, H / stride, W / stride).

    ``downsample`` (a 1x1 conv + BN) replaces the identity shortcut whenever the block changes
    the resolution or the width, so that the two branches can be added.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        # The ReLU comes AFTER the addition (the original "post-activation" ResNet),
        # so every block output, and hence SimKD's feature map, is non-negative.
        return F.relu(out + shortcut)


def _make_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` BasicBlocks; only the first one may change the stride and the width."""
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(in_planes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class CifarResNet(ZooModel):
    """ResNet for small images; any depth = 6n + 2 and any four widths.

    Args:
        depth: total number of layers, 6n + 2 (8, 14, 20, 32, 38, 110, 116, ...).
        num_filters: [stem, stage1, stage2, stage3] widths.
        num_classes: outputs of the final Linear `fc`.
        in_channels: image channels; only `conv1` depends on it.
    """

    classifier_on_features = True  # fc acts on the pooled forward_features: usable as a SimKD teacher

    def __init__(self, depth: int, num_filters: Sequence[int], num_classes: int = 100,
                 in_channels: int = 3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if len(num_filters) != 4:
            raise ValueError(f"num_filters needs 4 widths [stem, s1, s2, s3], got {list(num_filters)}")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_filters = list(num_filters)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_channels = num_filters[3]

        self.conv1 = conv3x3(in_channels, num_filters[0])
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = _make_stage(num_filters[0], num_filters[1], n, stride=1)
        self.layer2 = _make_stage(num_filters[1], num_filters[2], n, stride=2)
        self.layer3 = _make_stage(num_filters[2], num_filters[3], n, stride=2)
        # Adaptive pooling: equal to the official 8x8 average at 32x32 input, and it also
        # accepts 28x28 (Fashion-MNIST) or 8x8 (digits) images.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3], num_classes)

        # Official initialisation: He-normal (fan_out) convolutions, BN as the identity.
        # The Linear layer keeps PyTorch's default initialisation, as in the official code.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem (N, f0, H, W), layer1 (N, f1, H, W), layer2 (N, f2, H/2, W/2), layer3 (N, f3, H/4, W/4)].

        The last one (ceil(H/4) x ceil(W/4)) is `forward_features`, the map SimKD aligns.
        """
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        return [f0, f1, f2, self.layer3(f2)]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, num_filters[3], h, w) -> logits (N, num_classes): global average pool, then fc.

        `pre_logits=True` stops after the pool: (N, num_filters[3]), the official `feat[-1]`.
        """
        pooled = torch.flatten(self.avgpool(features), 1)
        return pooled if pre_logits else self.fc(pooled)

    def get_classifier(self) -> nn.Linear:
        """The final Linear layer (the classifier SimKD reuses when this net is the teacher)."""
        return self.fc


def _resnet(name: str, depth: int, num_filters: Sequence[int]) -> None:
    """Register `name` as CifarResNet(depth, num_filters): one line per model below."""
    register_model(name, partial(CifarResNet, depth=depth, num_filters=tuple(num_filters)))


X1 = (16, 16, 32, 64)      # the classic CIFAR ResNet widths
X2 = (16, 32, 64, 128)     # "x2": stages twice as wide
X4 = (32, 64, 128, 256)    # "x4": stem and stages four times as wide (stem doubled, as in RepDistiller)

# --- The official SimKD CIFAR-100 models -------------------------------------------------------
_resnet("resnet8x4", 8, X4)        # the standard student; feature 256 x 8 x 8
_resnet("resnet14x4", 14, X4)
_resnet("resnet32x4", 32, X4)      # the standard teacher; feature 256 x 8 x 8
_resnet("resnet38x4", 38, X4)      # ~ WRN-40-4
_resnet("resnet14x2", 14, X2)      # ~ WRN-16-2
_resnet("resnet38x2", 38, X2)      # ~ WRN-40-2
_resnet("resnet110x2", 110, X2)
_resnet("resnet38", 38, X1)        # ~ WRN-40-1
_resnet("resnet110", 110, X1)
_resnet("resnet116", 116, X1)

# --- Small models for the CPU "quick" profile (ours; same class, fewer or thinner layers) -----
_resnet("resnet8", 8, X1)          # 1 block per stage
_resnet("resnet14", 14, X1)        # 2 blocks per stage
_resnet("resnet20", 20, X1)        # 3 blocks per stage: the classic ResNet-20
_resnet("resnet8x2", 8, X2)        # resnet8 at twice the width
_resnet("resnet8_w8", 8, (8, 8, 16, 32))  # resnet8 at half the width: a very thin student
