"""Check everything, then touch anything: what a run must pass before its folder is claimed.

    check_before_claim(config, train_images, out)   # in `fit`, one line before the claim

Every check here needs only the call's arguments, the training set's size and the output path, so a
call that would fail later (a device that is not there, a schedule too short for its warm-up, a
folder where the run writes a file) fails first, in one line, with nothing deleted or written:
`--overwrite` has not yet moved the old run aside, no config.json or .lock has been written.

Two more checks for the faces that know more than `fit`:
- `check_resumable(out)`: the CLI's `--resume` refuses a folder that holds no run ("nothing to
  resume in OUT") instead of quietly starting a fresh one (a typo in --out). The Python API's
  `resume=True` keeps meaning "continue or reuse the run if there is one".
- `check_folder_accepts(out, partial_run, ...)`: the settings known before a teacher exists (method,
  data set, student, recipe, seed) against the run a folder holds, so the demo refuses a changed
  seed before it trains anything.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from simkd_lite.errors import SimKDLiteError
from simkd_lite.training import distributed as ddp
from simkd_lite.training.run_folder import (LOCK_NAME, RUN_FILES, RUN_OUTPUTS, _flatten, check_run_paths,
                                           describe_differences, plain)
from simkd_lite.training.runtime import select_device

def check_before_claim(config, train_images: int, out: str | os.PathLike | None) -> None:
    """Device, schedule and output paths of a run (`config`: a TrainConfig), before anything is touched."""
    select_device(config.device)  # a one-line error for --device nope / cuda without a GPU
    check_schedule(config, train_images)
    if out is not None:
        check_run_paths(out)


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimiser steps in one epoch (this process's share under DDP), as the batch streams count them."""
    return math.ceil(math.ceil(train_images / ddp.world_size()) / batch_size)


def check_schedule(config, train_images: int) -> None:
    """The onecycle schedule's warm-up (a quarter of the steps) must span at least one step: >= 5 steps."""
    if config.schedule != "onecycle":
        return
    steps = steps_per_epoch(train_images, ddp.batch_size_per_process(config.batch_size))  # --batch-size is global
    total = config.epochs * steps
    if total < 5:
        raise SimKDLiteError(f"the onecycle schedule needs at least 5 training steps; this run has {total} "
                             f"({config.epochs} epoch(s) of {steps} batch(es) of {config.batch_size} from "
                             f"{train_images} images): train longer, use a smaller batch size, or another schedule")


def check_resumable(out: str | os.PathLike) -> None:
    """The CLI's --resume: OUT must hold a run ("nothing to resume in OUT" otherwise)."""
    folder = Path(out)
    if not folder.is_dir():
        raise SimKDLiteError(f"nothing to resume in {out}: the folder does not exist (a typo in --out?); leave out "
                             "--resume to start a new run there")
    if not any((folder / name).exists() for name in RUN_FILES):
        others = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
        holds = f"it holds {', '.join(others[:5])}" + (" ..." if len(others) > 5 else "") if others else "it is empty"
        raise SimKDLiteError(f"nothing to resume in {out}: no run there ({holds}; a run has last.pt and "
                             "config.json); leave out --resume to start a new run there")


def check_folder_accepts(out: str | os.PathLike, partial_run: dict, *, resume: bool, overwrite: bool) -> None:
    """Refuse now what claiming `out` would refuse later, judged on the settings known so far.

    `partial_run` holds some keys of the run description (e.g. method, dataset, train); only those
    are compared with the run the folder holds. Without `resume` or `overwrite` a folder holding a run
    is refused; with `overwrite` anything goes.
    """
    folder = Path(out)
    check_run_paths(folder)
    if overwrite or not any((folder / name).exists() for name in RUN_FILES):
        return
    saved = _saved(folder)
    if not resume:
        raise SimKDLiteError(f"{folder} already holds a run: pass --resume to continue it, --overwrite to replace "
                             "it, or choose another --out")
    if saved is None:
        return
    wanted = _flatten(plain(partial_run))
    known = {key for key in _flatten(saved) if key in wanted}
    differences = describe_differences(_unflatten({k: v for k, v in _flatten(saved).items() if k in known}),
                                       plain(partial_run))
    if differences:
        raise SimKDLiteError(f"cannot continue {folder}: it holds a run with other settings ("
                             + "; ".join(differences) + "). Continue it with the saved settings, pass --overwrite "
                             "to replace it, or choose another --out")


def _saved(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


__all__ = ["check_before_claim", "check_folder_accepts", "check_resumable", "check_run_paths", "check_schedule",
           "steps_per_epoch", "RUN_OUTPUTS"]
