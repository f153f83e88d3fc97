"""The batch stream of a run: (x, y, cached teacher outputs or None) per step, by `.epoch(e)`.

    batches = make_batches(distiller, train_set, config, device, gpu_augment)
    for x, y, teacher_out in batches.epoch(epoch): ...

On-device augmentation for uint8 datasets (`device_data.DeviceTensorBatches`), a DataLoader for the
others, fixed tensors (and optionally teacher outputs cached once) without augmentation. The order and
the augmentation depend only on (seed, epoch): runs with the same seed see the same batches, and a
resumed run replays its epoch exactly.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import transforms

from simkd_lite.distillers import Distiller, FrozenTeacher, TeacherOutputs
from simkd_lite.training import distributed as ddp
from simkd_lite.training.device_data import DeviceTensorBatches, GpuAugment, to_uint8_tensors
from simkd_lite.training.runtime import epoch_generator, epoch_order


def materialize(dataset: Dataset, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """All (image, label) pairs of a deterministic dataset as two tensors (N, C, H, W), (N,).

    A torchvision dataset whose transform is just ToTensor + Normalize is converted in one vectorised
    step from its uint8 array (the same float operations, so the same bits, ~50x faster than going
    image by image through PIL); anything else goes through its own transform.
    """
    fast = _normalized_uint8(dataset)
    if fast is not None:
        return fast
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def cache_teacher_outputs(teacher: FrozenTeacher, images: Tensor, device: torch.device,
                          batch_size: int = 1000, hint_layer: int | None = None) -> TeacherOutputs:
    """One frozen-teacher pass over fixed images; the result is reused every epoch.

    With `hint_layer` (FitNet's) the map at that index of the official feature list is cached too.
    """
    outs = [teacher(images[i:i + batch_size].to(device), hint_layer) for i in range(0, len(images), batch_size)]
    hint = torch.cat([o.hint for o in outs]).cpu() if hint_layer is not None else None
    return TeacherOutputs(torch.cat([o.features for o in outs]).cpu(), torch.cat([o.logits for o in outs]).cpu(), hint)


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, optionally with cached teacher outputs."""

    def __init__(self, images: Tensor, labels: Tensor, teacher: TeacherOutputs | None, batch_size: int, seed: int):
        self.images, self.labels, self.teacher = images, labels, teacher
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.labels) / ddp.world_size()) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, TeacherOutputs | None]]:
        order = epoch_order(len(self.labels), self.seed, epoch)
        for idx in order.split(self.batch_size):
            cached = self.teacher.select(idx) if self.teacher else None
            yield self.images[idx], self.labels[idx], cached


class LoaderBatches:
    """Shuffled mini-batches from a Dataset whose transforms augment every time."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, num_workers: int, pin_memory: bool):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.dataset) / ddp.world_size()) / self.batch_size)

    def epoch(self, epoch: int):
        if ddp.is_distributed():
            sampler = DistributedSampler(self.dataset, ddp.world_size(), ddp.rank(), shuffle=True, seed=self.seed)
            sampler.set_epoch(epoch)
            options = {"sampler": sampler}
        else:
            options = {"shuffle": True, "generator": epoch_generator(self.seed, epoch)}
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, **options)
        for x, y in loader:
            yield x, y, None


def make_batches(distiller: Distiller, train_set: Dataset, config, device: torch.device,
                 gpu_augment: GpuAugment | None = None, train_tensors: tuple[Tensor, Tensor] | None = None,
                 teacher_cache: TeacherOutputs | None = None, say: Callable[[str], None] = lambda msg: None):
    """The batch stream of a run: (x, y, cached teacher outputs or None) per step, by `.epoch(e)`.

    On-device augmentation for uint8 datasets (`config.device_data`), a DataLoader for the others,
    fixed tensors (and optionally cached teacher outputs) without augmentation. The order and the
    augmentation depend only on (seed, epoch), so runs with the same seed see the same batches.
    """
    uint8_data = _uint8_tensors(train_set) if config.augment and config.device_data and gpu_augment else None
    if uint8_data is not None:
        return DeviceTensorBatches(*uint8_data, gpu_augment, config.batch_size, config.seed, device)
    if config.augment:
        return LoaderBatches(train_set, config.batch_size, config.seed, config.num_workers,
                             pin_memory=device.type == "cuda")
    train_x, train_y = train_tensors if train_tensors is not None else materialize(train_set)
    cached = teacher_cache if distiller.teacher is not None else None
    hint_layer = distiller.teacher_hint_layer
    if cached is not None and hint_layer is not None and cached.hint is None:
        cached = None  # a shared cache without this method's hint map: cache again, with it
    if cached is None and (config.cache_teacher or teacher_cache is not None) and distiller.teacher is not None:
        start = time.perf_counter()
        cached = cache_teacher_outputs(distiller.teacher, train_x, device, config.eval_batch_size, hint_layer)
        hint = f" (+ hint layer {hint_layer})" if hint_layer is not None else ""
        say(f"cached teacher outputs{hint} for {len(train_x)} images in {time.perf_counter() - start:.1f}s")
    return TensorBatches(train_x, train_y, cached, config.batch_size, config.seed)


def _uint8_tensors(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """The raw uint8 images and labels behind a torchvision dataset (or Subset), if it has them."""
    try:
        return to_uint8_tensors(dataset)
    except TypeError:  # e.g. digits, which stores float images
        return None


def _normalized_uint8(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """`materialize`'s fast path: (uint8 / 255 - mean) / std when that is all the transform does."""
    base = dataset
    while isinstance(base, Subset):
        base = base.dataset
    steps = getattr(getattr(base, "transform", None), "transforms", None)
    if (getattr(base, "target_transform", None) is not None or steps is None or len(steps) != 2
            or type(steps[0]) is not transforms.ToTensor or type(steps[1]) is not transforms.Normalize):
        return None
    raw = _uint8_tensors(dataset)
    if raw is None:
        return None
    images, labels = raw
    normalize = steps[1]
    mean = torch.as_tensor(normalize.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=torch.float32).view(-1, 1, 1)
    return images.float().div(255).sub(mean).div(std), labels
