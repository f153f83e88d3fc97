"""An output folder belongs to one run: claim it, lock it, resume it only with the same settings.

    with claim_run_folder(out, run, resume=False, overwrite=False, log=print) as resuming:
        ...train, writing OUT/best.pt and OUT/last.pt...

What claiming guarantees (README: "Training never loses work"):
- A folder that holds a run (`last.pt`, `best.pt`, `student.pt` or `config.json`) is refused unless
  `resume` (continue it) or `overwrite` (replace it). Everything that can be checked is checked before
  the folder is claimed (`training/preflight.py`), so a refused call changes nothing.
- `overwrite` never deletes first: the old run's files move aside into `OUT/.simkd-replaced.<PID>/`
  (said on stderr, even when quiet). They are deleted once the new run has written its first
  checkpoint, and put back if the call fails before that; a call killed in between is settled by
  the next claim of the folder (deleted if the new run has a last.pt, else put back).
- A call that fails before its first checkpoint leaves the folder as it found it: the config.json
  and `.lock` it wrote are removed again (and the folder itself, if it made it and it is empty).
- `resume` of a folder whose run has no `last.pt` is refused when that would throw work away
  (best.pt / student.pt, naming them; `--overwrite` starts again); a folder with only a config.json
  (no epoch finished) starts from epoch 1. A truncated best.pt beside a good last.pt is remade from
  last.pt when last.pt's epoch is the best one, else set aside as best.pt.unreadable, with a message.
- An exclusive `fcntl.flock` on `OUT/.lock` is held until the block ends: a second writer is refused
  with the holder's PID. The kernel drops the lock when its process dies, even by SIGKILL, so
  `--resume` works at once after a crash.
- Temporary files of interrupted saves are removed once the lock is held: only our own
  (`simkd_lite.tempfiles`: `.<name>.<PID>.<hex>.simkd-tmp`, writer no longer running); a user's
  `*.tmp` is never touched.
- `resume` compares the saved run description with the new one and refuses, listing the
  differences. Allowed to differ: where and how fast the run executes (`RUNTIME_FIELDS`, the
  teacher's path when its weights are the same) and the number of epochs as `check_epochs` allows.
- `best.pt` never lags `last.pt`: the trainer writes `best.pt` first, and a resume repairs a folder
  left by older versions, which wrote them the other way round.
- `OUT/config.json` (the run description) is written atomically, after all of this passed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from simkd_lite.checkpoints import atomic_save, atomic_write_text, read_checkpoint
from simkd_lite.errors import SimKDLiteError, first_file_on_the_way, writing
from simkd_lite.tempfiles import stale_temporaries

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not locked
    fcntl = None

LOCK_NAME = ".lock"
RUN_FILES = ("last.pt", "best.pt", "student.pt", "config.json")
# Everything a run writes into its folder: what --overwrite moves aside (and puts back).
RUN_OUTPUTS = (*RUN_FILES, "metrics.csv", "results.json", "histories.json", "tensorboard")
ASIDE_PREFIX = ".simkd-replaced."
# Training settings a resume may change: they decide where and how fast the run executes, not its result
# (each speed-up is checked against the plain path to float tolerance in tests/test_fast.py). Not among
# them: amp (bf16 changes the numbers) and device_data (another augmentation code path draws other crops).
RUNTIME_FIELDS = frozenset({"device", "num_workers", "eval_batch_size", "fold_bn", "channels_last",
                            "compile_teacher", "compile_student"})


# Files a run writes into its folder, and what they are (for the message when a folder is in the way).
WRITTEN_FILES = {LOCK_NAME: "lock file", "config.json": "run description", "last.pt": "checkpoint",
                 "best.pt": "best checkpoint", "student.pt": "deployable student", "metrics.csv": "per-epoch metrics"}


# ------------------------------------------------------------------------------ the folder
def check_run_paths(out: str | os.PathLike) -> None:
    """A folder where the run writes a file (e.g. OUT/metrics.csv made a folder) fails now, naming it."""
    folder = Path(out)
    for name, what in WRITTEN_FILES.items():
        path = folder / name
        if path.is_dir():
            raise SimKDLiteError(f"{path} is a folder, but the run writes its {what} there: move it away, "
                                 "or choose another --out")


def prepare_folder(out: str | os.PathLike) -> Path:
    """`out` as an existing folder (created if needed), or a one-line error saying why it cannot be."""
    if str(out) == "":
        raise SimKDLiteError("the output folder is an empty string: name a folder, e.g. --out runs/teacher")
    folder = Path(out)
    blocker = first_file_on_the_way(folder)
    if blocker is not None:
        raise SimKDLiteError(f"cannot use {folder} as the output folder: {blocker} is a file, not a folder")
    with writing(folder, "creating"):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


class FolderLock:
    """An exclusive, non-blocking `flock` on FOLDER/.lock; the file holds the owner's PID."""

    def __init__(self, folder: Path):
        self.folder, self.path, self.fd = folder, folder / LOCK_NAME, None

    def acquire(self) -> "FolderLock":
        if fcntl is None:
            return self
        with writing(self.path, "writing"):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SimKDLiteError(f"{self.folder} is in use by another run (PID {holder}); wait for it to end, "
                                 "or choose another --out") from None
        self.fd = fd
        try:
            with writing(self.path, "writing"):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temporaries(folder: Path, log: Callable[[str], None]) -> None:
    """Delete our own temporary files that interrupted saves left behind (only call while holding the lock).

    Only names of our form whose writer has ended (`simkd_lite.tempfiles`); any other file stays.
    """
    stale = stale_temporaries(folder)
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log(f"removed {len(stale)} temporary file(s) left by an interrupted save in {folder}: "
            + ", ".join(p.name for p in stale))


def notice(message: str) -> None:
    """A line the user must see even with --quiet (stderr): something happened to their files."""
    print(f"simkd-lite: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------ the claim
def plain(run: dict) -> dict:
    """`run` as config.json (and last.pt) hold it: plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(run, default=str))


@contextmanager
def claim_run_folder(out: str | os.PathLike, run: dict, *, resume: bool = False, overwrite: bool = False,
                     log: Callable[[str], None] = print) -> Iterator[bool]:
    """Own `out` for the run described by `run` (plain JSON values); yields True to resume from last.pt.

    If the block raises before the run's first checkpoint, the folder is left as it was found (see
    the module docstring); after it, the checkpoints stay for a --resume.
    """
    if resume and overwrite:
        raise SimKDLiteError("--resume and --overwrite contradict each other: choose one")
    check_run_paths(out)
    made_folder = not Path(out).is_dir()
    folder = prepare_folder(out)
    run = plain(run)
    had_lock = (folder / LOCK_NAME).exists()
    lock = FolderLock(folder).acquire()
    aside, written, failed = None, [], True
    try:
        remove_stale_temporaries(folder, log)
        settle_replaced(folder)
        had_config = (folder / "config.json").exists()
        resuming, aside = _decide(folder, run, resume, overwrite, log)
        atomic_write_text(json.dumps(run, indent=2) + "\n", folder / "config.json")
        written = [] if had_config and aside is None else ["config.json"]
        yield resuming
        failed = False
    finally:
        has_checkpoint = (folder / "last.pt").exists()
        if aside is not None:
            if has_checkpoint:  # the new run has its first checkpoint: the old one may go
                shutil.rmtree(aside, ignore_errors=True)
            else:
                put_back(folder, aside)
        elif failed and not has_checkpoint:
            for name in written:  # what this call added to a folder that held no run
                (folder / name).unlink(missing_ok=True)
        if failed and not has_checkpoint and not had_lock:
            (folder / LOCK_NAME).unlink(missing_ok=True)  # still ours: removed before the flock is dropped
        lock.release()
        if failed and made_folder and not has_checkpoint:
            _remove_if_empty(folder)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or gone): leave it
        pass


# ------------------------------------------------------------------------- --overwrite, safely
def move_aside(folder: Path) -> Path:
    """Move the run's files (`RUN_OUTPUTS`) into a fresh `FOLDER/.simkd-replaced.<PID>/`; returns it."""
    aside = folder / f"{ASIDE_PREFIX}{os.getpid()}"
    with writing(aside, "creating"):
        if aside.exists():
            shutil.rmtree(aside)
        aside.mkdir()
        for name in RUN_OUTPUTS:
            if (folder / name).exists():
                os.replace(folder / name, aside / name)
    return aside


def put_back(folder: Path, aside: Path) -> None:
    """Undo `move_aside`: the new run's files (it has no checkpoint yet) give way to the old run's."""
    with writing(folder, "restoring the run in"):
        for name in RUN_OUTPUTS:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            if (aside / name).exists():
                os.replace(aside / name, target)
        shutil.rmtree(aside, ignore_errors=True)
    notice(f"--overwrite: the new run in {folder} wrote no checkpoint (the call failed or was interrupted); "
           "put the previous run back as it was")


def settle_replaced(folder: Path) -> None:
    """Finish what an --overwrite killed mid-way left (we hold the lock, so its process has ended):
    the old run is deleted if the new one has a last.pt, else put back."""
    for aside in sorted(folder.glob(f"{ASIDE_PREFIX}*")):
        if not aside.is_dir():
            continue
        if (folder / "last.pt").exists():
            shutil.rmtree(aside, ignore_errors=True)
            notice(f"removed {aside}: the run an interrupted --overwrite replaced (the new run has its checkpoint)")
        else:  # the interrupted new run never finished an epoch
            put_back(folder, aside)


def _decide(folder: Path, run: dict, resume: bool, overwrite: bool, log) -> tuple[bool, Path | None]:
    """(resume from last.pt?, the folder the old run was moved aside to by --overwrite, or None)."""
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if not present:
        return False, None
    if overwrite:
        summary = _summary(folder)
        aside = move_aside(folder)
        notice(f"--overwrite: moved the run in {folder} ({summary}) aside to {aside}; it is deleted once the new "
               "run has written its first checkpoint, and put back if this call fails before that")
        return False, aside
    if not resume:
        raise SimKDLiteError(f"{folder} already holds a run ({_summary(folder)}): pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --out")
    last = read_checkpoint(folder / "last.pt") if (folder / "last.pt").exists() else None
    saved = _saved_description(folder, last)
    differences = describe_differences(saved, run) if saved is not None else []
    if differences:
        raise SimKDLiteError(f"cannot continue {folder}: it holds a run with other settings ("
                             + "; ".join(differences) + "). Continue it with the saved settings, pass --overwrite "
                             "to replace it, or choose another --out")
    if last is None:
        kept = [name for name in present if name != "config.json"]
        if kept:  # e.g. last.pt removed to save space: continuing would throw best.pt / student.pt away
            raise SimKDLiteError(f"cannot resume {folder}: it holds {', '.join(kept)} but no last.pt, the file a run "
                                 "continues from; pass --overwrite to train it again from epoch 1 (the old files "
                                 "are kept until the new run's first checkpoint), or choose another --out")
        log(f"{folder} holds a run that finished no epoch (only config.json): starting it from epoch 1")
        return False, None
    check_epochs(folder, saved, run, last["epoch"])
    repair_best(folder, last, log)
    total = run["train"]["epochs"]
    log(f"{folder} holds a finished run ({last['epoch']}/{total} epochs): reusing it" if last["epoch"] >= total
        else f"resuming {folder} after epoch {last['epoch']} of {total}")
    return True, None


def _summary(folder: Path) -> str:
    """A few words on what the folder holds, e.g. 'last.pt after epoch 7, best 96.94%'."""
    try:
        last = read_checkpoint(folder / "last.pt")
        return f"last.pt after epoch {last['epoch']}, best test top-1 {last.get('best_acc', 0.0):.2f}%"
    except (OSError, ValueError, KeyError):
        return ", ".join(name for name in RUN_FILES if (folder / name).exists())


def _saved_description(folder: Path, last: dict | None) -> dict | None:
    """The description the run was started with: last.pt's copy, else config.json (older runs)."""
    if last is not None and "run" in last:
        return last["run"]
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        if last is not None and "config" in last:  # a run of an older version, started by `fit` itself
            return {"train": last["config"]}
        return None


def describe_differences(saved: dict, new: dict) -> list[str]:
    """'key: saved -> new' for every setting that changed, except those a resume may change.

    Keys missing from `saved` (runs of older versions) are not compared.
    """
    flat_saved, flat_new = _flatten(saved), _flatten(new)
    same_teacher = "teacher_sha256" in flat_saved and flat_saved.get("teacher_sha256") == flat_new.get("teacher_sha256")
    differences = []
    for key, before in flat_saved.items():
        after = flat_new.get(key, "(not given)")
        if key.startswith("train.") and key[len("train."):] in RUNTIME_FIELDS | {"epochs"}:
            continue
        if key == "teacher" and same_teacher:  # the same weights under another path
            continue
        if before != after:
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_epochs(folder: Path, saved: dict, new: dict, done: int) -> None:
    """Only multistep runs may change their number of epochs on resume (their learning rate does not
    depend on the total), and not below the `done` epochs last.pt holds; onecycle and cosine set every
    step's learning rate from the total, so there it must stay."""
    before = (saved or {}).get("train", {}).get("epochs", new["train"]["epochs"])
    after, schedule = new["train"]["epochs"], new["train"]["schedule"]
    if after == before:
        return
    if schedule != "multistep":
        raise SimKDLiteError(f"cannot continue {folder}: it was started with --epochs {before}, and the {schedule} "
                             "schedule sets every step's learning rate from the total number of epochs, so it "
                             f"cannot change to {after} on resume; keep --epochs {before}, or start a new run "
                             "(--overwrite or another --out)")
    if after < done:
        raise SimKDLiteError(f"cannot continue {folder} with --epochs {after}: it has already completed {done} "
                             "epochs")


# ------------------------------------------------------------------------ best.pt vs last.pt
def best_epoch(last: dict) -> int | None:
    """The epoch whose test top-1 is last.pt's `best_acc` (the first such one), or None."""
    for record in last.get("history", []):
        if record.get("test_top1") is not None and record["test_top1"] == last.get("best_acc"):
            return record["epoch"]
    return None


def repair_best(folder: Path, last: dict, log: Callable[[str], None]) -> None:
    """Make best.pt hold the epoch last.pt calls the best, where last.pt can tell.

    Older versions wrote last.pt before best.pt, so a kill between the two left best.pt one
    improvement behind (its best epoch is then last.pt's own epoch: copy it). Now best.pt is
    written first, so after a crash it may be one epoch ahead: the replayed epoch rewrites it.
    """
    wanted = best_epoch(last)
    if wanted is None:
        return
    path = folder / "best.pt"
    try:
        held = read_checkpoint(path).get("epoch") if path.exists() else None
    except SimKDLiteError as err:  # truncated or corrupted; last.pt (read fine) is what a resume needs
        _replace_unreadable_best(path, last, wanted, err, log)
        return
    if held == wanted or (held is not None and held > last["epoch"]):
        return
    if wanted == last["epoch"]:
        atomic_save(last, path)
        log(f"repaired {path}: it held epoch {held}, but last.pt records the best test top-1 at epoch "
            f"{wanted} (a crash between the two writes); copied it from last.pt")
    else:
        log(f"warning: {path} holds epoch {held}, but the best test top-1 was at epoch {wanted}; "
            "those weights were not saved")


def _replace_unreadable_best(path: Path, last: dict, wanted: int, err: Exception, log) -> None:
    """An unreadable best.pt beside a good last.pt: remade from last.pt when that holds the best epoch,
    else kept as best.pt.unreadable (the best epoch's weights are gone; the next improvement rewrites best.pt)."""
    if wanted == last["epoch"]:
        atomic_save(last, path)
        notice(f"{path} was unreadable ({err}); remade it from last.pt, which holds the best epoch ({wanted})")
        return
    broken = path.with_name(path.name + ".unreadable")
    with writing(path, "renaming"):
        os.replace(path, broken)
    notice(f"{path} was unreadable ({err}); kept it as {broken.name}. The best epoch ({wanted}) is not in last.pt "
           f"(epoch {last['epoch']}), so its weights cannot be remade; the next improvement writes best.pt again")
