"""The comparison row in one run: each student trained together equals its own separate run."""
import json
from dataclasses import replace

import pytest
import torch

from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.data import load_dataset
from simkd_lite.experiments.jobs import distill_student
from simkd_lite.experiments.profiles import PAPER_METHOD_OPTIONS
from simkd_lite.experiments.jobs import distill_together
from simkd_lite.training.loop import TrainConfig
from simkd_lite.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")
from test_graphed import deterministic_cuda  # noqa: E402,F401  (a fixture)
METHODS = ("vanilla", "kd", "fitnet", "simkd")
# per-step schedule with cached teacher outputs (the quick recipe), and the paper's per-epoch schedule with
# the teacher run on every batch (shared once per batch by all students)
CONFIGS = {
    "cached-teacher": TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="onecycle", augment=False,
                                  cache_teacher=True, cuda_graph=True),
    "live-teacher": TrainConfig(epochs=2, batch_size=64, lr=0.05, milestones=(1,), augment=False,
                                cache_teacher=False, cuda_graph=True),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _teacher():
    torch.manual_seed(123)
    return create_model("resnet8", 10, 1)


def _state(summary):
    return summary["distiller"].state_dict()


def _compare(separate, together, exact):
    for s, t in zip(separate, together):
        assert s["method"] == t["method"]
        a, b = _state(s), _state(t)
        assert set(a) == set(b)
        for key in a:
            if not isinstance(a[key], torch.Tensor):
                continue
            if exact or not a[key].is_floating_point():
                assert torch.equal(a[key].cpu(), b[key].cpu()), (s["method"], key)
            else:
                rel = ((a[key] - b[key]).float().norm() / a[key].float().norm().clamp_min(1e-12)).item()
                assert rel < 1e-4, (s["method"], key, rel)
        hs = [{k: v for k, v in h.items() if k != "seconds"} for h in s["history"]]
        ht = [{k: v for k, v in h.items() if k != "seconds"} for h in t["history"]]
        if exact:
            assert hs == ht
        else:
            assert [h["loss_" + next(iter(k[5:] for k in h if k.startswith("loss_")))] for h in ht] == \
                pytest.approx([h["loss_" + next(iter(k[5:] for k in h if k.startswith("loss_")))] for h in hs], rel=1e-3)


def _run(digits, config, tmp_path, device="cpu"):
    config = replace(config, device=device)
    teacher = _teacher()
    separate = [distill_student(m, "resnet8_w8", teacher, digits, config, tmp_path / "separate" / m,
                                options=PAPER_METHOD_OPTIONS.get(m, {}), log=None, progress=False) for m in METHODS]
    together = distill_together(METHODS, "resnet8_w8", teacher, digits, config, tmp_path / "together",
                                options={m: PAPER_METHOD_OPTIONS.get(m, {}) for m in METHODS}, log=None, progress=False)
    return separate, together


@pytest.mark.parametrize("name", list(CONFIGS))
def test_students_trained_together_equal_their_separate_runs_on_cpu(digits, tmp_path, name):
    separate, together = _run(digits, CONFIGS[name], tmp_path)
    _compare(separate, together, exact=True)  # CPU, one thread: bitwise the same weights and histories


def test_together_writes_one_run_per_method(digits, tmp_path):
    _, together = _run(digits, replace(CONFIGS["live-teacher"], epochs=1), tmp_path)
    for summary in together:
        folder = tmp_path / "together" / summary["method"]
        result = json.loads((folder / "results.json").read_text())
        assert result["method"] == summary["method"] and result["together"] == list(METHODS)
        assert result["top1"] == summary["top1"] and len(result["history"]) == 1
        assert read_checkpoint(folder / "last.pt")["method"] == summary["method"]
        assert (folder / "best.pt").exists() and (folder / "config.json").exists()
    assert (tmp_path / "together" / "simkd" / "student.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_students_trained_together_in_one_cuda_graph_match_separate_runs(digits, tmp_path, deterministic_cuda):
    # separate: eager CUDA runs; together: one graph, one stream per student, a partial last batch each epoch
    config = CONFIGS["live-teacher"]
    teacher = _teacher()
    eager = replace(config, device="cuda", cuda_graph=False)
    separate = [distill_student(m, "resnet8_w8", teacher, digits, eager, tmp_path / "separate" / m,
                                options=PAPER_METHOD_OPTIONS.get(m, {}), log=None, progress=False) for m in METHODS]
    together = distill_together(METHODS, "resnet8_w8", teacher, digits, replace(config, device="cuda"),
                                tmp_path / "together", options={m: PAPER_METHOD_OPTIONS.get(m, {}) for m in METHODS},
                                log=None, progress=False)
    _compare(separate, together, exact=False)
