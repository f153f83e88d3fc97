"""The loss functions and the one geometric helper shared by the distillers.

Every function is a few lines on purpose: these are the equations of the tutorial.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def align_feature_maps(feat_s: Tensor, feat_t: Tensor) -> tuple[Tensor, Tensor]:
    """SimKD's spatial alignment of two square maps (N, C, H, W).

    The larger map is adaptive-average-pooled down to the smaller one's size, so no
    information is invented by upsampling. Equal sizes are returned untouched.
    Returns (student_map, teacher_map) with the same H and W.
    """
    size_s, size_t = feat_s.shape[-1], feat_t.shape[-1]
    if size_s > size_t:
        return F.adaptive_avg_pool2d(feat_s, size_t), feat_t
    if size_t > size_s:
        return feat_s, F.adaptive_avg_pool2d(feat_t, size_s)
    return feat_s, feat_t


def feature_l2_loss(projected_s: Tensor, target_t: Tensor) -> Tensor:
    """SimKD's only loss: the mean squared error over all N*C*H*W elements."""
    return F.mse_loss(projected_s, target_t)


def kd_loss(logits_s: Tensor, logits_t: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton's KD: KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch.

    `reduction='batchmean'` divides the summed KL by N only. The tempting `'mean'`
    would also divide by the number of classes: a classic, silent bug.
    """
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    p_t = F.softmax(logits_t / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Plain cross-entropy with the labels, named for symmetry with the other losses."""
    return F.cross_entropy(logits, targets)


def global_pool(feat: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C): the global average pool in front of every classifier."""
    return torch.flatten(F.adaptive_avg_pool2d(feat, 1), 1)
