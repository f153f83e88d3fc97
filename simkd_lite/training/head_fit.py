"""Fitting a new classifier on a frozen network's pooled features (a linear probe).

Used for a teacher trained on other classes (an ImageNet torchvision model: 1000 classes) before it can
teach on a data set: its features stay frozen, so they are computed ONCE for every training image, and
only a new nn.Linear is trained on them with cross-entropy (seeded; a few seconds on a CPU).
This is a linear probe on fixed tensors, not a training run: no distiller, no run folder, no resume,
so it does not go through `training.loop.fit` (the one loop of distillers and run folders).

    feats = pooled_features(teacher, train_x, device)          # (N, C): what the classifier reads
    head = linear_probe(feats, train_y, num_classes)        # nn.Linear(C, num_classes)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class HeadFitConfig:
    """The probe's recipe: Adam on the fixed features, full passes in shuffled mini-batches."""

    epochs: int = 30
    lr: float = 0.01
    batch_size: int = 256
    weight_decay: float = 0.0
    seed: int = 0


@torch.no_grad()
def pooled_features(model: nn.Module, images: Tensor, device: torch.device, batch_size: int = 256) -> Tensor:
    """(N, C, H, W) images -> (N, C_pooled) on the CPU: `forward_head(forward_features(x), pre_logits=True)`,
    the vector the model's classifier reads, in eval mode."""
    was_training = model.training
    model.eval().to(device)
    chunks = [model.forward_head(model.forward_features(images[i:i + batch_size].to(device)), pre_logits=True).cpu()
              for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(chunks)


def linear_probe(features: Tensor, labels: Tensor, num_classes: int, config: HeadFitConfig = HeadFitConfig(),
                    log=None) -> nn.Linear:
    """nn.Linear(C, num_classes) trained with cross-entropy on fixed (N, C) features; labels (N,).

    Seeded by `config.seed` without touching the global RNG; `log` gets a progress line every few epochs.
    """
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = nn.Linear(features.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    features, labels = features.float(), labels.long()
    every = max(1, config.epochs // 5)
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(features), generator=generator)
        total, correct = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            logits = head(features[index])
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            correct += (logits.argmax(1) == labels[index]).sum().item()
        if log and (epoch % every == 0 or epoch == config.epochs):
            log(f"fit-teacher-head: epoch {epoch}/{config.epochs} loss {total / len(order):.4f} "
                f"train top-1 {100.0 * correct / len(order):.2f}%")
    return head.eval().requires_grad_(False)
