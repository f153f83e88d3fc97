"""The comparison row in one run: each student trained together equals its own separate run."""
import copy
import json
from dataclasses import replace

import pytest
import torch

from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.data import load_dataset
from simkd_lite.experiments.jobs import StudentsJob, fit_students
from simkd_lite.experiments.profiles import PAPER_METHOD_OPTIONS
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


def _state(result):
    return result.distiller.state_dict()


def _students(methods, teacher, bundle, config, out, *, stack=False, **kwargs):
    """One `fit` of `methods`' resnet8_w8 students (the paper's method options), OUT/<method> each."""
    job = StudentsJob(tuple(methods), "resnet8_w8", teacher, {m: PAPER_METHOD_OPTIONS.get(m, {}) for m in methods},
                      stack=stack)
    return fit_students(job, bundle, config, {m: out / m for m in methods}, progress=False, **kwargs)


def _compare(separate, together, exact):
    for s, t in zip(separate, together):
        assert s.method == t.method
        a, b = _state(s), _state(t)
        assert set(a) == set(b)
        for key in a:
            if not isinstance(a[key], torch.Tensor):
                continue
            if exact or not a[key].is_floating_point():
                assert torch.equal(a[key].cpu(), b[key].cpu()), (s.method, key)
            else:
                rel = ((a[key] - b[key]).float().norm() / a[key].float().norm().clamp_min(1e-12)).item()
                assert rel < 1e-4, (s.method, key, rel)
        hs = [{k: v for k, v in h.items() if k != "seconds"} for h in s.history]
        ht = [{k: v for k, v in h.items() if k != "seconds"} for h in t.history]
        if exact:
            assert hs == ht
        else:
            assert [h["loss_" + next(iter(k[5:] for k in h if k.startswith("loss_")))] for h in ht] == \
                pytest.approx([h["loss_" + next(iter(k[5:] for k in h if k.startswith("loss_")))] for h in hs], rel=1e-3)


def _run(digits, config, tmp_path, device="cpu", stack=False):
    """Each method's separate run (eager: without a CUDA graph), then all of them in one joint run."""
    config = replace(config, device=device)
    teacher = _teacher()
    separate = [_students([m], teacher, digits, replace(config, cuda_graph=False), tmp_path / "separate", log=None)[0]
                for m in METHODS]
    together = _students(METHODS, teacher, digits, config, tmp_path / "together", stack=stack, log=None)
    return separate, together


@pytest.mark.parametrize("name", list(CONFIGS))
def test_students_trained_together_equal_their_separate_runs_on_cpu(digits, tmp_path, name):
    separate, together = _run(digits, CONFIGS[name], tmp_path)
    _compare(separate, together, exact=True)  # CPU, one thread: bitwise the same weights and histories


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stacked_students_equal_their_separate_runs_on_cpu(tmp_path, name):
    """One batched encoder for all four students (grouped convolutions): the same weights to float tolerance.

    A few steps (one epoch of 5 batches): a grouped convolution rounds differently, and this training
    amplifies rounding fast (measured: two separate vanilla runs of the full 2 epochs, one and two CPU
    threads, end 16% apart in a BatchNorm bias), so a longer comparison would test that, not stacking.
    """
    few_steps = load_dataset("digits", train_subset=320, seed=0)
    separate, together = _run(few_steps, replace(CONFIGS[name], epochs=1), tmp_path, stack=True)
    _compare(separate, together, exact=False)
    simkd = next(s.distiller for s in together if s.method == "simkd")
    assert simkd.student.get_classifier().weight.grad is None  # SimKD never trains its own head, as alone
    storages = {p.untyped_storage().data_ptr() for s in together for p in s.distiller.student.parameters()}
    assert len(storages) == sum(len(list(s.distiller.student.parameters())) for s in together)  # unstacked
    for summary in together:  # a checkpoint holds this student's weights only, not the whole stack
        folder = tmp_path / "together" / summary.method
        model = read_checkpoint(folder / "last.pt")["model"]
        assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in model.values())
    assert json.loads((tmp_path / "together" / "kd" / "config.json").read_text())["stacked"] is True


def test_stacking_refuses_students_it_cannot_batch():
    from simkd_lite.training.stacked import StackedStudents, stacking_unsupported

    assert "one student" in stacking_unsupported([create_model("resnet8", 10, 1)])
    assert "differ" in stacking_unsupported([create_model("resnet8", 10, 1), create_model("resnet14", 10, 1)])
    assert "not a zoo model" in stacking_unsupported([torch.nn.Linear(2, 2)] * 2)

    own = create_model("resnet8", 10, 1)

    class OwnForward(type(own)):
        def forward(self, x):
            return super().forward(x) * 2

    own.__class__ = OwnForward  # the same weights, a forward of its own
    assert "forward_stages" in stacking_unsupported([own, own])
    assert stacking_unsupported([create_model("MobileNetV2", 10, 3), create_model("MobileNetV2", 10, 3)]) is None
    with pytest.raises(ValueError, match="cannot stack"):
        StackedStudents([create_model("resnet8", 10, 1), create_model("resnet8", 100, 1)])


def test_stacked_forward_equals_each_students_own():
    from simkd_lite.training.stacked import StackedStudents

    torch.manual_seed(0)
    students = [create_model("resnet8_w8", 10, 1) for _ in range(3)]
    copies = [copy.deepcopy(s) for s in students]
    x = torch.randn(16, 1, 8, 8)
    stack = StackedStudents(students)
    with stack.reading(x):
        outputs = [s.forward_feature_list(x) for s in students]
    for (maps, logits), alone in zip(outputs, copies):
        alone_maps, alone_logits = alone.forward_feature_list(x)  # train mode: batch statistics, like the stack
        assert torch.allclose(logits, alone_logits, atol=1e-5)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(maps, alone_maps))
    for student, alone in zip(students, copies):  # BatchNorm running statistics updated per student
        assert torch.allclose(student.state_dict()["bn1.running_mean"], alone.state_dict()["bn1.running_mean"])
    assert "forward_stages" not in vars(students[0])  # the slices are read only inside `reading`


@pytest.mark.parametrize("channels_last", [False, True])
def test_stacked_gradients_match_float64(digits, channels_last):
    """The stacked backward is as accurate as a plain float32 one (channels_last students included)."""
    import torch.nn.functional as F

    from simkd_lite.training.loop import materialize
    from simkd_lite.training.stacked import StackedStudents

    torch.manual_seed(0)
    base = create_model("resnet8_w8", 10, 1)
    x, y = (t[:64] for t in materialize(digits.train))
    reference = copy.deepcopy(base).double()
    F.cross_entropy(reference(x.double()), y).backward()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    students = [copy.deepcopy(base).to(memory_format=layout) for _ in range(2)]
    stack = StackedStudents(students)
    x = x.contiguous(memory_format=layout)
    with stack.reading(x):
        loss = sum(F.cross_entropy(s(x), y) for s in students)
    loss.backward()
    stack.share_grads()
    for student in students:
        for p, q in zip(student.parameters(), reference.parameters()):
            assert ((p.grad.double() - q.grad).norm() / q.grad.norm()).item() < 1e-4


def test_together_writes_one_run_per_method(digits, tmp_path):
    _, together = _run(digits, replace(CONFIGS["live-teacher"], epochs=1), tmp_path)
    for summary in together:
        folder = tmp_path / "together" / summary.method
        result = json.loads((folder / "results.json").read_text())
        assert result["method"] == summary.method and result["together"] == list(METHODS)
        assert result["top1"] == summary.top1 and len(result["history"]) == 1
        assert read_checkpoint(folder / "last.pt")["method"] == summary.method
        assert json.loads((folder / "config.json").read_text())["together"] == list(METHODS)
        assert (folder / "best.pt").exists() and (folder / "config.json").exists()
    assert (tmp_path / "together" / "simkd" / "student.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_students_trained_together_in_one_cuda_graph_match_separate_runs(digits, tmp_path, deterministic_cuda):
    # separate: eager CUDA runs; together: one graph, one stream per student, a partial last batch each epoch
    separate, together = _run(digits, CONFIGS["live-teacher"], tmp_path, device="cuda")
    _compare(separate, together, exact=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stacked_students_in_one_cuda_graph_match_separate_runs(tmp_path, deterministic_cuda):
    # separate: eager CUDA runs; together: the stacked step captured in one graph, a partial last batch
    few_steps = load_dataset("digits", train_subset=330, seed=0)  # 5 full batches of 64 and one of 10
    separate, together = _run(few_steps, replace(CONFIGS["live-teacher"], epochs=1), tmp_path, device="cuda",
                              stack=True)
    _compare(separate, together, exact=False)


# ------------------------------------------------------------------------------------ resume after a kill
class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no `except Exception` catches it."""


def _last_weights(folder):
    last = read_checkpoint(folder / "last.pt")
    return last["epoch"], {**last["model"], **last["extras"]}


def test_a_killed_joint_run_resumes_each_student_from_its_own_last_pt(digits, tmp_path, monkeypatch):
    """Killed between two students' saves (two at epoch 2, two at epoch 1), the joint run resumes each from its
    own last.pt and ends with every student's weights bitwise equal to an uninterrupted joint run's (CPU)."""
    from simkd_lite.training import loop

    config = replace(CONFIGS["live-teacher"], epochs=3, device="cpu")
    def joint(out, **kwargs):
        return _students(METHODS, _teacher(), digits, config, out, **kwargs)

    joint(tmp_path / "straight", log=None)
    saves, real_save = [], loop.atomic_save

    def save_then_die(state, path):
        real_save(state, path)
        saves.append(path)
        if sum(p.name == "last.pt" for p in saves) == 6:  # epoch 2: vanilla and kd saved, fitnet and simkd not
            raise Killed

    monkeypatch.setattr(loop, "atomic_save", save_then_die)
    with pytest.raises(Killed):
        joint(tmp_path / "killed", log=None)
    monkeypatch.setattr(loop, "atomic_save", real_save)
    assert [_last_weights(tmp_path / "killed" / m)[0] for m in METHODS] == [2, 2, 1, 1]

    with pytest.raises(Exception, match="already holds a run"):  # without resume, the folders are refused
        joint(tmp_path / "killed", log=None)
    said = []
    resumed = joint(tmp_path / "killed", resume=True, log=said.append)
    for method, epoch in zip(METHODS, [2, 2, 1, 1]):
        assert any(f"[{method}] resuming from" in line and f"after epoch {epoch}" in line for line in said), said
    for method, summary in zip(METHODS, resumed):
        done, weights = _last_weights(tmp_path / "killed" / method)
        _, expected = _last_weights(tmp_path / "straight" / method)
        assert done == 3 and set(weights) == set(expected)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(weights[key], value), (method, key)
        assert [h["epoch"] for h in summary.history] == [1, 2, 3]
        straight = read_checkpoint(tmp_path / "straight" / method / "last.pt")["history"]
        assert [{k: v for k, v in h.items() if k != "seconds"} for h in summary.history] == \
            [{k: v for k, v in h.items() if k != "seconds"} for h in straight]
    # resuming a finished joint run trains nothing and reports the same numbers
    again = joint(tmp_path / "killed", resume=True, log=None)
    assert [s.top1 for s in again] == [s.top1 for s in resumed]


def test_demo_together_killed_with_sigkill_continues_each_student(tmp_path, digits_teacher):
    """`simkd-lite demo --together`, SIGKILLed mid-run and started again, says it continues each student and
    ends with every student's last.pt weights bitwise equal to an uninterrupted joint run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, run_cli

    args = ["demo", "--dataset", "digits", "--together", "--teacher", str(digits_teacher), "--epochs", "6",
            "--threads", "1"]
    run_cli(*args, "--quiet", "--out", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "simkd_lite", *args, "--quiet", "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # some epochs done, then kill without warning
        try:
            if (killed / "simkd" / "last.pt").exists() and read_checkpoint(killed / "simkd" / "last.pt")["epoch"] >= 2:
                break
        except Exception:  # noqa: BLE001 - a file being replaced: look again
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {m: read_checkpoint(killed / m / "last.pt")["epoch"] for m in METHODS if (killed / m / "last.pt").exists()}
    assert done and min(done.values()) < 6, "the run finished before it could be killed"
    resumed = run_cli(*args, "--out", str(killed))
    for method, epoch in done.items():
        if epoch < 6:
            assert f"[{method}] resuming from" in resumed.stdout and f"after epoch {epoch}" in resumed.stdout
    for method in METHODS:
        _, weights = _last_weights(killed / method)
        _, expected = _last_weights(tmp_path / "straight" / method)
        assert all(torch.equal(weights[k], v) for k, v in expected.items() if isinstance(v, torch.Tensor)), method


def test_a_joint_run_under_torchrun_is_refused_before_any_folder_is_claimed(tmp_path, monkeypatch):
    from simkd_lite.distillers import create_distiller
    from simkd_lite.training.loop import fit

    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets
    students = {name: create_distiller("vanilla", create_model("resnet8_w8", 10, 1)) for name in ("a", "b")}
    with pytest.raises(ValueError, match="without torchrun"):
        fit(students, [], [], TrainConfig(epochs=1), {name: tmp_path / name for name in students}, log=None)
    assert not list(tmp_path.iterdir())
