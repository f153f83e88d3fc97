"""How fast is a SimKD step, and a deployed SimKD student, compared with the official way?

    result = run_bench("resnet32x4", "resnet8x4", batch_size=64, steps=20)
    result["train_speedup"], result["infer_speedup"]

Both sides train the same models from the same initial weights on the same random uint8 images,
augmented by the same on-device crop + flip + normalise call, so the ratio isolates the model path:

train, fast      : `prepare_teacher` (folded BN, channels_last, optional torch.compile) forward_features
                   under no_grad -> `SimKDDistiller.forward_train` -> SGD step, via `step.distill_step`
                   (the loop body of `loop.fit`); student + projector in channels_last when enabled.
train, baseline  : the official loop: plain eval teacher (NCHW, BN unfolded), full forward under no_grad;
                   full student forward (logits computed, unused); projector; MSE; SGD.
infer, fast      : the deployed `SimKDStudent` (encoder -> projector -> teacher head), BN folded,
                   channels_last, inference_mode; no teacher network at all.
infer, baseline  : the official evaluation: student forward_features + a FULL teacher forward (only to
                   align shapes) + projector + teacher head, under no_grad.

Random data is fine for speed: no op here depends on the pixel values. `first_step_loss` of the two
sides is also reported: with the same weights and batch they must agree (up to rounding / bf16),
which shows the fast path computes the same thing.
"""
from __future__ import annotations

import copy
import itertools
import os
import platform
import statistics
import time
from typing import Callable

import torch
from torch import nn

from simkd_lite.errors import SimKDLiteError

from simkd_lite.distillers import SimKDProjector, create_distiller
from simkd_lite.training.device_data import DeviceTensorBatches, GpuAugment
from simkd_lite.training.step import autocast_context, distill_step
from simkd_lite.training.teacher_prep import fold_batchnorm, maybe_compile, prepare_teacher, time_first_call
from simkd_lite.training.runtime import select_device
from simkd_lite.training.loop import TrainConfig, make_optimizer
from simkd_lite.models import create_model

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(step: Callable[[], int], steps: int, device: torch.device) -> float:
    """Images per second over `steps` calls of `step` (which returns its batch size)."""
    _sync(device)
    started = time.perf_counter()
    images = sum(step() for _ in range(steps))
    _sync(device)
    return images / (time.perf_counter() - started)


def _alternate(fast: Callable[[], int], base: Callable[[], int] | None, warmup: int, repeats: int, steps: int,
               device: torch.device) -> tuple[list[float], list[float]]:
    """Images/s of `fast` and `base` (None: skipped), `repeats` times each, alternating against a shared
    machine's drift, after `warmup` untimed calls of each."""
    paths = [fast] + ([base] if base is not None else [])
    for _ in range(warmup):
        for path in paths:
            path()
    rates: list[list[float]] = [[], []]
    for _ in range(repeats):
        for i, path in enumerate(paths):
            rates[i].append(_throughput(path, steps, device))
    return rates[0], rates[1]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str | None = None) -> dict:
    """Where a benchmark ran: device, its name, torch/CUDA versions, threads, CPU count, platform."""
    device = select_device(device if device is None or isinstance(device, str) else str(device))
    return {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


def _batches(images, labels, augment, batch_size, seed, device):
    """An endless stream of (x, y) from `DeviceTensorBatches`, epoch after epoch."""
    data = DeviceTensorBatches(images, labels, augment, batch_size, seed, device)
    for epoch in itertools.count():
        for x, y, _ in data.epoch(epoch):
            yield x, y


def run_bench(teacher: str | nn.Module, student: str, *, batch_size: int = 64, steps: int = 20, warmup: int = 3,
              device: str | None = None, image_size: int = 32, in_channels: int = 3, num_classes: int = 100,
              factor: int = 2, fold_bn: bool = True, channels_last: bool = True, compile_teacher: bool = False,
              compile_student: bool = False, amp: bool = False, baseline: bool = True, repeats: int = 1,
              seed: int = 0, compile_options: dict | None = None) -> dict:
    """Measure SimKD training and inference throughput, fast path vs the official path; see the module doc.

    teacher: a model name or a model (it is copied, never changed); student: a model name.
    steps / warmup: timed and untimed steps per measurement. repeats: measure fast and baseline in
        alternation `repeats` times and report the median (robust to a shared machine's noise).
    amp: bf16 autocast on CUDA for the fast side (the baseline stays float32 like the official code;
        a no-op on CPU, see `autocast_context`).
    Returns a JSON-serialisable dict: `*_images_per_s`, `train_speedup`, `infer_speedup` (None without
    baseline), `compile_seconds` (None unless compiling), `first_step_loss`, settings and machine info.
    """
    if steps < 1 or warmup < 0 or repeats < 1:
        raise ValueError(f"need steps >= 1, warmup >= 0, repeats >= 1; got {steps}, {warmup}, {repeats}")
    dev = select_device(device)
    settings = {"teacher": teacher if isinstance(teacher, str) else getattr(teacher, "model_name", type(teacher).__name__),
                "student": student, "batch_size": batch_size, "steps": steps, "warmup": warmup,
                "repeats": repeats, "image_size": image_size, "in_channels": in_channels,
                "num_classes": num_classes, "factor": factor, "fold_bn": fold_bn, "channels_last": channels_last,
                "compile_teacher": compile_teacher, "compile_student": compile_student, "amp": amp,
                "baseline": baseline, "seed": seed}
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official code; affects both sides alike (restored below)

    # ---- models: one initialisation, copied to both sides
    torch.manual_seed(seed)
    if isinstance(teacher, str):
        teacher_net = create_model(teacher, num_classes, in_channels)
    else:
        teacher_net = copy.deepcopy(teacher)
        num_classes = teacher_net.num_classes
        if teacher_net.in_channels != in_channels:  # its first conv reads teacher.in_channels-channel images
            raise SimKDLiteError(f"the teacher ({settings['teacher']}) reads {teacher_net.in_channels}-channel images, "
                                 f"so --in-channels {in_channels} does not fit it: pass --in-channels "
                                 f"{teacher_net.in_channels}")
    teacher_net = teacher_net.to(dev).eval().requires_grad_(False)
    student_net = create_model(student, num_classes, in_channels).to(dev)
    initial_student = copy.deepcopy(student_net)

    # ---- data: random uint8 images on the host, then the real device path
    g = torch.Generator().manual_seed(seed)
    n_images = batch_size * (warmup + steps)
    host_images = torch.randint(0, 256, (n_images, in_channels, image_size, image_size), dtype=torch.uint8, generator=g)
    host_labels = torch.randint(0, num_classes, (n_images,), generator=g)
    mean, std = (CIFAR100_MEAN, CIFAR100_STD) if in_channels == 3 else ((0.5,) * in_channels, (0.25,) * in_channels)
    augment = GpuAugment(mean, std, padding=4, flip=True)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    probe = GpuAugment(mean, std, padding=0, flip=False).to(dev)(host_images[:2].to(dev))
    eval_x = GpuAugment(mean, std, padding=0, flip=False).to(dev)(host_images[:batch_size].to(dev))

    compile_seconds: dict[str, float] = {}
    record = lambda key: (lambda seconds: compile_seconds.__setitem__(key, round(seconds, 3)))  # noqa: E731

    # ---- fast training side
    prepared = prepare_teacher(teacher_net, fold_bn=fold_bn, channels_last=channels_last, compile=compile_teacher,
                               example_input=probe, compile_options=compile_options)
    distiller = create_distiller("simkd", student_net, prepared, factor=factor).to(dev)
    initial_projector = copy.deepcopy(distiller.projector)
    if channels_last:
        distiller.to(memory_format=torch.channels_last)
    fast_optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], TrainConfig())
    if compile_student:
        distiller.forward_train = time_first_call(
            maybe_compile(distiller.forward_train, True, **(compile_options or {})), record("student_train"))
    distiller.train()
    fast_data = _batches(host_images, host_labels, augment, batch_size, seed, dev)
    first_loss: dict[str, float] = {}

    def fast_step() -> int:
        x, y = next(fast_data)
        x = x.contiguous(memory_format=memory_format)
        _, _, loss = distill_step(distiller.forward_train, x, y, fast_optimizer, teacher=prepared, amp=amp)
        first_loss.setdefault("fast", loss.item())
        return len(y)

    # ---- baseline training side: the official loop on copies of the same initial weights
    if baseline:
        base_teacher = copy.deepcopy(teacher_net).eval()
        base_student = initial_student.train()
        base_projector = initial_projector.train()
        base_head = copy.deepcopy(teacher_net.get_classifier()).requires_grad_(False)
        base_optimizer = make_optimizer(list(base_student.parameters()) + list(base_projector.parameters()),
                                        TrainConfig())
        base_data = _batches(host_images, host_labels, augment, batch_size, seed, dev)

        def baseline_step() -> int:
            x, y = next(base_data)
            with torch.no_grad():
                feat_t = base_teacher.forward_features(x)
                base_teacher.forward_head(feat_t)  # the official teacher forward computes its logits too
            feat_s = base_student.forward_features(x)
            base_student.forward_head(feat_s)  # official: model_s(x, is_feat=True) returns logits as well
            projected, target, _ = base_projector(feat_s, feat_t, base_head)
            loss = SimKDProjector.loss(projected, target)
            base_optimizer.zero_grad()
            loss.backward()
            base_optimizer.step()
            first_loss.setdefault("baseline", loss.item())
            return len(y)

    train_fast, train_base = _alternate(fast_step, baseline_step if baseline else None, warmup, repeats, steps, dev)

    # ---- inference: the deployed student vs the official evaluation path
    deployed = distiller.export().eval()
    if fold_bn:
        deployed = fold_batchnorm(deployed, probe)
    deployed = deployed.to(memory_format=memory_format).requires_grad_(False)
    infer_fn = deployed.forward
    if compile_student:
        infer_fn = time_first_call(maybe_compile(infer_fn, True, **(compile_options or {})), record("student_infer"))
    fast_x = eval_x.contiguous(memory_format=memory_format)

    def fast_infer() -> int:
        with torch.inference_mode(), autocast_context(dev, amp):
            infer_fn(fast_x)
        return len(fast_x)

    if baseline:
        base_student.eval()
        base_projector.eval()

        def baseline_infer() -> int:
            with torch.no_grad():
                base_projector(base_student.forward_features(eval_x), base_teacher.forward_features(eval_x),
                               base_teacher.get_classifier())
            return len(eval_x)

    infer_fast, infer_base = _alternate(fast_infer, baseline_infer if baseline else None, warmup, repeats, steps,
                                        dev)

    torch.backends.cudnn.benchmark = cudnn_benchmark
    if prepared.compiled and prepared.compile_seconds is not None:
        compile_seconds["teacher"] = round(prepared.compile_seconds, 3)

    def median(values):
        return round(statistics.median(values), 2) if values else None

    result = {
        **settings,
        **machine_info(str(dev)),
        "train_images_per_s": median(train_fast),
        "baseline_train_images_per_s": median(train_base),
        "infer_images_per_s": median(infer_fast),
        "baseline_infer_images_per_s": median(infer_base),
        "train_speedup": round(median(train_fast) / median(train_base), 3) if baseline else None,
        "infer_speedup": round(median(infer_fast) / median(infer_base), 3) if baseline else None,
        "compile_seconds": compile_seconds or None,
        "first_step_loss": {k: round(v, 6) for k, v in first_loss.items()},
        "folded_batchnorms": {"teacher": len(prepared.folded_batchnorms),
                              "deployed_student": len(getattr(deployed, "folded_batchnorms", []))},
        "per_repeat": {"train": [round(v, 2) for v in train_fast], "baseline_train": [round(v, 2) for v in train_base],
                       "infer": [round(v, 2) for v in infer_fast], "baseline_infer": [round(v, 2) for v in infer_base]},
    }
    return result
