"""Reading and writing checkpoints: official layouts in, official layouts out, nothing lost.

- Official teacher checkpoints are `{'model': state_dict, 'epoch': ..., 'best_acc': ..., ...}`;
  a bare state_dict (and DDP's `module.` prefix) is accepted too.
- Every file we write goes to a temporary file first and is renamed into place, so a crash
  or a SIGKILL mid-save leaves the previous checkpoint intact. A failed write (full disk,
  read-only folder) removes its temporary file and says so in one line (`SimKDLiteError`).
- A checkpoint that does not fit a model raises `CheckpointMismatchError` naming the keys that
  differ and, where one fits, the zoo model that would load it.
- Files are read with `torch.load(weights_only=True)`, which unpickles only tensors, containers and
  numbers, plus an explicit allow-list (`SAFE_GLOBALS`) for what official RepDistiller/SimKD files
  carry: the training options as an `argparse.Namespace` holding numpy scalars. Anything else is
  refused with a message naming `trust=True` (CLI: `--trust-checkpoint`), the one switch that
  unpickles arbitrary objects, and only for files from a source you trust.
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from simkd_lite.errors import SimKDLiteError, writing
from simkd_lite.tempfiles import write_atomically
from simkd_lite.models import create_model, list_models, wrap_model

StateDict = Mapping[str, Tensor]


class CheckpointMismatchError(ValueError):
    """A state_dict whose keys or shapes do not match the model it is loaded into."""


# ---------------------------------------------------------------------------------- writing
def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to `path` via a temp file + fsync + rename: readers never see half a file.

    The object is serialised in memory first, so a full disk surfaces as a plain OSError
    (mapped to "no space left on device while writing PATH") instead of torch's zip-writer error.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(buffer.getbuffer(), path)


def atomic_write_bytes(data: bytes | memoryview, path: str | os.PathLike) -> Path:
    """Write `data` to `path` atomically (our own temporary file in the same folder, fsync, rename;
    see `simkd_lite.tempfiles`)."""
    return write_atomically(data, path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """`Path.write_text`, atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def save_teacher(path: str | os.PathLike, model: nn.Module, *, model_name: str, epoch: int,
                 best_acc: float, **extra: Any) -> Path:
    """Write a teacher in the official layout (`model`, `epoch`, `best_acc`) plus our metadata.

    `epoch` is the number of completed epochs. Official code reads `ckpt['model']` and ignores
    the rest; we also store `model_name` (and e.g. `dataset`) so `--teacher PATH` needs nothing else.
    """
    state = {"model": model.state_dict(), "epoch": epoch, "best_acc": best_acc, "model_name": model_name}
    state.update(extra)
    return atomic_save(state, path)


# ---------------------------------------------------------------------------------- reading
def _safe_globals() -> list:
    """What official checkpoints hold besides tensors: `opt` (argparse.Namespace) with numpy scalars.

    numpy pickles a scalar as `numpy._core.multiarray.scalar(dtype, bytes)` (`numpy.core...` when
    written by numpy 1.x) and a dtype as `numpy.dtype(...)` with its per-type class; none of these
    runs code on load. Arbitrary classes, functions and numpy arrays stay refused.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"] if code not in "Mm"}
    allowed = [argparse.Namespace, np.dtype, scalar, *sorted(dtype_classes, key=str)]
    # The same functions under the other numpy major version's module path.
    allowed += [(scalar, f"numpy.{name}.multiarray.scalar") for name in ("core", "_core")
                if f"numpy.{name}.multiarray" != scalar.__module__]
    return allowed


TRUST_HINT = "--trust-checkpoint"  # the CLI flag; in Python: trust=True


def read_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> dict:
    """Load a checkpoint file onto the CPU safely, with clear errors for missing, broken or unsafe files.

    A whole pickled network (`torch.save(model)`) needs `trust=True` and comes back as {'module': model}.

    Safe by default: `weights_only=True` plus `SAFE_GLOBALS` (see the module docstring). With
    `trust=True` a file that needs more is unpickled fully (`weights_only=False`, which can run code
    from the file), with a warning; never silently.
    """
    path = Path(path)
    if path.is_dir():
        raise SimKDLiteError(f"{path} is a folder, not a checkpoint file.")
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    if path.stat().st_size == 0:
        raise SimKDLiteError(f"{path} is empty (0 bytes), not a PyTorch checkpoint.")
    try:
        with writing(path, "reading"), _allow(_safe_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except SimKDLiteError:
        raise
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # not a refused class or function: a broken or foreign file
            raise SimKDLiteError(f"{path} is not a readable PyTorch checkpoint: {_first_line(err)}") from err
        blocked = _first_line(err)  # a well-formed file holding objects beyond the allow-list
        if not trust:
            raise SimKDLiteError(f"{path} holds Python objects that a safe load refuses ({blocked}). If you trust "
                                 f"where this file comes from, pass {TRUST_HINT} to unpickle it fully.") from None
        warnings.warn(f"unpickling {path} fully (trusted by the caller): {blocked}", stacklevel=2)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # corrupted, truncated or not a torch file
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        cause = cause.split(". ")[0]  # torch's first sentence says it; the rest is generic advice
        raise SimKDLiteError(f"{path} is not a readable PyTorch checkpoint (truncated, or not written by "
                             f"torch.save): {cause}") from err
    if isinstance(checkpoint, nn.Module):  # torch.save(model): only reachable with trust=True (it needs pickle)
        return {"module": checkpoint}
    if not isinstance(checkpoint, Mapping):
        raise SimKDLiteError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint: expected a dict "
                             "such as {'model': state_dict, ...} or a bare state_dict.")
    return checkpoint


def _allow(globals_: list):
    """torch.serialization.safe_globals (torch >= 2.5), or nothing on older torch."""
    import contextlib

    context = getattr(torch.serialization, "safe_globals", None)
    return context(globals_) if context is not None else contextlib.nullcontext()


def _first_line(err: Exception) -> str:
    # torch's message is several paragraphs; name just the global it refused, when it says which.
    import re

    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return f"it needs {found.group(1)}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith("Unsupported")]
    return (specific or lines or [type(err).__name__])[0][:200]


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model weights inside an official / our / bare checkpoint (or a whole pickled network), without DDP's `module.`."""
    if isinstance(checkpoint.get("module"), nn.Module):
        return dict(checkpoint["module"].state_dict())
    for key in ("model", "state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    if not checkpoint or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError("This checkpoint holds no state_dict: expected {'model': state_dict, ...} or a bare state_dict.")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def infer_num_classes(state_dict: StateDict) -> int:
    """Rows of the last 2-D weight: the classifier's output size."""
    weights = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 2]
    if not weights:
        raise ValueError("No Linear layer found in this state_dict, so its number of classes is unknown.")
    return weights[-1].shape[0]


def infer_in_channels(state_dict: StateDict) -> int:
    """Input channels of the first convolution (3 for CIFAR, 1 for grayscale)."""
    convs = [v for v in state_dict.values() if v.ndim == 4]
    if not convs:
        raise ValueError("No convolution found in this state_dict.")
    return convs[0].shape[1]


def model_name_from_path(path: str | os.PathLike) -> str | None:
    """The architecture encoded in the official folder naming, e.g.
    `save/teachers/models/resnet32x4_vanilla/resnet32x4_best.pth` -> `resnet32x4`.

    The longest zoo name that prefixes the folder (or file) name wins, so names that contain
    underscores themselves (`MobileNetV2_1_0`, `ShuffleV2_1_5`) are read correctly.
    """
    path = Path(path)
    names = sorted(list_models(), key=len, reverse=True)
    for candidate in (path.parent.name, path.stem):
        for name in names:
            if candidate == name or candidate.startswith(name + "_"):
                return name
    return None


# ---------------------------------------------------------------------------------- matching
def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def models_that_fit(state_dict: StateDict) -> list[str]:
    """Zoo names whose state_dict has exactly these keys and shapes (checked on the meta device)."""
    wanted = {k: tuple(v.shape) for k, v in state_dict.items()}
    num_classes, in_channels = infer_num_classes(state_dict), infer_in_channels(state_dict)
    fits = []
    with torch.device("meta"):  # shapes only: no memory, no init cost
        for name in list_models():
            if _shapes(create_model(name, num_classes=num_classes, in_channels=in_channels)) == wanted:
                fits.append(name)
    return fits


def describe_mismatch(model: nn.Module, state_dict: StateDict, model_name: str, limit: int = 5) -> str:
    """Human-readable differences between a model and a state_dict ('' when they match)."""
    expected, given = _shapes(model), {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k}: checkpoint {given[k]} vs model {expected[k]}" for k in expected if k in given and given[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return ""

    def listing(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:limit]) + more if items else ""

    message = (f"The checkpoint does not fit {model_name}."
               + listing("missing keys", missing) + listing("unexpected keys", unexpected)
               + listing("shape mismatches", wrong))
    fits = [n for n in models_that_fit(state_dict) if n != model_name]
    if fits:
        message += f"\n  It loads as is into: {', '.join(fits)} (pass that model name instead)."
    return message


def load_weights(model: nn.Module, state_dict: StateDict, model_name: str | None = None) -> nn.Module:
    """`model.load_state_dict(state_dict, strict=True)` with an actionable error instead of torch's."""
    problem = describe_mismatch(model, state_dict, model_name or getattr(model, "model_name", type(model).__name__))
    if problem:
        raise CheckpointMismatchError(problem)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(path_or_checkpoint: str | os.PathLike | Mapping[str, Any], model_name: str | None = None,
               *, trust: bool = False, name_flag: str = "--model") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a zoo model from a checkpoint (ours, official, or a bare state_dict).

    The architecture comes from `model_name` (a zoo name or e.g. ``torchvision/resnet18``: a torchvision
    state_dict loads as is), else the checkpoint's `model_name`, else the official folder naming;
    num_classes and in_channels are read off the weights. A whole pickled network (read with
    `trust=True`) is wrapped (`models.wrap_model`) unless `model_name` names its architecture. `name_flag` is the
    CLI flag the error suggests when none of these names it (eval: --model; a teacher: --teacher-model).
    Returns (model in eval mode, the checkpoint's other entries).
    """
    is_path = not isinstance(path_or_checkpoint, Mapping)
    checkpoint = read_checkpoint(path_or_checkpoint, trust=trust) if is_path else dict(path_or_checkpoint)
    state_dict = extract_state_dict(checkpoint)
    name = model_name or checkpoint.get("model_name") or (model_name_from_path(path_or_checkpoint) if is_path else None)
    if name is None and isinstance(checkpoint.get("module"), nn.Module):  # a whole network, unpickled: wrap it
        model = wrap_model(checkpoint["module"])
        return model.eval(), {"model_name": model.model_name}
    if name is None:
        fits = models_that_fit(state_dict)
        hint = f" Its weights fit: {', '.join(fits)}." if fits else ""
        where = f"{path_or_checkpoint} holds" if is_path else "This checkpoint holds"
        raise ValueError(f"{where} a bare state_dict without its architecture's name: pass the model name "
                         f"({name_flag} NAME, e.g. {name_flag} resnet32x4; Python: model_name=...).{hint}")
    model = create_model(name, num_classes=infer_num_classes(state_dict), in_channels=infer_in_channels(state_dict))
    load_weights(model, state_dict, name)
    meta = {k: v for k, v in checkpoint.items() if k not in ("model", "state_dict", "optimizer")}
    meta["model_name"] = name
    return model.eval(), meta


# ---------------------------------------------------------------------------------- cached torchvision weights
def is_weights_name(source) -> bool:
    """'torchvision/ARCH.WEIGHTS' (not an existing file): torchvision weights to read from the torch hub cache."""
    text = str(source)
    arch = text.partition("/")[2].partition(":")[0]
    return text.startswith("torchvision/") and "." in arch and not Path(text).exists()


def load_torchvision_weights(source: str) -> tuple[nn.Module, Path]:
    """`torchvision/resnet18.IMAGENET1K_V1[:options]` -> (the model with those weights, in eval mode; the file read).

    The file must already be in the torch hub cache (`torch.hub.get_dir()/checkpoints/`, where torchvision's own
    download puts it); it is read with weights_only=True. Never downloads: a missing file is one line giving
    the exact path to put it at and the URL to fetch it from on a machine with internet.
    """
    from simkd_lite.models.external import cached_weights, missing_weights_message

    spec, weights, path = cached_weights(source)
    if not Path(path).is_file():
        raise FileNotFoundError(missing_weights_message(source, weights, path))
    state_dict = extract_state_dict(read_checkpoint(path))
    model = create_model(spec.model_name, num_classes=len(weights.meta.get("categories") or [])
                         or infer_num_classes(state_dict), in_channels=infer_in_channels(state_dict))
    load_weights(model, state_dict, f"{spec.model_name} ({path})")
    return model.eval(), Path(path)
