"""Looking inside trained models: pooled features, 2-D projections, feature agreement.

Used by the demo's feature-space figure and by the feature-space notebook. Nothing here trains.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor, nn

from simkd_lite.distillers.losses import global_pool


@torch.no_grad()
def pooled_features(model: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """(N, C) globally pooled `forward_features` of a zoo model (the teacher or a plain student)."""
    model.eval()
    return torch.cat([global_pool(model.forward_features(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def simkd_pooled_features(student, images: Tensor, batch_size: int = 1000) -> Tensor:
    """(N, C_t) pooled *projected* maps of a SimKD student: exactly what the teacher head reads."""
    student.eval()
    head = student.head if hasattr(student, "head") else student.teacher_head
    captured = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        for i in range(0, len(images), batch_size):
            student(images[i:i + batch_size])
    finally:
        hook.remove()
    return torch.cat(captured)


def project_2d(features: Tensor | np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, C) -> (N, 2) with scikit-learn's PCA (fast) or t-SNE (slower, local structure)."""
    x = np.asarray(features, dtype=np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        return TSNE(n_components=2, init="pca", perplexity=min(30.0, max(5.0, len(x) / 10)),
                    random_state=seed).fit_transform(x)
    raise ValueError(f"Unknown projection {method!r}: use 'pca' or 'tsne'.")
