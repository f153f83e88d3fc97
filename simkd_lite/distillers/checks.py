"""Argument checks of the public constructors: a wrong type or range fails at once, in one sentence.

Without them a string as the student failed deep inside torch, `factor="2"` with a comparison error,
`factor=2.5` with a float channel count, and KD's `temperature=0` trained on a NaN loss.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import nn

from simkd_lite.errors import SimKDLiteError

# What a distiller calls on its student and teacher (the zoo's timm-style API, GUIDE section 6).
MODEL_API = ("forward_features", "forward_head", "get_classifier", "feature_channels", "num_classes", "in_channels")


def check_model(model, role: str) -> None:
    """`model` must be a network of simkd_lite's zoo (or one with the same API)."""
    if isinstance(model, str):
        raise TypeError(f"the {role} must be a model, not the string {model!r}: build it with "
                        f"create_model({model!r}, num_classes, in_channels)")
    missing = [name for name in MODEL_API if not hasattr(model, name)]
    if not isinstance(model, nn.Module) or missing:
        what = type(model).__name__
        raise TypeError(f"the {role} must be a model of simkd_lite's zoo (create_model(name, num_classes, "
                        f"in_channels)), got a {what}" + (f" without {', '.join(missing)}" if missing else ""))


def check_finite_weights(model: nn.Module, what: str) -> None:
    """Refuse a network holding NaN or inf weights (a diverged or damaged file), naming the first such tensor."""
    bad = [name for name, tensor in model.state_dict().items()
           if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise SimKDLiteError(f"{what} has non-finite weights (NaN or inf in {len(bad)} tensor(s), first "
                             f"{bad[0]}): it cannot be used; was it saved from a diverged run?")


def check_number(name: str, value, *, minimum: float = 0.0, strict: bool = True) -> float:
    """A finite real number > `minimum` (>= with strict=False); bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    sign = ">" if strict else ">="
    if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be a finite number {sign} {minimum:g}, got {value!r}")
    return float(value)


def check_whole(name: str, value, *, minimum: int = 1) -> int:
    """A whole number >= `minimum` (an int, or a float with no fraction such as 2.0 is not accepted)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a whole number >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)
