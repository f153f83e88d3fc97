"""The training loop (`training.loop.fit`): a tiny run, checkpoints that survive SIGKILL, bitwise resume, the NaN guard."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from conftest import run_cli
from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.data import load_dataset
from simkd_lite.distillers import Distiller, create_distiller
from simkd_lite.experiments.profiles import get_profile, profile_table
from simkd_lite.training.loop import TrainConfig, TrainingDivergedError, fit
from simkd_lite.training.metrics import summarize
from simkd_lite.models import create_model

TINY = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="onecycle", augment=False, cache_teacher=True)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_fit_trains_on_digits_and_writes_official_layout_checkpoints(tmp_path, digits):
    torch.manual_seed(0)
    distiller = create_distiller("vanilla", create_model("resnet8_w8", 10, 1))
    history = fit(distiller, digits.train, digits.test, TINY, tmp_path, meta={"model_name": "resnet8_w8"}, log=None)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss_ce"] < history[0]["loss_ce"]
    assert history[-1]["test_top1"] > 50.0  # chance is 10%
    assert {"lr", "train_top1", "test_top1", "seconds"} <= set(history[0])
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 3 and last["model_name"] == "resnet8_w8"
    assert set(last["model"]) == set(create_model("resnet8_w8", 10, 1).state_dict())
    assert read_checkpoint(tmp_path / "best.pt")["best_acc"] == max(h["test_top1"] for h in history)


def test_simkd_checkpoint_carries_the_official_proj_entry(tmp_path, digits):
    torch.manual_seed(0)
    teacher = create_model("resnet8", 10, 1)
    distiller = create_distiller("simkd", create_model("resnet8_w8", 10, 1), teacher, factor=4)
    fit(distiller, digits.train, digits.test, replace(TINY, epochs=1), tmp_path, log=None)
    last = read_checkpoint(tmp_path / "last.pt")
    assert set(last["proj"]) == set(distiller.projector.state_dict())
    assert last["method"] == "simkd"


class ExplodingDistiller(Distiller):
    """A vanilla student whose loss turns NaN at the third step of the second epoch."""

    method, needs_teacher = "exploding", False

    def __init__(self, student, steps_per_epoch: int):
        super().__init__(student)
        self.steps_per_epoch, self.calls = steps_per_epoch, 0

    def forward_train(self, x, y, teacher_out=None):
        self.calls += 1
        logits = self.student(x)
        scale = float("nan") if self.calls == self.steps_per_epoch + 3 else 1.0
        return logits, {"ce": torch.nn.functional.cross_entropy(logits, y) * scale}


def test_nan_loss_stops_with_epoch_step_and_last_good_checkpoint(tmp_path, digits):
    distiller = ExplodingDistiller(create_model("resnet8_w8", 10, 1), steps_per_epoch=-(-len(digits.train) // 64))
    with pytest.raises(TrainingDivergedError) as err:
        fit(distiller, digits.train, digits.test, TINY, tmp_path, log=None)
    message = str(err.value)
    assert "epoch 2, step 3" in message and "last.pt (after epoch 1)" in message
    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the good epoch is kept


def _weights(path):
    return read_checkpoint(path)["model"]


def test_sigkill_then_resume_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, digits_teacher):
    args = ["distill", "--method", "simkd", "--dataset", "digits", "--teacher", str(digits_teacher),
            "--epochs", "8", "--seed", "3", "--quiet", "--threads", "1"]
    run_cli(*args, "--out", str(tmp_path / "straight"))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "simkd_lite", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some epochs are done, then kill without warning
        if (killed / "last.pt").exists() and read_checkpoint(killed / "last.pt")["epoch"] >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = read_checkpoint(killed / "last.pt")["epoch"]
    assert interrupted_at < 8, "the run finished before it could be killed"

    rows_before = _metrics_epochs(killed)
    assert rows_before == list(range(1, interrupted_at + 1))  # the CSV matches last.pt, even after SIGKILL
    run_cli(*args, "--out", str(killed), "--resume")
    straight, resumed = _weights(tmp_path / "straight" / "last.pt"), _weights(killed / "last.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert read_checkpoint(killed / "last.pt")["epoch"] == 8
    assert len(read_checkpoint(killed / "last.pt")["history"]) == 8
    assert _metrics_epochs(killed) == list(range(1, 9))  # continued, no duplicated or missing epoch
    assert _metrics_epochs(tmp_path / "straight") == list(range(1, 9))


def _metrics_epochs(out):
    import csv

    with open(out / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


SAVER = """
import sys, torch
from simkd_lite.checkpoints import atomic_save
i = 0
while True:
    i += 1
    atomic_save({"step": i, "payload": torch.full((2_000_000,), float(i))}, sys.argv[1])
"""


def test_a_checkpoint_survives_a_kill_in_the_middle_of_saving(tmp_path):
    path = tmp_path / "ckpt.pt"
    for delay in (0.01, 0.13, 0.37):  # kill at arbitrary moments of the save loop
        path.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)])
        while not path.exists():  # the first save has landed: from now on a kill can hit any moment
            time.sleep(0.005)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = torch.load(path)  # always a complete file: the old one or the new one
        assert torch.all(state["payload"] == float(state["step"]))


def test_resume_without_last_pt_starts_fresh(tmp_path, digits):
    distiller = create_distiller("vanilla", create_model("resnet8_w8", 10, 1))
    history = fit(distiller, digits.train, digits.test, replace(TINY, epochs=1), tmp_path, resume=True, log=None)
    assert len(history) == 1


def test_profiles_table_and_paper_recipe():
    paper = get_profile("paper", "cifar100")
    assert (paper.student.epochs, paper.student.batch_size, paper.student.lr) == (240, 64, 0.05)
    assert paper.student.milestones == (150, 180, 210) and paper.student.weight_decay == 5e-4
    assert paper.student_config("ShuffleV2").lr == 0.01 and paper.teacher_config("ShuffleV2").lr == 0.01
    assert "quick" in profile_table() and "paper" in profile_table()
    with pytest.raises(ValueError, match="Available"):
        get_profile("quick", "imagenet")


def test_fast_and_plain_paths_agree_within_float_tolerance(tmp_path, digits):
    """Folded-BN channels_last teacher and channels_last student vs. the plain eager path, a few steps."""
    plain = replace(TINY, epochs=1, fold_bn=False, channels_last=False, cache_teacher=False)
    fast = replace(plain, fold_bn=True, channels_last=True)
    finals = []
    for config in (plain, fast):
        torch.manual_seed(0)
        teacher = create_model("resnet8", 10, 1)
        distiller = create_distiller("simkd", create_model("resnet8_w8", 10, 1), teacher, factor=2)
        history = fit(distiller, digits.train, digits.test, config, log=None)
        finals.append((distiller.student.state_dict(), history[-1]))
    (plain_weights, plain_history), (fast_weights, fast_history) = finals
    for key, value in plain_weights.items():
        if value.is_floating_point():
            assert torch.allclose(value, fast_weights[key], rtol=1e-3, atol=1e-4), key
    assert fast_history["loss_simkd"] == pytest.approx(plain_history["loss_simkd"], rel=1e-3)


def test_eval_subset_scores_a_fixed_prefix_then_the_full_test_set(tmp_path, digits, one_thread):
    """Per-epoch curves on the first `eval_subset` test images; the last epoch on all of them."""
    from simkd_lite.training.loop import materialize, predict, top1

    torch.manual_seed(0)
    distiller = create_distiller("vanilla", create_model("resnet8_w8", 10, 1))
    config = replace(TINY, epochs=2, eval_every=1, eval_subset=50)
    history = fit(distiller, digits.train, digits.test, config, tmp_path, log=None)
    test_x, test_y = materialize(digits.test)
    assert [h["test_images"] for h in history] == [50, len(test_y)]
    assert history[-1]["test_top1"] == pytest.approx(top1(predict(distiller, test_x, torch.device("cpu")), test_y))
    # epoch 1 scored 50 images: its accuracy is a whole number of them (a multiple of 2 %)
    assert (history[0]["test_top1"] * 50 / 100) == pytest.approx(round(history[0]["test_top1"] * 50 / 100))
    # best compares whole-test-set scores only: here that is the last epoch, whatever epoch 1 scored
    summary = summarize(history)
    assert summary["best_epoch"] == 2 and summary["best_top1"] == history[-1]["test_top1"]
    assert read_checkpoint(tmp_path / "best.pt")["epoch"] == 2


def test_best_ignores_subset_scores_even_when_higher():
    history = [{"epoch": 1, "test_top1": 99.0, "test_images": 50}, {"epoch": 2, "test_top1": 90.0, "test_images": 500},
               {"epoch": 3, "test_top1": 95.0, "test_images": 50}, {"epoch": 4, "test_top1": 91.0, "test_images": 500}]
    assert summarize(history) == {"last_top1": 91.0, "best_top1": 91.0, "best_epoch": 4, "epochs": 4}
