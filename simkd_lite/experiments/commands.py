"""What the command line needs besides the experiment API, so that `cli.py` imports only `simkd_lite.experiments`.

Data-set housekeeping, the one device/DDP start of a process, a method's needs, and the wording of
results. Imports that load torch stay inside the functions: `simkd-lite --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path

from simkd_lite.training.metrics import BEST_ON_TEST_NOTE, describe  # noqa: F401 (re-exported; imports no torch)


def list_datasets() -> list[str]:
    from simkd_lite.data import list_datasets as names

    return names()


def locate_dataset(name: str, data_root: str | Path) -> dict:
    from simkd_lite.data import locate_dataset as locate

    return locate(name, data_root)


def fetch_dataset(name: str, data_root: str | Path) -> Path:
    from simkd_lite.data import fetch_dataset as fetch

    return fetch(name, data_root)


def needs_teacher(method: str) -> bool:
    """Whether `method` distils from a teacher (a misspelt method fails with close names)."""
    from simkd_lite.distillers import get_distiller_class

    return get_distiller_class(method).needs_teacher


def start_process(device: str | None) -> bool:
    """Under torchrun, join the process group on this rank's device (resolved here, once); True on the
    process that reports (rank 0, or the only one)."""
    from simkd_lite.training import distributed

    if not distributed.launched_by_torchrun():
        return True
    from simkd_lite.training.runtime import select_device

    distributed.init_distributed(select_device(device))
    return distributed.is_main_process()


def bench_teacher(teacher: str, trust: bool = False):
    """`bench --teacher`: a checkpoint file becomes its network (architecture and real weights; a student
    file is refused with what it is); else a model name."""
    if not Path(teacher).is_file():
        return teacher
    from simkd_lite.experiments.loading import load_teacher_network

    return load_teacher_network(teacher, None, trust=trust)


def check_resumable(out: str | Path) -> None:
    """The CLI's --resume: OUT must hold a run to continue (`training.preflight.check_resumable`)."""
    from simkd_lite.training.preflight import check_resumable as check

    check(out)


def set_tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on CUDA on or off (`training.runtime.set_tf32`)."""
    from simkd_lite.training.runtime import set_tf32 as switch

    switch(enabled)


def write_text(path: str | Path, text: str) -> None:
    """`text` into `path`, atomically (readers never see half a file)."""
    from simkd_lite.checkpoints import atomic_write_text

    atomic_write_text(text, path)
