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

onnxruntime, cpu : the same deployed student exported to ONNX (`export.onnx_bytes`, BN unfolded: onnxruntime
                   fuses it itself) in an onnxruntime CPU session with torch's thread count, timed in
                   alternation with "infer, fast" on the same batch; reported with the largest absolute
                   logit difference and whether the top-1 classes agree (`onnxruntime=False`, or no
                   onnxruntime installed, or a non-CPU device: skipped with a note).

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
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
from torch import nn

from simkd_lite.errors import SimKDLiteError

from simkd_lite.distillers import SimKDProjector, create_distiller
from simkd_lite.experiments.export import EXPORT_HINT, onnxruntime_session
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


@dataclass(frozen=True)
class BenchSettings:
    """`run_bench`'s settings (its keyword arguments), checked when built.

    steps / warmup: timed and untimed steps per measurement. repeats: measure fast and baseline in
        alternation `repeats` times and report the median (robust to a shared machine's noise).
    amp: bf16 autocast on CUDA for the fast side (the baseline stays float32 like the official code;
        a no-op on CPU, see `autocast_context`). baseline: also measure the official path.
    """

    batch_size: int = 64
    steps: int = 20
    warmup: int = 3
    device: str | None = None
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 100
    factor: int = 2
    fold_bn: bool = True
    channels_last: bool = True
    compile_teacher: bool = False
    compile_student: bool = False
    amp: bool = False
    baseline: bool = True
    repeats: int = 1
    seed: int = 0
    compile_options: dict | None = None
    onnxruntime: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup < 0 or self.repeats < 1:
            raise ValueError(f"need steps >= 1, warmup >= 0, repeats >= 1; got {self.steps}, {self.warmup}, "
                             f"{self.repeats}")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def run_bench(teacher: str | nn.Module, student: str, **settings) -> dict:
    """Measure SimKD training and inference throughput, fast path vs the official path; see the module doc.

    teacher: a model name or a model (it is copied, never changed); student: a model name.
    settings: the fields of `BenchSettings` (batch_size, steps, device, fold_bn, amp, baseline, ...).
    Returns a JSON-serialisable dict: `*_images_per_s`, `train_speedup`, `infer_speedup` (None without
    baseline), `compile_seconds` (None unless compiling), `first_step_loss`, settings and machine info.
    """
    s = BenchSettings(**settings)
    dev = select_device(s.device)
    described = {k: v for k, v in asdict(s).items() if k not in ("device", "compile_options")}
    described = {"teacher": teacher if isinstance(teacher, str) else getattr(teacher, "model_name",
                                                                              type(teacher).__name__),
                 "student": student, **described}
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official code; affects both sides alike (restored below)
    torch.manual_seed(s.seed)  # one initialisation, copied to both sides
    if isinstance(teacher, str):
        teacher_net = create_model(teacher, s.num_classes, s.in_channels)
    else:
        teacher_net = copy.deepcopy(teacher)
        s = replace(s, num_classes=teacher_net.num_classes)
        if teacher_net.in_channels != s.in_channels:  # its first conv reads teacher.in_channels-channel images
            raise SimKDLiteError(f"the teacher ({described['teacher']}) reads {teacher_net.in_channels}-channel images, "
                                 f"so --in-channels {s.in_channels} does not fit it: pass --in-channels "
                                 f"{teacher_net.in_channels}")
    teacher_net = teacher_net.to(dev).eval().requires_grad_(False)
    student_net = create_model(student, s.num_classes, s.in_channels).to(dev)
    initial_student = copy.deepcopy(student_net)
    data = _BenchData(s, dev)
    fast = _FastSide(teacher_net, student_net, data, s, dev)
    base = _BaselineSide(teacher_net, initial_student, fast.initial_projector, data, s, dev) if s.baseline else None
    train_fast, train_base = _alternate(fast.train_step, base.train_step if base else None, s.warmup, s.repeats,
                                        s.steps, dev)
    infer = fast.infer_fn()
    if base is not None:
        base.to_eval()
    infer_fast, infer_base = _alternate(infer, base.infer if base else None, s.warmup, s.repeats, s.steps, dev)
    onnxruntime = onnxruntime_rates(fast, infer) if s.onnxruntime else {"skipped": "onnxruntime=False"}
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if fast.prepared.compiled and fast.prepared.compile_seconds is not None:
        fast.compile_seconds["teacher"] = round(fast.prepared.compile_seconds, 3)
    return {**_report(described, dev, (train_fast, train_base, infer_fast, infer_base), fast, base),
            "onnxruntime": onnxruntime}


def onnxruntime_rates(fast: "_FastSide", infer: Callable[[], int]) -> dict:
    """onnxruntime CPU images/s of the deployed student beside PyTorch's (`infer`), same batch and threads,
    measured in alternation; plus the max abs logit difference and top-1 agreement on that batch."""
    if fast.dev.type != "cpu":
        return {"skipped": f"onnxruntime's CPU images/s is measured only with --device cpu (this run: {fast.dev.type})"}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"skipped": f"onnxruntime is not installed: {EXPORT_HINT}"}
    threads, s = torch.get_num_threads(), fast.s
    deployed = fast.distiller.export().eval()
    x = fast.data.eval_x.contiguous()
    session = onnxruntime_session(deployed, x, threads=threads)
    feed = {"input": x.numpy()}
    got = session.run(["logits"], feed)[0]
    with torch.inference_mode():
        expected = deployed(x).numpy()

    def run_ort() -> int:
        session.run(["logits"], feed)
        return len(x)

    torch_rates, ort_rates = _alternate(infer, run_ort, s.warmup, s.repeats, s.steps, fast.dev)
    return {"images_per_s": round(statistics.median(ort_rates), 2),
            "pytorch_images_per_s": round(statistics.median(torch_rates), 2),
            "ratio": round(statistics.median(ort_rates) / statistics.median(torch_rates), 3),
            "threads": threads, "batch_size": len(x), "onnxruntime": onnxruntime.__version__,
            "max_abs_diff": float(abs(got - expected).max()),
            "top1_identical": bool((got.argmax(1) == expected.argmax(1)).all()),
            "per_repeat": {"onnxruntime": [round(v, 2) for v in ort_rates],
                           "pytorch": [round(v, 2) for v in torch_rates]}}


def onnxruntime_line(result: dict) -> str:
    """One terminal line: onnxruntime CPU vs PyTorch images/s of the deployed student (or why skipped)."""
    o = result.get("onnxruntime") or {}
    if "skipped" in o:
        return f"deployed student, onnxruntime CPU: skipped ({o['skipped']})"
    return (f"deployed student, batch {o['batch_size']}, {o['threads']} thread(s): onnxruntime CPU "
            f"{o['images_per_s']:,.0f} img/s vs PyTorch {o['pytorch_images_per_s']:,.0f} img/s (x{o['ratio']:.2f}); "
            f"max abs logit diff {o['max_abs_diff']:.1e}, top-1 identical: {'yes' if o['top1_identical'] else 'no'}")


def _report(described: dict, dev: torch.device, rates: tuple[list[float], ...], fast: "_FastSide",
            base: "_BaselineSide | None") -> dict:
    """The result dict of `run_bench`: medians, speed-ups, per-repeat rates, compile times, first losses."""
    train_fast, train_base, infer_fast, infer_base = rates

    def median(values):
        return round(statistics.median(values), 2) if values else None

    first_loss = {"fast": fast.first_loss} | ({"baseline": base.first_loss} if base and base.first_loss else {})
    return {
        **described,
        **machine_info(str(dev)),
        "train_images_per_s": median(train_fast),
        "baseline_train_images_per_s": median(train_base),
        "infer_images_per_s": median(infer_fast),
        "baseline_infer_images_per_s": median(infer_base),
        "train_speedup": round(median(train_fast) / median(train_base), 3) if base else None,
        "infer_speedup": round(median(infer_fast) / median(infer_base), 3) if base else None,
        "compile_seconds": fast.compile_seconds or None,
        "first_step_loss": {k: round(v, 6) for k, v in first_loss.items() if v is not None},
        "folded_batchnorms": {"teacher": len(fast.prepared.folded_batchnorms),
                              "deployed_student": len(getattr(fast.deployed, "folded_batchnorms", []))},
        "per_repeat": {"train": [round(v, 2) for v in train_fast], "baseline_train": [round(v, 2) for v in train_base],
                       "infer": [round(v, 2) for v in infer_fast], "baseline_infer": [round(v, 2) for v in infer_base]},
    }


class _BenchData:
    """Random uint8 images on the host (enough for warm-up + timed steps), augmented on the device."""

    def __init__(self, s: BenchSettings, dev: torch.device):
        g = torch.Generator().manual_seed(s.seed)
        n_images = s.batch_size * (s.warmup + s.steps)
        self.images = torch.randint(0, 256, (n_images, s.in_channels, s.image_size, s.image_size), dtype=torch.uint8,
                                    generator=g)
        self.labels = torch.randint(0, s.num_classes, (n_images,), generator=g)
        mean, std = ((CIFAR100_MEAN, CIFAR100_STD) if s.in_channels == 3
                     else ((0.5,) * s.in_channels, (0.25,) * s.in_channels))
        self.augment = GpuAugment(mean, std, padding=4, flip=True)
        plain = GpuAugment(mean, std, padding=0, flip=False).to(dev)
        self.probe = plain(self.images[:2].to(dev))
        self.eval_x = plain(self.images[:s.batch_size].to(dev))
        self.s, self.dev = s, dev

    def stream(self):
        return _batches(self.images, self.labels, self.augment, self.s.batch_size, self.s.seed, self.dev)


class _FastSide:
    """The package's path: prepared teacher, `step.distill_step` (the loop's step body), deployed student."""

    def __init__(self, teacher_net: nn.Module, student_net: nn.Module, data: _BenchData, s: BenchSettings,
                 dev: torch.device):
        self.s, self.dev, self.data = s, dev, data
        self.compile_seconds: dict[str, float] = {}
        self.prepared = prepare_teacher(teacher_net, fold_bn=s.fold_bn, channels_last=s.channels_last,
                                        compile=s.compile_teacher, example_input=data.probe,
                                        compile_options=s.compile_options)
        self.distiller = create_distiller("simkd", student_net, self.prepared, factor=s.factor).to(dev)
        self.initial_projector = copy.deepcopy(self.distiller.projector)
        if s.channels_last:
            self.distiller.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer([p for p in self.distiller.parameters() if p.requires_grad], TrainConfig())
        if s.compile_student:
            self.distiller.forward_train = time_first_call(
                maybe_compile(self.distiller.forward_train, True, **(s.compile_options or {})),
                self._record("student_train"))
        self.distiller.train()
        self.batches = data.stream()
        self.first_loss: float | None = None
        self.deployed = None

    def _record(self, key: str):
        return lambda seconds: self.compile_seconds.__setitem__(key, round(seconds, 3))

    def train_step(self) -> int:
        x, y = next(self.batches)
        x = x.contiguous(memory_format=self.s.memory_format)
        _, _, loss = distill_step(self.distiller.forward_train, x, y, self.optimizer, teacher=self.prepared,
                                  amp=self.s.amp)
        if self.first_loss is None:
            self.first_loss = loss.item()
        return len(y)

    def infer_fn(self) -> Callable[[], int]:
        """The deployed student (BN folded, memory format, optionally compiled) scoring one batch."""
        deployed = self.distiller.export().eval()
        if self.s.fold_bn:
            deployed = fold_batchnorm(deployed, self.data.probe)
        self.deployed = deployed.to(memory_format=self.s.memory_format).requires_grad_(False)
        forward = self.deployed.forward
        if self.s.compile_student:
            forward = time_first_call(maybe_compile(forward, True, **(self.s.compile_options or {})),
                                      self._record("student_infer"))
        x = self.data.eval_x.contiguous(memory_format=self.s.memory_format)

        def infer() -> int:
            with torch.inference_mode(), autocast_context(self.dev, self.s.amp):
                forward(x)
            return len(x)

        return infer


class _BaselineSide:
    """The official loop and evaluation, on copies of the same initial weights."""

    def __init__(self, teacher_net: nn.Module, initial_student: nn.Module, initial_projector: nn.Module,
                 data: _BenchData, s: BenchSettings, dev: torch.device):
        self.teacher = copy.deepcopy(teacher_net).eval()
        self.student = initial_student.train()
        self.projector = initial_projector.train()
        self.head = copy.deepcopy(teacher_net.get_classifier()).requires_grad_(False)
        self.optimizer = make_optimizer(list(self.student.parameters()) + list(self.projector.parameters()),
                                        TrainConfig())
        self.batches, self.eval_x = data.stream(), data.eval_x
        self.first_loss: float | None = None

    def train_step(self) -> int:
        x, y = next(self.batches)
        with torch.no_grad():
            feat_t = self.teacher.forward_features(x)
            self.teacher.forward_head(feat_t)  # the official teacher forward computes its logits too
        feat_s = self.student.forward_features(x)
        self.student.forward_head(feat_s)  # official: model_s(x, is_feat=True) returns logits as well
        projected, target, _ = self.projector(feat_s, feat_t, self.head)
        loss = SimKDProjector.loss(projected, target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.first_loss is None:
            self.first_loss = loss.item()
        return len(y)

    def to_eval(self) -> None:
        self.student.eval()
        self.projector.eval()

    def infer(self) -> int:
        with torch.no_grad():
            self.projector(self.student.forward_features(self.eval_x), self.teacher.forward_features(self.eval_x),
                           self.teacher.get_classifier())
        return len(self.eval_x)
