"""Scale-out: torchrun with 2 CPU processes (gloo) on digits ends with identical replicas."""
import os
import subprocess
import sys

from conftest import ROOT
from simkd_lite.checkpoints import read_checkpoint


def test_torchrun_two_cpu_ranks_end_with_identical_student_weights(tmp_path, digits_teacher):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "simkd_lite", "distill", "--method", "simkd", "--dataset", "digits",
               "--teacher", str(digits_teacher), "--epochs", "2", "--device", "cpu", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DDP: world size 2 (gloo)" in result.stdout
    assert result.stdout.count("epoch 2/2") == 1  # rank 0 alone logs
    digests = read_checkpoint(tmp_path / "last.pt")["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert (tmp_path / "student.pt").exists()
