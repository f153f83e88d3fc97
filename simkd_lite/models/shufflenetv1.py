"""ShuffleNet (V1) for CIFAR (Zhang et al., 2018), in the layout of the official SimKD / RepDistiller code.

ShuffleNet makes 1x1 convolutions cheap by splitting them into `groups` independent group
convolutions, and shuffles the channels between two group convs so that information still
mixes across groups::

    x (N, C_in, 32, 32)
    conv1 1x1 -BN-ReLU            (N,  24, 32, 32)
    layer1: 4 bottlenecks         (N, 240, 16, 16)
    layer2: 8 bottlenecks         (N, 480,  8,  8)
    layer3: 4 bottlenecks         (N, 960,  4,  4)   <- forward_features (SimKD's feat[-2])
    global average pool -> linear (N, num_classes)

The first bottleneck of each stage has stride 2; its shortcut is a 3x3 average pool that is
concatenated (not added) to the residual branch, so that branch only produces out - in channels.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import ZooModel, register_model


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups: (N, C, H, W) -> (N, C, H, W).

    Channels [a1 a2 | b1 b2 | c1 c2] (3 groups) become [a1 b1 c1 a2 b2 c2], so the next group
    convolution sees one channel from every previous group.
    """
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Bottleneck(nn.Module):
    """1x1 group conv - BN - ReLU - shuffle - 3x3 depthwise (stride s) - BN - ReLU - 1x1 group conv - BN.

    stride 1: ReLU(branch + x),           (N, C, H, W) -> (N, C, H, W), with out_planes == C;
    stride 2: ReLU(cat[branch, avgpool x]), (N, C, H, W) -> (N, out_planes + C, H/2, W/2).

    The bottleneck width is out_planes / 4. The very first 1x1 conv of the network (`first=True`)
    is not grouped: its 24 input channels are too few to split (official rule: in_planes == 24).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int, first: bool = False):
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        g = 1 if first else groups
        self.shuffle_groups = g
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1,
                               groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        # An empty Sequential is the identity; the pool has no parameters, so no state_dict keys.
        self.shortcut = nn.Sequential()
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.shuffle_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        out = torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut
        return F.relu(out)


class ShuffleNetV1(ZooModel):
    """ShuffleNet V1 for small images.

    Args:
        out_planes: output channels of the three stages (240, 480, 960 for groups=3).
        num_blocks: bottlenecks per stage (4, 8, 4).
        groups: groups of the 1x1 convolutions (3).
        num_classes: outputs of the final Linear `linear`.
        in_channels: image channels; only `conv1` depends on it.
    """

    classifier_on_features = True

    def __init__(self, out_planes: Sequence[int] = (240, 480, 960), num_blocks: Sequence[int] = (4, 8, 4),
                 groups: int = 3, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if len(out_planes) != 3 or len(num_blocks) != 3:
            raise ValueError("ShuffleNetV1 has exactly three stages")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_channels = out_planes[-1]

        stem = 24
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        planes = stem
        for i, (out, n) in enumerate(zip(out_planes, num_blocks)):
            blocks = []
            for j in range(n):
                if j == 0:  # stride 2, concatenated shortcut: the branch adds out - planes channels
                    blocks.append(Bottleneck(planes, out - planes, stride=2, groups=groups,
                                             first=(i == 0)))
                else:
                    blocks.append(Bottleneck(out, out, stride=1, groups=groups))
            planes = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(out_planes[-1], num_classes)
        # The official ShuffleNet keeps PyTorch's default initialisation.

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem (N, 24, H, W), layer1, layer2, layer3 (N, 960, ceil(H/8), ceil(W/8)) = forward_features]."""
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        return [f0, f1, f2, self.layer3(f2)]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, 960, h, w) -> logits (N, num_classes): global average pool, then linear."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        return pooled if pre_logits else self.linear(pooled)

    def get_classifier(self) -> nn.Linear:
        return self.linear


@register_model("ShuffleV1")
def shufflev1(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV1:
    """The official "ShuffleV1": groups 3, stages (240, 480, 960) x (4, 8, 4) blocks."""
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), groups=3, num_classes=num_classes,
                        in_channels=in_channels)
