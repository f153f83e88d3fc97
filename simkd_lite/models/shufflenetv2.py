"""ShuffleNetV2 for CIFAR (Ma et al., 2018), in the layout of the official SimKD / RepDistiller code.

A ShuffleNetV2 basic block splits its channels in two halves: one half passes unchanged, the other
goes through 1x1 - 3x3 depthwise - 1x1 convolutions; the halves are concatenated and shuffled
(groups 2) so the untouched half is processed by the next block. A down-sampling block has two
stride-2 branches, each producing half of the output channels::

    x (N, C_in, 32, 32)
    conv1 1x1 -BN-ReLU                 (N,   24, 32, 32)
    layer1: DownBlock + 3 BasicBlocks  (N, c[0], 16, 16)
    layer2: DownBlock + 7 BasicBlocks  (N, c[1],  8,  8)
    layer3: DownBlock + 3 BasicBlocks  (N, c[2],  4,  4)   <- forward_features (SimKD's feat[-2])
    conv2 1x1 -bn2-ReLU                (N, c[3],  4,  4)
    global average pool -> linear      (N, num_classes)

c = (116, 232, 464, 1024) for "ShuffleV2" (net size 1) and (176, 352, 704, 1024) for
"ShuffleV2_1_5". As with MobileNetV2, the classifier acts on conv2's channels, not on the map SimKD
aligns, so `classifier_on_features` is False: this net can only be a SimKD *student*.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import ZooModel, register_model
from .shufflenetv1 import channel_shuffle


def _dwconv3x3(channels: int, stride: int) -> nn.Conv2d:
    """Depthwise 3x3 convolution: one filter per channel."""
    return nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, groups=channels, bias=False)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class BasicBlock(nn.Module):
    """Split, transform one half, concatenate, shuffle: (N, C, H, W) -> (N, C, H, W).

    Transform: 1x1 - BN - ReLU - 3x3 depthwise - BN - 1x1 - BN - ReLU (no ReLU after the depthwise).
    """

    def __init__(self, channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split_ratio = split_ratio
        c = int(channels * split_ratio)
        self.conv1 = _conv1x1(c, c)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = _dwconv3x3(c, stride=1)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = _conv1x1(c, c)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = int(x.shape[1] * self.split_ratio)
        kept, transformed = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(transformed)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([kept, out], 1), groups=2)


class DownBlock(nn.Module):
    """Two stride-2 branches, concatenated and shuffled: (N, C_in, H, W) -> (N, C_out, H/2, W/2).

    left:  3x3 depthwise s2 - BN - 1x1 - BN - ReLU                     -> C_out / 2 channels
    right: 1x1 - BN - ReLU - 3x3 depthwise s2 - BN - 1x1 - BN - ReLU   -> C_out / 2 channels
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        # left branch
        self.conv1 = _dwconv3x3(in_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = _conv1x1(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch
        self.conv3 = _conv1x1(in_channels, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = _dwconv3x3(mid, stride=2)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = _conv1x1(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), groups=2)


class ShuffleNetV2(ZooModel):
    """ShuffleNetV2 for small images.

    Args:
        out_channels: (stage1, stage2, stage3, conv2) widths.
        num_blocks: basic blocks per stage after its DownBlock, (3, 7, 3) officially.
        num_classes: outputs of the final Linear `linear`.
        in_channels: image channels; only `conv1` depends on it.
    """

    classifier_on_features = False  # the classifier sees conv2's channels, not forward_features

    def __init__(self, out_channels: Sequence[int] = (116, 232, 464, 1024),
                 num_blocks: Sequence[int] = (3, 7, 3), num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if len(out_channels) != 4 or len(num_blocks) != 3:
            raise ValueError("ShuffleNetV2 needs 4 widths (3 stages + conv2) and 3 block counts")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_channels = out_channels[2]

        stem = 24
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        planes = stem
        for i in range(3):
            blocks = [DownBlock(planes, out_channels[i])]
            blocks += [BasicBlock(out_channels[i]) for _ in range(num_blocks[i])]
            planes = out_channels[i]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.conv2 = _conv1x1(out_channels[2], out_channels[3])
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)
        # The official ShuffleNetV2 keeps PyTorch's default initialisation.

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem, layer1, layer2, layer3 (N, c[2], ceil(H/8), ceil(W/8))]; the last, before conv2/bn2,
        is `forward_features`."""
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        return [f0, f1, f2, self.layer3(f2)]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, c[2], h, w) -> logits (N, num_classes): conv2-bn2-ReLU, pool, linear.

        `pre_logits=True` stops after the pool: (N, c[3]), the official `feat[-1]`.
        """
        x = F.relu(self.bn2(self.conv2(features)))
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return pooled if pre_logits else self.linear(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.linear


@register_model("ShuffleV2")
def shufflev2(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV2:
    """The official "ShuffleV2" (net size 1.0)."""
    return ShuffleNetV2((116, 232, 464, 1024), (3, 7, 3), num_classes=num_classes, in_channels=in_channels)


@register_model("ShuffleV2_1_5")
def shufflev2_1_5(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV2:
    """The official "ShuffleV2_1_5" (net size 1.5)."""
    return ShuffleNetV2((176, 352, 704, 1024), (3, 7, 3), num_classes=num_classes, in_channels=in_channels)
