"""Shared test set-up: headless plotting, and CLI runs that find the package and its data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """`python -m simkd_lite ARGS` in a fresh process (like a user typing `simkd-lite ARGS`)."""
    result = subprocess.run([sys.executable, "-m", "simkd_lite", *args], capture_output=True, text=True,
                            timeout=timeout, cwd=popen.pop("cwd", ROOT), **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"simkd-lite {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny forwards: on a busy 2-core machine, torch's threads
    wait on each other far longer than they compute (measured: ~50 ms per small convolution)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A small digits teacher trained once per test session by our own CLI (a few seconds)."""
    out = tmp_path_factory.mktemp("digits_teacher")
    run_cli("train-teacher", "--dataset", "digits", "--epochs", "6", "--out", str(out), "--quiet", "--threads", "1")
    return out / "last.pt"
