"""Speed-ups for SimKD training and inference, each a small function you can switch on or off.

    teacher = prepare_teacher(create_model("resnet32x4"))     # eval, frozen, BN folded, channels_last
    augment = GpuAugment(mean, std, padding=4)                 # crop + flip + normalise on the device
    batches = DeviceTensorBatches(*to_uint8_tensors(train_set), augment, 64, seed=0, device=device)
    for x, y, _ in batches.epoch(epoch):
        logits, losses, loss = distill_step(distiller, x, y, optimizer, teacher=teacher, amp=True)

What each one buys, and why it is exact (or not):
- `fold_batchnorm`: an eval-mode BatchNorm is an affine map per channel, so it can be merged into the
  convolution before it (w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta). One
  pass over every activation disappears; the outputs agree up to float rounding.
- `channels_last`: NHWC memory layout, what cuDNN's tensor-core kernels (and oneDNN on CPU) prefer.
- `maybe_compile`: `torch.compile`, when it is available; it falls back to eager with one warning.
- `GpuAugment` / `DeviceTensorBatches`: the training set stays on the device as uint8 (CIFAR-100:
  150 MB) and the RandomCrop(pad 4) + flip + normalise of the official recipe runs batch-wise there,
  so no DataLoader workers, PIL images or host-to-device copies are left in the loop.
- `autocast_context`: bf16 autocast on CUDA.

Nothing here changes what is computed except floating-point rounding (and bf16 when asked for).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import Subset

from simkd_lite.distillers import TeacherOutputs, total_loss
from simkd_lite.engine import distributed as ddp
from simkd_lite.engine.runtime import epoch_order

# ============================================================================ BatchNorm folding


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """A Conv2d and a BatchNorm2d with running statistics over the conv's output channels."""
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            and bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None
            and bn.num_features == conv.out_channels)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def conv_bn_candidates(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) pairs that the zoo's conventions say are applied as bn(conv(x)).

    Two structural rules, both purely by position or name:
      1. consecutive entries of an `nn.Sequential`: [..., Conv2d, BatchNorm2d, ...]
         (VGG blocks, ResNet downsample, MobileNetV2 blocks, the SimKD projector);
      2. sibling attributes `<a>conv<b>` / `<a>bn<b>` of one module (ResNet, ShuffleNet: conv1/bn1, ...).
    `fold_batchnorm` then confirms each pair by watching one real forward pass.
    """
    pairs: list[tuple[str, str]] = []
    for prefix, parent in model.named_modules():
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
                if _foldable(conv, bn):
                    pairs.append((_join(prefix, conv_name), _join(prefix, bn_name)))
        by_name = dict(children)
        for conv_name, conv in children:
            if "conv" in conv_name and isinstance(conv, nn.Conv2d):
                bn_name = conv_name.replace("conv", "bn")
                if _foldable(conv, by_name.get(bn_name)):
                    pair = (_join(prefix, conv_name), _join(prefix, bn_name))
                    if pair not in pairs:
                        pairs.append(pair)
    return pairs


def _example_input(model: nn.Module, image_size: int = 32) -> Tensor | None:
    """A seeded random batch (2, C, 32, 32) on the model's device, C from `in_channels` or the first conv."""
    channels = getattr(model, "in_channels", None)
    if not isinstance(channels, int):
        first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first_conv.in_channels if first_conv is not None else None
    parameter = next(model.parameters(), None)
    if channels is None or parameter is None:
        return None
    generator = torch.Generator().manual_seed(0)  # never touches the global RNG
    x = torch.randn(2, channels, image_size, image_size, generator=generator)
    return x.to(device=parameter.device, dtype=parameter.dtype)


def _trace_direct_pairs(model: nn.Module, pairs: list[tuple[str, str]], example: Tensor) -> tuple[list, Tensor]:
    """The pairs for which one forward pass shows: conv and bn each run once, and bn's input IS conv's output.

    "Is" means the same tensor object with an unchanged version counter, so an in-place op in between
    (conv -> ReLU(inplace) -> bn) is rejected too. Modules called more than once are never folded.
    """
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    seen: dict[str, tuple[Tensor, int]] = {}  # name -> (conv output / bn input, its version then)

    def after_conv(name):
        def hook(_module, _args, output):
            calls[name] = calls.get(name, 0) + 1
            seen[name] = (output, output._version)
        return hook

    def before_bn(name):
        def hook(_module, args):
            calls[name] = calls.get(name, 0) + 1
            if args and isinstance(args[0], Tensor):
                seen[name] = (args[0], args[0]._version)
        return hook

    handles = []
    try:
        for conv_name, bn_name in pairs:
            handles.append(modules[conv_name].register_forward_hook(after_conv(conv_name)))
            handles.append(modules[bn_name].register_forward_pre_hook(before_bn(bn_name)))
        with torch.no_grad():  # not inference_mode: its tensors have no version counter
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    direct = []
    for conv_name, bn_name in pairs:
        if calls.get(conv_name) != 1 or calls.get(bn_name) != 1:
            continue
        conv_out, conv_version = seen[conv_name]
        bn_in, bn_version = seen.get(bn_name, (None, -1))
        if bn_in is conv_out and bn_version == conv_version:
            direct.append((conv_name, bn_name))
    # A conv feeding two BNs (or a BN claimed by two convs) cannot be folded into either.
    uses = [name for pair in direct for name in pair]
    direct = [(c, b) for c, b in direct if uses.count(c) == 1 and uses.count(b) == 1]
    return direct, output


def _relative_error(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|: scale-free, and it does not blow up on near-zero entries."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def fold_batchnorm(model: nn.Module, example_input: Tensor | None = None, *, check: bool = True,
                   tolerance: float = 1e-3) -> nn.Module:
    """An eval-mode deep copy of `model` with every BatchNorm2d that directly follows a Conv2d folded into it.

    The folded conv gets the BN's scale in its weights and its shift in its bias; the BN becomes
    `nn.Identity`, so names and the model API (forward_features, forward_head, get_classifier,
    attributes) stay. `model` itself is not changed.

    How pairs are found (generic, no per-architecture code):
      1. structure: consecutive `nn.Sequential` entries, and `convK`/`bnK` siblings (`conv_bn_candidates`);
      2. confirmation: one no-grad forward of `example_input` (default: a seeded (2, C, 32, 32) batch)
         with hooks keeps only pairs where each module runs once and the BN's input is the very
         tensor the conv returned (a conv whose output is touched in place first is left alone);
      3. check (default on): the folded copy must reproduce the copy's output on the same input
         within `tolerance` (relative to the largest logit), else RuntimeError.
    Without any possible example input (no `in_channels`, no conv) the structural pairs are folded
    unconfirmed, with a warning.

    The result records what happened: `folded_batchnorms` (list of (conv, bn) names) and
    `unfolded_batchnorms` (BatchNorm2d modules that were left as they are).
    """
    folded = copy.deepcopy(model).eval()
    pairs = conv_bn_candidates(folded)
    example = example_input if example_input is not None else _example_input(folded)
    reference = None
    if example is None:
        warnings.warn("fold_batchnorm: no example input could be built (pass example_input=...); folding "
                      "the structural conv/bn pairs without confirming them on a forward pass.", stacklevel=2)
    else:
        pairs, reference = _trace_direct_pairs(folded, pairs, example)

    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(modules[conv_name], modules[bn_name])
        _set(folded, conv_name, fused)
        _set(folded, bn_name, nn.Identity())

    folded.folded_batchnorms = pairs
    folded.unfolded_batchnorms = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if check and reference is not None and pairs:
        with torch.no_grad():
            error = _relative_error(folded(example), reference)
        if not error <= tolerance:
            raise RuntimeError(f"fold_batchnorm changed the output of {type(model).__name__} by {error:.2e} "
                               f"(relative; tolerance {tolerance:.0e}). Please report this model.")
    return folded


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


# ============================================================================ compile, autocast

_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def compile_available() -> bool:
    """True when `torch.compile` exists and Dynamo supports this Python/platform."""
    if not hasattr(torch, "compile"):
        return False
    try:
        import torch._dynamo as dynamo

        return bool(dynamo.is_dynamo_supported())
    except Exception:  # noqa: BLE001 - any failure here means "not available"
        return False


def maybe_compile(fn_or_module, enabled: bool = True, **compile_options):
    """`torch.compile(fn_or_module, **compile_options)` when `enabled` and available; else it unchanged.

    Never raises because of compilation: if compile is unavailable, or the compiled call fails
    while the eager call succeeds (e.g. no C++ compiler for the CPU backend), it warns once and
    runs eagerly from then on. A genuine error (eager fails too) is raised as usual.

    A function or bound method comes back as a wrapped function. An `nn.Module` comes back as the
    SAME module with its `forward` compiled (state_dict keys and attributes unchanged), like
    `nn.Module.compile()`. Compile after copying: a deep copy keeps calling the original's graph.
    """
    if not enabled:
        return fn_or_module
    if not compile_available():
        _warn_once("torch.compile is not available here (no torch.compile or Dynamo unsupported); running eagerly.")
        return fn_or_module
    if isinstance(fn_or_module, nn.Module):
        fn_or_module.forward = _compile_with_fallback(fn_or_module.forward, compile_options)
        return fn_or_module
    return _compile_with_fallback(fn_or_module, compile_options)


def _compile_with_fallback(eager: Callable, compile_options: dict) -> Callable:
    compiled = torch.compile(eager, **compile_options)
    state = {"use_compiled": True}

    @functools.wraps(eager)
    def call(*args, **kwargs):
        if state["use_compiled"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - decided below by retrying eagerly
                result = eager(*args, **kwargs)  # a genuine error raises here, from plain PyTorch
                state["use_compiled"] = False
                _warn_once(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); running eagerly.")
                return result
        return eager(*args, **kwargs)

    call.compiled = compiled
    return call


def _synchronize(values) -> None:
    """Wait for the GPU when any of `values` (tensors, or tuples of them) lives on CUDA."""
    for value in values:
        tensors = value if isinstance(value, (tuple, list)) else (value,)
        for t in tensors:
            if isinstance(t, Tensor) and t.is_cuda:
                torch.cuda.synchronize(t.device)
                return


def time_first_call(fn: Callable, record: Callable[[float], None]) -> Callable:
    """Wrap `fn` so that its first call's wall time (CUDA-synchronised before and after) goes to `record`.

    For a compiled function, that first call = Dynamo tracing + backend compilation + one run,
    which is what "compile cost" means in our benchmarks (the run itself is milliseconds).
    """
    state = {"first": True}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not state["first"]:
            return fn(*args, **kwargs)
        _synchronize(args)
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        _synchronize((result,))
        record(time.perf_counter() - started)
        state["first"] = False
        return result

    return call


def autocast_context(device: torch.device | str, enabled: bool):
    """bf16 autocast on CUDA when `enabled`; a no-op context everywhere else.

    Not on CPU on purpose: bf16 autocast there measured ~9x SLOWER than float32 on our 2-core
    test machine (no AMX/AVX512-BF16 kernels), and MPS bf16 support varies.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ============================================================================ the prepared teacher

_TEACHER_ATTRIBUTES = ("feature_channels", "classifier_on_features", "num_classes", "in_channels", "model_name")


class PreparedTeacher(nn.Module):
    """A frozen teacher made for speed, with the model API: forward_features, forward_head, get_classifier.

    `model` holds the (folded, channels_last) network. `compile_seconds` is None until a compiled
    `forward_features` has run once, then the wall time of that first call (see `time_first_call`).
    Save the original teacher, not this wrapper (its state_dict keys carry a `model.` prefix).
    """

    def __init__(self, model: nn.Module, channels_last: bool, features: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.compiled = features is not None
        self.compile_seconds: float | None = None
        self._features = features if features is not None else model.forward_features
        for name in _TEACHER_ATTRIBUTES:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        self.folded_batchnorms = getattr(model, "folded_batchnorms", [])

    def forward_features(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._features(x)

    def forward_feature_list(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The official feature list and logits (FitNet's hint layer); eager even when compiled."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_feature_list(x)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        return self.model.forward_head(features, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def train(self, mode: bool = True) -> "PreparedTeacher":
        # A prepared teacher is inference-only: folded BNs cannot train. Stay in eval mode.
        return super().train(False)


def prepare_teacher(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True, compile: bool = False,
                    example_input: Tensor | None = None, compile_options: dict | None = None) -> PreparedTeacher:
    """A frozen, faster copy of a teacher with the same API; `model` is not changed.

    eval mode, requires_grad False, BNs folded (`fold_bn`), weights in channels_last layout with
    inputs converted on entry (`channels_last`), and `forward_features` wrapped in `torch.compile`
    (`compile`; see `maybe_compile`). The compiled teacher's `compile_seconds` is measured on
    its first `forward_features` call (wall time incl. tracing + compilation + one run, CUDA-synced).
    `example_input` is the probe batch for `fold_batchnorm` (default: (2, C, 32, 32)).
    """
    if fold_bn:
        net = fold_batchnorm(model, example_input)
    else:
        net = copy.deepcopy(model).eval()
    net.requires_grad_(False)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    eager = net.forward_features
    features = maybe_compile(eager, compile, **(compile_options or {}))
    prepared = PreparedTeacher(net, channels_last, features if features is not eager else None)
    if prepared.compiled:
        prepared._features = time_first_call(prepared._features,
                                             lambda seconds: setattr(prepared, "compile_seconds", seconds))
    return prepared.eval()


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: Tensor) -> TeacherOutputs:
    """One frozen-teacher pass: the feature map SimKD aligns and the logits (the head is ~free)."""
    features = teacher.forward_features(x)
    return TeacherOutputs(features, teacher.forward_head(features))


def distill_step(forward_train: Callable, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, *,
                 teacher: nn.Module | None = None, teacher_out: TeacherOutputs | None = None, amp: bool = False,
                 guard: Callable[[Tensor], None] | None = None) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One optimisation step: the loop body of `trainer.fit`, also timed by `bench`.

    `forward_train` is a distiller's `forward_train` (or its DDP wrapper). Teacher outputs come from
    `teacher_out` (cached), else from `teacher` (e.g. a `prepare_teacher` result) under no_grad, else
    the distiller runs its own frozen teacher. `guard(loss)` runs before backward (the NaN check).
    Returns (logits, named losses, total loss).
    """
    with autocast_context(x.device, amp):
        if teacher_out is None and teacher is not None:
            teacher_out = teacher_outputs(teacher, x)
        logits, losses = forward_train(x, y, teacher_out)
        loss = total_loss(losses)
    if guard is not None:
        guard(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, losses, loss


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
