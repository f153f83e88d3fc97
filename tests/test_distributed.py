"""Scale-out: torchrun with 2 CPU processes (gloo) on digits ends with identical replicas, and `--batch-size`
is the global batch, split among the processes as the official code splits it across GPUs."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.training import distributed as ddp
from simkd_lite.training.loop import TrainConfig
from simkd_lite.training.runtime import execution_record


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "simkd_lite", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_torchrun_two_cpu_ranks_end_with_identical_student_weights_and_split_the_global_batch(tmp_path,
                                                                                              digits_teacher):
    result = _torchrun("distill", "--method", "simkd", "--dataset", "digits", "--teacher", str(digits_teacher),
                       "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    # digits: 1,437 train images -> 719 per rank (the sampler pads) -> 23 steps of 32 (12 if each rank took 64)
    assert "DDP: world size 2 (gloo), global batch size 64, 32 per process, 23 steps per epoch" in result.stdout
    assert result.stdout.count("epoch 2/2") == 1  # rank 0 alone logs
    digests = read_checkpoint(tmp_path / "last.pt")["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert (tmp_path / "student.pt").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["batch_size"], config["world_size"], config["batch_size_per_process"]) == (64, 2, 32)
    assert config["train"]["batch_size"] == 64 and config["tf32"] is False


def test_torchrun_refuses_a_global_batch_that_does_not_divide(tmp_path, digits_teacher):
    result = _torchrun("distill", "--method", "vanilla", "--dataset", "digits", "--epochs", "1", "--batch-size", "63",
                       "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode != 0
    assert "--batch-size 63 is the global batch and must divide among the 2 processes" in result.stderr
    assert not (tmp_path / "last.pt").exists()


def test_batch_split_arithmetic(monkeypatch):
    assert ddp.batch_size_per_process(64, 2) == 32 and ddp.batch_size_per_process(64, 1) == 64
    assert ddp.batch_size_per_process(64, 4) == 16
    with pytest.raises(ValueError, match="must divide among the 3 processes"):
        ddp.batch_size_per_process(64, 3)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it, before the process group exists
    assert execution_record(TrainConfig(batch_size=64)) == {"tf32": False, "batch_size": 64, "world_size": 2,
                                                            "batch_size_per_process": 32}
