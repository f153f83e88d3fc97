"""The frozen teacher, made fast: BatchNorm folding, channels_last and an optional torch.compile.

    teacher = prepare_teacher(create_model("resnet32x4"))     # eval, frozen, BN folded, channels_last

What each switch buys, and why it is exact (or not):
- `fold_batchnorm`: an eval-mode BatchNorm is an affine map per channel, so it can be merged into the
  convolution before it (w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta). One
  pass over every activation disappears; the outputs agree up to float rounding.
- `channels_last`: NHWC memory layout, what cuDNN's tensor-core kernels (and oneDNN on CPU) prefer.
- `maybe_compile`: `torch.compile`, when it is available; it falls back to eager with one warning.

Nothing here changes what is computed except floating-point rounding.
"""
from __future__ import annotations

import copy
import functools
import time
import warnings
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


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


# ============================================================================ compile

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
