"""`simkd-lite bench`, the new paths: the CUDA-graph SimKD step, and four students sharing one teacher forward.

    result = run_graph_bench("resnet32x4", "resnet8x4", batch_size=64, steps=50, device="cuda")
    result["simkd_images_per_s"], result["together_ratio"]

Measured with the same data path as `bench.run_bench` (random uint8 images on the device, crop + flip +
normalise there just before the step) and the training engine's own `graphed.SharedStep`:
- simkd alone : one SimKD student (prepared teacher forward + student + projector + MSE + SGD) per step;
- together    : vanilla, KD, FitNet and SimKD students of the same architecture, one teacher forward per
                batch (the `paper` profile's method options), each with its own SGD; one step trains all four;
- together_ratio = time of a joint step / time of a SimKD-alone step (1.0 would make the row free);
- stacked     : the same four students with their encoders run as one batched network
                (`training/stacked.py`), one member step each for the rest; stacked_ratio likewise.
With `cuda_graph` on a CUDA device both are replayed from CUDA graphs (the joint one with a stream per
student); elsewhere they run eagerly, and `graphed` says which.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from simkd_lite.distillers import FrozenTeacher, create_distiller, get_distiller_class
from simkd_lite.experiments.bench import CIFAR100_MEAN, CIFAR100_STD, BenchSettings, _batches, _sync
from simkd_lite.training.device_data import GpuAugment
from simkd_lite.training.teacher_prep import prepare_teacher
from simkd_lite.training.graphed import SharedStep
from simkd_lite.experiments.profiles import PAPER_METHOD_OPTIONS
from simkd_lite.training.runtime import select_device
from simkd_lite.training.loop import TrainConfig, make_optimizer
from simkd_lite.models import create_model

TOGETHER = ("vanilla", "kd", "fitnet", "simkd")


def _step_seconds(step: SharedStep, data, steps: int, warmup: int, device, memory_format) -> float:
    """Median-free plain timing: `warmup` untimed calls (eager warm-up + capture), then `steps` timed."""
    def one():
        x, y = next(data)
        step(x.contiguous(memory_format=memory_format), y)

    for _ in range(warmup):
        one()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        one()
    _sync(device)
    return (time.perf_counter() - started) / steps


def run_graph_bench(teacher: str | nn.Module, student: str, *, cuda_graph: bool = True, together: bool = True,
                    **settings) -> dict:
    """Step times and images/s of SimKD alone and of the four-student row; see the module doc.

    settings: `bench.BenchSettings` fields (batch_size, steps, repeats, device, image_size, in_channels,
    num_classes, amp, seed).
    """
    s = BenchSettings(**settings)
    batch_size, steps, repeats, image_size, in_channels, seed, amp = (s.batch_size, s.steps, s.repeats, s.image_size,
                                                                      s.in_channels, s.seed, s.amp)
    num_classes = s.num_classes
    dev = select_device(s.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic
    torch.manual_seed(seed)
    teacher_net = create_model(teacher, num_classes, in_channels) if isinstance(teacher, str) else copy.deepcopy(teacher)
    num_classes = teacher_net.num_classes
    teacher_net = teacher_net.to(dev).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    n = batch_size * 8
    images = torch.randint(0, 256, (n, in_channels, image_size, image_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    mean, std = (CIFAR100_MEAN, CIFAR100_STD) if in_channels == 3 else ((0.5,) * in_channels, (0.25,) * in_channels)
    augment = GpuAugment(mean, std, padding=4, flip=True)
    shared = FrozenTeacher(prepare_teacher(teacher_net))
    memory_format = torch.channels_last

    def build(methods, stack=False):
        distillers, optimizers = [], []
        for method in methods:
            torch.manual_seed(seed)
            distiller = create_distiller(method, create_model(student, num_classes, in_channels),
                                         teacher_net,
                                         **PAPER_METHOD_OPTIONS.get(method, {}),
                                         **get_distiller_class(method).data_options(image_size))
            distiller = distiller.to(dev).to(memory_format=memory_format).train()
            if distiller.teacher is not None:
                distiller.teacher = shared
            distillers.append(distiller)
            optimizers.append(make_optimizer([p for p in distiller.parameters() if p.requires_grad], TrainConfig()))
        return SharedStep(distillers, optimizers, teacher=shared, device=dev, cuda_graph=cuda_graph, amp=amp,
                          stack=stack)

    rows = {"simkd": ("simkd",), **({"together": TOGETHER, "stacked": TOGETHER} if together else {})}
    steps_by_row = {name: build(methods, stack=name == "stacked") for name, methods in rows.items()}
    data = {name: _batches(images, labels, augment, batch_size, seed, dev) for name in rows}
    seconds: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(repeats):  # alternate the rows, as run_bench does, against a shared machine's drift
        for name, step in steps_by_row.items():
            seconds[name].append(_step_seconds(step, data[name], steps, 4 if r == 0 else 1, dev, memory_format))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    result = {"graphed": steps_by_row["simkd"].graph is not None, "amp": amp, "batch_size": batch_size,
              "steps": steps, "repeats": repeats,
              "simkd_step_ms": round(1000 * median["simkd"], 3),
              "simkd_images_per_s": round(batch_size / median["simkd"], 1)}
    if together:
        result.update({"together_methods": list(TOGETHER), "together_step_ms": round(1000 * median["together"], 3),
                       "together_student_images_per_s": round(len(TOGETHER) * batch_size / median["together"], 1),
                       "together_ratio": round(median["together"] / median["simkd"], 3),
                       "stacked_step_ms": round(1000 * median["stacked"], 3),
                       "stacked_ratio": round(median["stacked"] / median["simkd"], 3)})
    return result


def graph_table(result: dict) -> str:
    """Three lines for the terminal: official-style loop, the fast eager path, the graphed paths."""
    g = result.get("graphed") or {}
    kind = "CUDA graph" if g.get("graphed") else "eager (no CUDA graph here)"
    lines = [f"train img/s, batch {result['batch_size']} on {result['device_name']}:",
             f"  official-style loop        {result['baseline_train_images_per_s'] or float('nan'):>10,.0f}",
             f"  fast path (eager)          {result['train_images_per_s']:>10,.0f}",
             f"  SimKD step, graphed path   {g.get('simkd_images_per_s', float('nan')):>10,.0f}   ({kind})"]
    if "together_ratio" in g:
        lines.append(f"  4 students together       {g['together_step_ms']:>8.2f} ms/step = "
                     f"x{g['together_ratio']:.2f} the SimKD-alone step ({', '.join(g['together_methods'])})")
    if "stacked_ratio" in g:
        lines.append(f"  4 students, stacked       {g['stacked_step_ms']:>8.2f} ms/step = "
                     f"x{g['stacked_ratio']:.2f} the SimKD-alone step (encoders as one batched network)")
    return "\n".join(lines)
