"""Training data kept on the device, augmented there in whole batches.

    augment = GpuAugment(mean, std, padding=4)                 # crop + flip + normalise on the device
    batches = DeviceTensorBatches(*to_uint8_tensors(train_set), augment, 64, seed=0, device=device)
    for x, y, _ in batches.epoch(epoch):
        ...

The training set stays on the device as uint8 (CIFAR-100: 150 MB) and the RandomCrop(pad 4) + flip +
normalise of the official recipe runs batch-wise there, so no DataLoader workers, PIL images or
host-to-device copies are left in the loop. The result equals torchvision's per-image transforms
(tests/test_fast.py), and the random draws depend only on (seed, epoch), so a resumed run replays them.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset

from simkd_lite.training import distributed as ddp
from simkd_lite.training.runtime import epoch_order


# ============================================================================ augmentation on the device


def crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, padding: int, size: tuple[int, int] | None = None) -> Tensor:
    """Zero-pad by `padding`, crop at per-sample `offsets` (N, 2) = (top, left), mirror where `flips` (N,).

    One gather for the whole batch: rows (N, h) = top + arange(h); columns (N, w) = left + arange(w),
    reversed for flipped samples (flip after crop = read the crop's columns backwards).
    Same result as torchvision's RandomCrop(size, padding) then RandomHorizontalFlip per image.
    """
    n, c, height, width = images.shape
    h, w = size if size is not None else (height, width)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    device = images.device
    rows = offsets[:, 0:1] + torch.arange(h, device=device)
    forward_cols = torch.arange(w, device=device)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], forward_cols.flip(0), forward_cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def normalize_uint8(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std: ToTensor + Normalize, in the same order of operations."""
    x = images.float().div_(255.0)
    return x.sub_(mean.to(x.device).view(1, -1, 1, 1)).div_(std.to(x.device).view(1, -1, 1, 1))


class GpuAugment(nn.Module):
    """The official train transform for a whole uint8 batch on its device: crop(pad) + flip + normalise.

    images uint8 (N, C, H, W) -> float32 (N, C, h, w), (h, w) = `size` or (H, W).
    `padding=0, flip=False` gives the test transform (ToTensor + Normalize).
    Randomness comes from `generator` (a torch.Generator on the images' device) when given, so a
    seeded generator gives the same batch every time; draws: top offsets, left offsets, then flips.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 4, flip: bool = True,
                 size: int | tuple[int, int] | None = None, flip_p: float = 0.5):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.padding, self.flip, self.flip_p = int(padding), bool(flip), float(flip_p)
        self.size = (size, size) if isinstance(size, int) else size

    def sample(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-sample (top, left) offsets (N, 2) in [0, H + 2p - h] x [0, W + 2p - w], and flips (N,)."""
        n, _, height, width = images.shape
        h, w = self.size or (height, width)
        if h > height + 2 * self.padding or w > width + 2 * self.padding:
            raise ValueError(f"crop {h}x{w} is larger than the padded image {height + 2 * self.padding}x"
                             f"{width + 2 * self.padding}")
        device = images.device
        top = torch.randint(0, height + 2 * self.padding - h + 1, (n,), generator=generator, device=device)
        left = torch.randint(0, width + 2 * self.padding - w + 1, (n,), generator=generator, device=device)
        if self.flip:
            flips = torch.rand(n, generator=generator, device=device) < self.flip_p
        else:
            flips = torch.zeros(n, dtype=torch.bool, device=device)
        return torch.stack([top, left], 1), flips

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"GpuAugment expects uint8 images (N, C, H, W), got {images.dtype}")
        identity = self.padding == 0 and not self.flip and self.size in (None, tuple(images.shape[-2:]))
        if not identity:
            offsets, flips = self.sample(images, generator)
            images = crop_flip(images, offsets, flips, self.padding, self.size)
        return normalize_uint8(images, self.mean, self.std)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, flip={self.flip}, size={self.size}"


# ============================================================================ data kept on the device


def to_uint8_tensors(dataset) -> tuple[Tensor, Tensor]:
    """(images uint8 (N, C, H, W), labels int64 (N,)) straight from a torchvision dataset's arrays.

    Works for datasets with `.data` + `.targets` (or `.labels`): CIFAR-10/100 (`.data` numpy N,H,W,C),
    Fashion-MNIST / MNIST (`.data` tensor N,H,W), SVHN-style N,C,H,W arrays, and `Subset`s of them
    (nested too). The dataset's own transform is NOT applied: that is the point (use `GpuAugment`).
    """
    indices = None
    while isinstance(dataset, Subset):
        idx = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        indices = idx if indices is None else idx[indices]
        dataset = dataset.dataset
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", getattr(dataset, "labels", None))
    if data is None or targets is None:
        raise TypeError(f"{type(dataset).__name__} has no `.data` and `.targets` arrays of raw uint8 images; "
                        "to_uint8_tensors works on torchvision-style datasets (CIFAR, Fashion-MNIST) and Subsets.")
    images = torch.from_numpy(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else torch.as_tensor(data)
    if images.dtype != torch.uint8:
        raise TypeError(f"{type(dataset).__name__}.data holds {images.dtype}, not uint8 raw images.")
    if images.dim() == 3:  # (N, H, W) grayscale
        images = images.unsqueeze(1)
    elif images.dim() == 4 and images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        images = images.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif images.dim() != 4:
        raise TypeError(f"cannot read images of shape {tuple(images.shape)}")
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return images.contiguous(), labels


def _augment_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    # A second stream, on the device, that also depends only on (seed, epoch): resumes replay it.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 0x5EED)


class DeviceTensorBatches:
    """`TensorBatches` with the data already on `device` and augmentation done there.

    Same interface (`len`, `epoch(epoch)` -> (x, y, None) batches) and the same shuffling order
    for the same (seed, epoch). With `augment=None` the stored images are yielded as they are
    (pass float, already normalised tensors); with a `GpuAugment` they are uint8 and every batch
    is augmented with a device generator seeded from (seed, epoch).
    """

    def __init__(self, images: Tensor, labels: Tensor, augment: GpuAugment | None, batch_size: int, seed: int,
                 device: torch.device | str):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.augment = augment.to(self.device) if augment is not None else None
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.labels) / ddp.world_size()) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, None]]:
        order = epoch_order(len(self.labels), self.seed, epoch).to(self.device)
        generator = _augment_generator(self.seed, epoch, self.device) if self.augment is not None else None
        for idx in order.split(self.batch_size):
            x = self.images[idx]
            if self.augment is not None:
                x = self.augment(x, generator)
            yield x, self.labels[idx], None
