"""The frozen teacher's outputs on the fixed training images, computed once and kept on disk.

Without augmentation the training images never change, so neither do the teacher's last feature maps
and logits on them. `prepare_data` computes them once per process; this module also keeps them in
`RUNS/teacher_outputs/<key>.pt`, so every later notebook (or demo) that prepares the same images with the
same teacher file on the same kind of device loads them instead of running the teacher again.
RUNS is the experiment's `runs_root`: the demo's --out, the folder that holds `distill`'s --out
(`runs/` for `--out runs/simkd`), the notebooks' runs folder; never the working directory's ./runs
unless that is where the runs go.

The cache is only a shortcut: a file that is unreadable (truncated, corrupted) or does not hold
finite outputs of the expected shapes is computed again and replaced, with a message; a cache that
cannot be written (a read-only folder, a full disk) is skipped with a message, and training goes on.

The key covers everything the outputs depend on: the teacher file's bytes (sha256), the data set, the
training subset and its seed, the number of images, the device type and how the teacher was prepared
(BN folding, memory layout). (The CPU thread count changes the last bits of the outputs, not their
meaning; it is not part of the key.)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.distillers import FrozenTeacher, TeacherOutputs
from simkd_lite.errors import SimKDLiteError
from simkd_lite.experiments.pretrained import sha256
from simkd_lite.models import safe_name
from simkd_lite.training.batches import cache_teacher_outputs
from simkd_lite.training.teacher_prep import prepare_teacher


def cache_path(root: Path, teacher: nn.Module, identity: dict) -> Path | None:
    """`root/teacher_outputs/<key>.pt`, or None when the teacher has no file to identify it by."""
    source = getattr(teacher, "source", None)
    if not source or not Path(source).is_file():
        return None
    key = json.dumps({"teacher_sha256": sha256(Path(source)), **identity}, sort_keys=True, default=str)
    name = f"{safe_name(getattr(teacher, 'model_name', 'teacher'))}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    return Path(root) / "teacher_outputs" / name


def teacher_outputs(teacher: nn.Module, images: Tensor, device: torch.device, path: Path | None, *,
                    fold_bn: bool = True, channels_last: bool = True, batch_size: int = 256) -> TeacherOutputs:
    """Load the outputs from `path` when it exists, else compute them (one teacher pass) and save them there.

    The pass uses the same prepared teacher as training does (`prepare_teacher`: BN folded into the
    convolutions, channels_last), about twice as fast on a CPU as the plain module; `path`'s key
    must name these settings, since they change the last bits of the outputs.
    """
    if path is not None and path.exists():
        saved = _read_cache(path, len(images))
        if saved is not None:
            return saved
    prepared = prepare_teacher(teacher.to(device), fold_bn=fold_bn, channels_last=channels_last,
                               example_input=images[:2].to(device))
    outputs = cache_teacher_outputs(FrozenTeacher(prepared), images, device, batch_size)
    if path is not None:
        try:
            atomic_save({"features": outputs.features, "logits": outputs.logits}, path)
        except SimKDLiteError as err:  # a cache is a shortcut: run on without it
            _say(f"could not keep the teacher outputs in {path} ({err}); continuing without the disk cache")
    return outputs


def _read_cache(path: Path, count: int) -> TeacherOutputs | None:
    """The cached outputs in `path` if they are readable, of `count` images and finite; else None (said why)."""
    try:
        saved = read_checkpoint(path)
        features, logits = saved["features"], saved["logits"]
        problem = None
        if not (isinstance(features, torch.Tensor) and isinstance(logits, torch.Tensor)):
            problem = "it holds no feature and logit tensors"
        elif features.shape[0] != count or logits.shape[0] != count:
            problem = f"it holds {features.shape[0]} images' outputs, not {count}"
        elif not (torch.isfinite(features).all() and torch.isfinite(logits).all()):
            problem = "it holds non-finite values"
    except (SimKDLiteError, KeyError, AttributeError) as err:
        problem = f"unreadable: {err}"
    if problem is None:
        return TeacherOutputs(features, logits)
    _say(f"the cached teacher outputs {path} are not usable ({problem}); computing them again")
    return None


def _say(message: str) -> None:
    print(f"simkd-lite: {message}", file=sys.stderr)
