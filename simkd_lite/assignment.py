"""Formative feedback for the SimKD assignment (notebooks/05_assignment.ipynb, an nbgrader notebook).

Each checker compares a student's implementation with the reference in `simkd_lite.distillers` and
says precisely what is wrong; they help while working and are not the grade:

    check_alignment(align_feature_maps)   # (feat_s, feat_t) -> (student map, teacher map), same H and W
    check_projector(Projector)            # Projector(s, t, factor): .transfer with the official layout
    check_loss(simkd_loss)                # (projected, target) -> scalar MSE over every element
    check_logits(simkd_logits)            # (projected map, teacher head) -> logits through the reused head

Each returns a `Feedback` (truthy when passed) that prints as one line: PASS/FAIL, what, why.
`parts_run(...)` says whether the four parts run at all: part 5 trains whenever they do.

The grade comes from nbgrader (course/README.md): the notebook's graded cells test the same contract
against hand-computed values, and its hidden tests use `package_code_used` to make sure a solution
is the student's own code rather than a call into the reference that these checkers use.
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass
from types import CodeType, FunctionType, ModuleType
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simkd_lite.distillers.losses import align_feature_maps as reference_alignment
from simkd_lite.distillers.losses import feature_l2_loss as reference_loss
from simkd_lite.distillers.projector import SimKDProjector, projector_parameter_count

NOT_IMPLEMENTED = "not implemented yet"
TOLERANCE = 1e-5


@dataclass
class Feedback:
    """The verdict of one checker: `bool(feedback)` is `passed`; `str`/`repr` give the one-line message."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.message}"

    __repr__ = __str__


def _not_implemented(name: str, what: str) -> Feedback:
    return Feedback(name, False, f"{NOT_IMPLEMENTED}: {what} still raises NotImplementedError. Replace that line "
                                 "with your implementation and run this cell again.")


def _crashed(name: str, err: Exception, context: str) -> Feedback:
    return Feedback(name, False, f"raised {type(err).__name__}: {err} ({context}).")


def _max_diff(a: Tensor, b: Tensor) -> float:
    return (a.detach().float() - b.detach().float()).abs().max().item()


# ------------------------------------------------------------------------------------------ part 1
# (student shape, teacher shape, what the case tests)
ALIGNMENT_CASES = [
    ((2, 8, 4, 4), (2, 16, 4, 4), "equal sizes: nothing to pool"),
    ((2, 8, 8, 8), (2, 16, 4, 4), "student map larger: pool the student map"),
    ((2, 8, 2, 2), (2, 16, 8, 8), "teacher map larger: pool the teacher map"),
    ((2, 8, 7, 7), (2, 16, 4, 4), "sizes that do not divide (7 -> 4)"),
]


def check_alignment(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> Feedback:
    """Compare `fn(feat_s, feat_t)` with SimKD's alignment on four pairs of map sizes."""
    name = "alignment"
    generator = torch.Generator().manual_seed(0)
    for shape_s, shape_t, case in ALIGNMENT_CASES:
        feat_s = torch.rand(shape_s, generator=generator)
        feat_t = torch.rand(shape_t, generator=generator)
        context = f"student map {shape_s}, teacher map {shape_t}: {case}"
        try:
            result = fn(feat_s.clone(), feat_t.clone())
        except NotImplementedError:
            return _not_implemented(name, "align_feature_maps")
        except Exception as err:  # noqa: BLE001 - any error is feedback
            return _crashed(name, err, context)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and all(isinstance(r, Tensor) for r in result)):
            return Feedback(name, False, f"should return a pair (student_map, teacher_map) of tensors, got "
                                         f"{type(result).__name__} ({context}).")
        expected = reference_alignment(feat_s, feat_t)
        got_shapes = [tuple(r.shape) for r in result]
        want_shapes = [tuple(e.shape) for e in expected]
        if got_shapes != want_shapes:
            if got_shapes == want_shapes[::-1]:
                hint = "you returned (teacher, student): the order is (student_map, teacher_map)"
            elif [s[1] for s in got_shapes] != [shape_s[1], shape_t[1]]:
                hint = "alignment changes only H and W; the channels stay as they are (the projector maps them)"
            elif max(s[-1] for s in got_shapes) > min(shape_s[-1], shape_t[-1]):
                hint = "pool the larger map DOWN to the smaller map's size; never upsample the smaller one"
            else:
                hint = "both maps should end at the smaller of the two spatial sizes"
            return Feedback(name, False, f"expected shapes {want_shapes[0]} and {want_shapes[1]}, got "
                                         f"{got_shapes[0]} and {got_shapes[1]} ({context}); {hint}.")
        for which, got, want in zip(("student", "teacher"), result, expected):
            diff = _max_diff(got, want)
            if diff > TOLERANCE:
                return Feedback(name, False, f"the {which} map has the right shape but different values (max abs "
                                             f"difference {diff:.3g}) ({context}); use adaptive *average* pooling "
                                             "(F.adaptive_avg_pool2d), not max pooling, interpolation or cropping.")
    return Feedback(name, True, f"matches simkd_lite's align_feature_maps on {len(ALIGNMENT_CASES)} size pairs "
                                "(equal, student larger, teacher larger, non-divisible).")


# ------------------------------------------------------------------------------------------ part 2
# (student channels, teacher channels, factor); the last one is ResNet-8x4 -> ResNet-32x4 of the paper.
PROJECTOR_CASES = [(16, 32, 2), (24, 64, 4), (48, 16, 1), (256, 256, 2)]


def check_projector(projector_cls: Callable[[int, int, int], nn.Module]) -> Feedback:
    """Check `projector_cls(student_channels, teacher_channels, factor)` against SimKD's projector.

    It must be an nn.Module with a `transfer` nn.Sequential whose state_dict has the official names
    (transfer.0/1/3/4/6/7), the closed-form parameter count, and `forward(x) == transfer(x)` equal to
    the reference once the same weights are loaded, in training and in evaluation mode.
    """
    name = "projector"
    for s, t, factor in PROJECTOR_CASES:
        context = f"Projector({s}, {t}, factor={factor})"
        try:
            module = projector_cls(s, t, factor)
        except NotImplementedError:
            return _not_implemented(name, "Projector.__init__")
        except Exception as err:  # noqa: BLE001
            return _crashed(name, err, f"building {context}")
        if not isinstance(module, nn.Module):
            return Feedback(name, False, f"{context} should be an nn.Module, got {type(module).__name__}.")
        if not isinstance(getattr(module, "transfer", None), nn.Sequential):
            return Feedback(name, False, f"{context} needs an attribute `transfer` that is an nn.Sequential (the "
                                         "official name, so official checkpoints load).")
        reference = SimKDProjector(s, t, factor)
        m = t // factor
        count = sum(p.numel() for p in module.parameters())
        formula = projector_parameter_count(s, t, factor)
        if count != formula:
            biases = [k for k, v in module.named_parameters() if k.endswith("bias") and v.ndim == 1
                      and _owner_is_conv(module, k)]
            if biases:
                hint = f"the convolutions must have bias=False (BatchNorm follows each one); found {', '.join(biases)}"
            else:
                hint = (f"expected s*m + 9*m^2 + m*t + 4m + 2t with s={s}, m=t//factor={m}, t={t}: check the bottleneck "
                        "width m, the 3x3 middle convolution and the three BatchNorms")
            return Feedback(name, False, f"{context} has {count:,} parameters, SimKD's projector has {formula:,} "
                                         f"({count - formula:+,}); {hint}.")
        want_keys, got_keys = set(reference.state_dict()), set(module.state_dict())
        if want_keys != got_keys:
            missing, extra = sorted(want_keys - got_keys), sorted(got_keys - want_keys)
            return Feedback(name, False, f"{context}: state_dict names differ from the official layout "
                                         f"(conv, BN, ReLU, conv, BN, ReLU, conv, BN, ReLU inside `transfer`); "
                                         f"missing {missing[:4]}, unexpected {extra[:4]}.")
        generator = torch.Generator().manual_seed(s + t + factor)
        state = {k: (torch.rand(v.shape, generator=generator) + 0.5 if v.is_floating_point() else v)
                 for k, v in reference.state_dict().items()}
        reference.load_state_dict(state)
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            return Feedback(name, False, f"{context}: the reference weights do not load: {err}")
        x = torch.randn(3, s, 4, 4, generator=generator)
        for mode in ("train", "eval"):
            reference.train(mode == "train")
            module.train(mode == "train")
            try:
                out = module(x.clone())
            except NotImplementedError:
                return _not_implemented(name, "Projector.forward")
            except Exception as err:  # noqa: BLE001
                return _crashed(name, err, f"{context} forward on a {tuple(x.shape)} map")
            want = reference.transfer(x.clone())
            if not isinstance(out, Tensor) or out.shape != want.shape:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                return Feedback(name, False, f"{context} maps {tuple(x.shape)} to {got}; expected {tuple(want.shape)} "
                                             "(same H and W, teacher channels).")
            diff = _max_diff(out, want)
            if diff > 1e-4:
                hint = (" negative values: the projector ends with BN then ReLU" if (out < 0).any() else
                        " check the order conv -> BN -> ReLU, padding=1 on the 3x3 convolution, and that forward "
                        "returns self.transfer(x)")
                return Feedback(name, False, f"{context} in {mode} mode gives different outputs than the reference "
                                             f"with the same weights (max abs difference {diff:.3g});{hint}.")
    return Feedback(name, True, f"official layout, parameter counts (e.g. {projector_parameter_count(256, 256, 2):,} "
                                "for 256->256 at factor 2) and outputs in train and eval mode match SimKD's projector.")


def _owner_is_conv(module: nn.Module, key: str) -> bool:
    owner = module.get_submodule(key.rsplit(".", 1)[0]) if "." in key else module
    return isinstance(owner, (nn.Conv2d, nn.Linear))


# ------------------------------------------------------------------------------------------ part 3
def check_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> Feedback:
    """`fn(projected_student, teacher_target)` must be F.mse_loss (mean over all N*C*H*W) with gradients."""
    name = "loss"
    generator = torch.Generator().manual_seed(0)
    projected = torch.randn(4, 6, 3, 3, generator=generator, requires_grad=True)
    target = torch.randn(4, 6, 3, 3, generator=generator)
    try:
        value = fn(projected, target)
    except NotImplementedError:
        return _not_implemented(name, "simkd_loss")
    except Exception as err:  # noqa: BLE001
        return _crashed(name, err, "projected and target maps of shape (4, 6, 3, 3)")
    if not isinstance(value, Tensor):
        return Feedback(name, False, f"should return a torch scalar tensor, got {type(value).__name__} (keep it a "
                                     "tensor so that .backward() works).")
    if value.numel() != 1 or value.ndim != 0:
        return Feedback(name, False, f"should return a scalar (0-d tensor), got shape {tuple(value.shape)}: average "
                                     "over every element.")
    want = reference_loss(projected, target).item()
    got = value.item()
    if abs(got - want) > 1e-5 * max(1.0, abs(want)):
        n, elements = projected.shape[0], projected.numel()
        ratio = got / want if want else float("nan")
        if abs(ratio - elements) < 1e-3 * elements:
            hint = "you summed the squared errors: take the mean over all N*C*H*W elements"
        elif abs(ratio - elements / n) < 1e-3 * elements:
            hint = "you averaged over the batch only: the mean is over all N*C*H*W elements"
        elif abs(got - want ** 0.5) < 1e-5:
            hint = "you returned the root of the mean squared error: SimKD uses the MSE itself"
        elif abs(got - F.l1_loss(projected, target).item()) < 1e-5:
            hint = "that is the mean absolute error (L1): SimKD squares the differences"
        else:
            hint = "expected mean((projected - target)**2)"
        return Feedback(name, False, f"returned {got:.6g}, the reference MSE is {want:.6g}; {hint}.")
    if not value.requires_grad:
        return Feedback(name, False, "the value is right but carries no gradient: do not detach the projected "
                                     "student map or call .item() inside the loss.")
    value.backward()
    expected_grad = 2 * (projected.detach() - target) / projected.numel()
    if projected.grad is None or _max_diff(projected.grad, expected_grad) > 1e-6:
        return Feedback(name, False, "the value is right but its gradient with respect to the projected map is not.")
    return Feedback(name, True, f"equals F.mse_loss (mean over all elements, {want:.4f} on the test maps) and "
                                "back-propagates into the projected student map.")


# ------------------------------------------------------------------------------------------ part 4
def check_logits(fn: Callable[[Tensor, nn.Linear], Tensor]) -> Feedback:
    """`fn(projected_map, teacher_head)` must global-average-pool the map and apply the head, unchanged."""
    name = "logits"
    generator = torch.Generator().manual_seed(0)
    projected = torch.rand(3, 8, 4, 4, generator=generator)
    head = nn.Linear(8, 5)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    try:
        logits = fn(projected.clone(), head)
    except NotImplementedError:
        return _not_implemented(name, "simkd_logits")
    except Exception as err:  # noqa: BLE001
        return _crashed(name, err, "a projected map of shape (3, 8, 4, 4) and a Linear(8, 5) head")
    if any(not torch.equal(v, head.state_dict()[k]) for k, v in before.items()):
        return Feedback(name, False, "the teacher's head changed: it is reused frozen, never modified.")
    if not isinstance(logits, Tensor) or logits.shape != (3, 5):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        return Feedback(name, False, f"expected logits of shape (3, 5) for 3 maps and 5 classes, got {got}: pool "
                                     "each channel over H and W, then apply the head.")
    with torch.no_grad():
        want = head(projected.mean(dim=(2, 3)))
        if _max_diff(logits, want) > TOLERANCE:
            if _max_diff(logits, head(projected.amax(dim=(2, 3)))) < TOLERANCE:
                hint = "that is max pooling: the teacher's head was trained on *average*-pooled features"
            elif _max_diff(logits, want.softmax(dim=1)) < TOLERANCE:
                hint = "those are probabilities: return the logits, before any softmax"
            else:
                hint = "expected head(mean of the map over H and W)"
            return Feedback(name, False, f"logits differ from the reference (max abs difference "
                                         f"{_max_diff(logits, want):.3g}); {hint}.")
    return Feedback(name, True, "global average pooling, then the teacher's frozen classifier, as SimKD predicts.")


# ------------------------------------------------------------------------------------------ grading
def parts_run(align: Callable, projector_cls: Callable, loss: Callable, logits: Callable) -> Feedback:
    """Whether parts 1-4 can be *run* on one small SimKD step (map -> align -> project -> loss -> logits).

    This gates part 5 of the assignment: part 5 is graded on what training with the student's parts reaches,
    so it must run whenever the parts run, whatever the (ungraded) check_... feedback says about them.
    Fails only when a part is not written yet or raises: the message names the part, in one line.
    """
    generator = torch.Generator().manual_seed(0)
    feat_s, feat_t = torch.rand(2, 4, 4, 4, generator=generator), torch.rand(2, 6, 2, 2, generator=generator)
    steps = [("part 1, align_feature_maps", lambda: align(feat_s, feat_t)),
             ("part 2, Projector", lambda maps: (projector_cls(4, 6, 2)(maps[0]), maps[1])),
             ("part 3, simkd_loss", lambda pair: (pair[0], loss(*pair))),
             ("part 4, simkd_logits", lambda pair: logits(pair[0], nn.Linear(6, 3)))]
    value = None
    for index, (name, step) in enumerate(steps):
        try:
            value = step() if index == 0 else step(value)
        except NotImplementedError:
            return Feedback("parts 1-4", False, f"{name} is {NOT_IMPLEMENTED}: part 5 trains with parts 1-4, so write "
                                                "them first.")
        except Exception as err:  # noqa: BLE001 - any error is feedback
            return Feedback("parts 1-4", False, f"{name} raised {type(err).__name__}: {err} (on a 2-image SimKD "
                                                "step); part 5 needs parts 1-4 to run.")
    return Feedback("parts 1-4", True, "they run on a small SimKD step: part 5 trains with them (the check_... "
                                       "lines above say how they compare with the reference).")


def own_work(obj) -> str:
    """One sentence for a hidden test: which simkd_lite code a solution relies on (empty list: its own)."""
    used = package_code_used(obj)
    name = getattr(obj, "__qualname__", str(obj))
    return (f"{name} relies on simkd_lite's own code ({'; '.join(used)}): the graded solution must be your own code."
            if used else f"{name} is your own code.")


def package_code_used(obj) -> list[str]:
    """The simkd_lite names a function or class (defined in a notebook) relies on; [] when it is self-made.

    The assignment's hidden tests assert this is empty: a solution that calls the reference these
    checkers compare against (`simkd_lite.distillers...`) would pass every value test without being
    the student's work. It inspects the object itself, its base classes, and every global name the
    code of its functions refers to (nested functions and lambdas included).
    """
    used = []
    if _from_package(obj):
        used.append(f"{getattr(obj, '__qualname__', obj)} comes from {obj.__module__}")
    functions = [obj] if isinstance(obj, FunctionType) else []
    if isinstance(obj, type):
        used += [f"base class {base.__module__}.{base.__qualname__}" for base in obj.__mro__[1:] if _from_package(base)]
        for member in vars(obj).values():
            member = getattr(member, "__func__", getattr(member, "fget", member))  # static/class methods, properties
            if isinstance(member, FunctionType):
                functions.append(member)
    for function in functions:
        for name in _global_names(function.__code__):
            value = function.__globals__.get(name, getattr(builtins, name, None))
            if value is not None and _from_package(value):
                used.append(f"{function.__qualname__} uses {name} ({_module_of(value)})")
    return sorted(set(used))


def _module_of(value) -> str:
    return value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) or ""


def _from_package(value) -> bool:
    module = _module_of(value)
    return module == "simkd_lite" or module.startswith("simkd_lite.")


def _global_names(code: CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _global_names(const)
    return names
