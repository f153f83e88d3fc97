"""Issue 10, paper fidelity: the SimKD repository's protocol, best and last, fp32 switches, checkpoints that
know what they are, safe official checkpoints, and the paper code path on a CIFAR fixture."""
import argparse
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from simkd_lite import create_distiller, create_model
from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.cli import _experiment, build_parser
from simkd_lite.data import load_dataset
from simkd_lite.distillers import FrozenTeacher, SimKD
from simkd_lite.distillers.fitnet import ConvReg
from simkd_lite.distillers.losses import cross_entropy, feature_l2_loss, kd_loss
from simkd_lite.experiments.jobs import evaluate_checkpoint, load_teacher
from simkd_lite.training.metrics import BEST_ON_TEST_NOTE, TensorBoardLog, summarize, write_metrics_csv
from simkd_lite.experiments.profiles import (LOW_LR_MODELS, PAPER_METHOD_OPTIONS, REPDISTILLER_METHOD_OPTIONS,
                                        get_profile)
from simkd_lite.training.batches import cache_teacher_outputs
from simkd_lite.training.loop import TrainConfig, fit, materialize
from simkd_lite.models import OFFICIAL_CIFAR_MODELS

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = TrainConfig(epochs=2, batch_size=64, lr=0.05, schedule="onecycle", augment=False, cache_teacher=True)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ------------------------------------------------------------------------------------ 1. the protocol
def test_paper_method_options_are_the_simkd_repository_protocol():
    assert PAPER_METHOD_OPTIONS["kd"] == {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0}
    assert PAPER_METHOD_OPTIONS["fitnet"] == {"hint_weight": 100.0, "ce_weight": 1.0, "kd_weight": 1.0,
                                              "temperature": 4.0, "hint_layer": 1}
    assert PAPER_METHOD_OPTIONS["simkd"] == {"factor": 2}
    for dataset in ("cifar100", "cifar10"):
        assert get_profile("paper", dataset).method_options == PAPER_METHOD_OPTIONS
    # RepDistiller's protocol is kept only under its own name, and differs where it should.
    assert REPDISTILLER_METHOD_OPTIONS["kd"]["ce_weight"] == 0.1 and REPDISTILLER_METHOD_OPTIONS["kd"]["kd_weight"] == 0.9
    assert REPDISTILLER_METHOD_OPTIONS["fitnet"]["kd_weight"] == 0.0
    assert REPDISTILLER_METHOD_OPTIONS["fitnet"]["hint_layer"] == 2


def test_paper_profile_is_fp32_eager_and_scores_every_epoch_with_official_low_lrs():
    paper = get_profile("paper", "cifar100")
    for config in (paper.teacher, paper.student):
        assert (config.amp, config.compile_teacher, config.compile_student) == (False, False, False)
        assert config.eval_every == 1 and config.lr == 0.05
    for model in LOW_LR_MODELS:  # official train_teacher.py and train_student.py alike
        assert paper.teacher_config(model).lr == 0.01 and paper.student_config(model).lr == 0.01
    assert paper.teacher_config("resnet32x4").lr == 0.05 and paper.student_config("resnet8x4").lr == 0.05
    assert get_profile("quick", "fashion_mnist").teacher_config("ShuffleV2").lr == 0.1  # quick keeps its own


@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS)
def test_feature_list_is_the_official_one_and_agrees_with_forward(name):
    torch.manual_seed(0)
    model = create_model(name, 100).eval()
    x = torch.randn(2, 3, 32, 32)
    keys = list(model.state_dict())
    with torch.no_grad():
        feats, logits = model.forward_feature_list(x)
        assert torch.equal(feats[-2], model.forward_features(x))
        assert torch.allclose(logits, model(x), atol=1e-6)
        assert torch.allclose(model.get_classifier()(feats[-1]), logits, atol=1e-6)
    assert feats[-1].dim() == 2 and all(f.dim() == 4 for f in feats[:-1])
    assert list(model.state_dict()) == keys  # the API adds no parameters or buffers


def test_hint_layer_1_and_the_regressor_for_resnet32x4_to_resnet8x4():
    torch.manual_seed(0)
    teacher, student = create_model("resnet32x4", 100), create_model("resnet8x4", 100)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t_feats, _ = teacher.eval().forward_feature_list(x)
        s_feats, _ = student.eval().forward_feature_list(x)
    assert tuple(t_feats[1].shape[1:]) == tuple(s_feats[1].shape[1:]) == (64, 32, 32)  # first residual stage
    fitnet = create_distiller("fitnet", student, teacher, **PAPER_METHOD_OPTIONS["fitnet"])
    conv = fitnet.regressor.conv
    assert type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.bias is not None  # equal sizes: 1x1
    assert (conv.in_channels, conv.out_channels) == (64, 64)
    assert [name for name, _ in fitnet.regressor.named_children()] == ["conv", "bn", "relu"]  # official names


@pytest.mark.parametrize("s_shape, t_shape, kind, kernel, pooled", [
    ((16, 32, 32), (64, 16, 16), nn.Conv2d, (3, 3), False),           # student 2x the teacher: 3x3 stride 2
    ((16, 8, 8), (64, 16, 16), nn.ConvTranspose2d, (4, 4), False),    # half: 4x4 stride-2 transposed conv
    ((16, 10, 10), (64, 8, 8), nn.Conv2d, (3, 3), False),             # Hs >= Ht: (1+Hs-Ht) x (1+Ws-Wt)
    ((16, 8, 8), (64, 8, 8), nn.Conv2d, (1, 1), False),               # equal: 1x1
    ((16, 6, 6), (64, 8, 8), nn.Conv2d, (3, 3), True),                # else: 3x3 pad 1, teacher pooled down
])
def test_conv_reg_follows_the_official_size_rule(s_shape, t_shape, kind, kernel, pooled):
    reg = ConvReg(s_shape, t_shape)
    assert type(reg.conv) is kind and reg.conv.kernel_size == kernel
    out, target = reg(torch.randn(2, *s_shape), torch.randn(2, *t_shape))
    assert out.shape == target.shape == (2, t_shape[0], *(s_shape[1:] if pooled else t_shape[1:]))


def test_paper_fitnet_forward_train_returns_weighted_ce_kd_and_hint_terms():
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10), create_model("resnet8x2", 10)
    fitnet = create_distiller("fitnet", student, teacher, **PAPER_METHOD_OPTIONS["fitnet"])
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    logits, losses = fitnet.forward_train(x, y)
    assert set(losses) == {"ce", "kd", "hint"}
    t_out = FrozenTeacher(teacher)(x, hint_layer=1)
    s_feats, s_logits = student.forward_feature_list(x)
    assert torch.allclose(logits, s_logits)
    assert losses["ce"].item() == pytest.approx(cross_entropy(s_logits, y).item(), rel=1e-5)
    assert losses["kd"].item() == pytest.approx(kd_loss(s_logits, t_out.logits, 4.0).item(), rel=1e-5)
    regressed, target = fitnet.regressor(s_feats[1], t_out.hint)
    assert losses["hint"].item() == pytest.approx(100 * feature_l2_loss(regressed, target).item(), rel=1e-5)
    # KD's weights are the protocol's as well: 1*CE + 1*KD.
    kd = create_distiller("kd", student, teacher, **PAPER_METHOD_OPTIONS["kd"])
    assert (kd.ce_weight, kd.kd_weight, kd.temperature) == (1.0, 1.0, 4.0)


def test_cached_teacher_outputs_carry_the_hint_map_and_give_the_live_losses(digits):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8_w8", 10, 1), create_model("resnet8x2", 10, 1)
    fitnet = create_distiller("fitnet", student, teacher, image_size=8).eval()
    x, y = materialize(digits.train)
    x, y = x[:32], y[:32]
    cached = cache_teacher_outputs(fitnet.teacher, x, torch.device("cpu"), batch_size=10, hint_layer=1)
    assert cached.hint.shape == (32, 32, 8, 8)
    with torch.no_grad():
        _, live = fitnet.forward_train(x, y)
        _, from_cache = fitnet.forward_train(x, y, cached)
    for name in live:
        assert from_cache[name].item() == pytest.approx(live[name].item(), rel=1e-5)
    with pytest.raises(ValueError, match="hint layer 1"):  # a cache without the hint map is refused, not misread
        fitnet.forward_train(x, y, cache_teacher_outputs(fitnet.teacher, x, torch.device("cpu")))


def test_fit_recaches_a_shared_cache_that_lacks_the_hint_map(digits, tmp_path):
    torch.manual_seed(0)
    teacher = create_model("resnet8x2", 10, 1)
    train_x, train_y = materialize(digits.train)
    shared = cache_teacher_outputs(FrozenTeacher(teacher), train_x, torch.device("cpu"))  # no hint (the demo's)
    distiller = create_distiller("fitnet", create_model("resnet8_w8", 10, 1), teacher, image_size=8)
    messages = []
    history = fit(distiller, digits.train, digits.test, TINY, tmp_path, log=messages.append,
                  train_tensors=(train_x, train_y), teacher_cache=shared)
    assert any("hint layer 1" in m for m in messages) and len(history) == 2


# ------------------------------------------------------------------------------------ 2. best and last
def test_summary_reports_last_best_and_best_epoch():
    history = [{"epoch": 1, "test_top1": 50.0}, {"epoch": 2, "test_top1": 70.0}, {"epoch": 3, "test_top1": None},
               {"epoch": 4, "test_top1": 70.0}, {"epoch": 5, "test_top1": 65.0}]
    assert summarize(history) == {"last_top1": 65.0, "best_top1": 70.0, "best_epoch": 2, "epochs": 5}
    assert "optimistic" in BEST_ON_TEST_NOTE


def test_fit_saves_best_epoch_and_metrics_csv(digits, tmp_path):
    torch.manual_seed(0)
    distiller = create_distiller("vanilla", create_model("resnet8_w8", 10, 1))
    history = fit(distiller, digits.train, digits.test, replace(TINY, epochs=3), tmp_path, log=None,
                  meta={"kind": "teacher", "model_name": "resnet8_w8"})
    summary = summarize(history)
    best, last = read_checkpoint(tmp_path / "best.pt"), read_checkpoint(tmp_path / "last.pt")
    assert best["epoch"] == best["best_epoch"] == summary["best_epoch"]
    assert best["best_acc"] == summary["best_top1"] and last["best_epoch"] == summary["best_epoch"]
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "lr", "loss_ce", "train_top1", "test_top1", "seconds"]
    assert float(rows[-1]["test_top1"]) == pytest.approx(history[-1]["test_top1"])


def test_tensorboard_is_optional_and_says_how_to_get_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ValueError, match=r"pip install 'simkd_lite\[tensorboard\]'"):
        TensorBoardLog(tmp_path)


def test_tensorboard_logs_every_epoch_once_across_a_resume(digits, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = replace(TINY, epochs=2, tensorboard=True, schedule="multistep")  # onecycle fixes its length
    torch.manual_seed(0)
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, config,
        tmp_path, log=None)
    torch.manual_seed(0)
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test,
        replace(config, epochs=3), tmp_path, resume=True, log=None)
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("test_top1")] == [1, 2, 3]


def test_metrics_csv_is_rewritten_whole(tmp_path):
    path = tmp_path / "metrics.csv"
    write_metrics_csv([{"epoch": 1, "lr": 0.1, "loss_ce": 2.0, "train_top1": 10.0, "test_top1": None,
                        "seconds": 1.0}], path)
    write_metrics_csv([{"epoch": 1, "lr": 0.1, "loss_ce": 2.0, "train_top1": 10.0, "test_top1": None, "seconds": 1.0},
                       {"epoch": 2, "lr": 0.1, "loss_ce": 1.0, "train_top1": 20.0, "test_top1": 30.0, "seconds": 1.0}],
                      path)
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["test_top1"] == ""
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


# ------------------------------------------------------------------------------------ 3. switches
SWITCHES = ("amp", "compile_teacher", "compile_student", "fold_bn", "channels_last", "device_data")


@pytest.mark.parametrize("command", ["distill", "train-teacher", "demo"])
def test_every_speed_switch_turns_on_and_off_over_the_profile(command):
    parser = build_parser()
    profile = get_profile("quick", "fashion_mnist").student
    off, _ = _experiment(parser.parse_args([command, *[f"--no-{name.replace('_', '-')}" for name in SWITCHES]]))
    assert not any(getattr(off.student_train, name) for name in SWITCHES)
    on, _ = _experiment(parser.parse_args([command, *[f"--{n.replace('_', '-')}" for n in SWITCHES]]))
    assert all(getattr(on.student_train, name) for name in SWITCHES)
    unset, _ = _experiment(parser.parse_args([command]))
    assert all(getattr(unset.student_train, n) == getattr(profile, n) for n in SWITCHES)  # no flag: the profile's


def test_help_says_bf16_changes_results(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-amp" in text and "CHANGES RESULTS" in text and "fp32" in text


# ------------------------------------------------------------------------------------ 4. identity
@pytest.fixture(scope="module")
def simkd_run(tmp_path_factory, digits_teacher):
    out = tmp_path_factory.mktemp("simkd_run")
    result = run_cli("distill", "--method", "simkd", "--dataset", "digits", "--teacher", str(digits_teacher),
                     "--epochs", "3", "--threads", "1", "--out", str(out))
    return out, result.stdout


def test_checkpoints_record_kind_method_model_dataset_and_simkd_head(simkd_run, digits_teacher):
    out, stdout = simkd_run
    teacher = read_checkpoint(digits_teacher)
    assert teacher["kind"] == "teacher" and teacher["method"] == "vanilla" and teacher["model_name"] == "resnet8x2"
    last = read_checkpoint(out / "last.pt")
    assert (last["kind"], last["method"], last["model_name"]) == ("student", "simkd", "resnet8_w8")
    assert {"name", "num_classes", "in_channels", "image_size"} <= set(last["dataset"])
    assert last["dataset"]["name"] == "digits" and last["dataset"]["image_size"] == 8
    assert {"student_channels", "teacher_channels", "factor", "target_size", "head"} <= set(last["simkd"])
    deployable = read_checkpoint(out / "student.pt")
    assert deployable["kind"] == "student" and deployable["dataset"]["name"] == "digits"
    assert "best" in stdout and "optimistic" in stdout  # the CLI line reports best and last


def test_eval_of_a_simkd_last_and_best_pt_equals_the_reported_top1(simkd_run):
    out, _ = simkd_run
    last = read_checkpoint(out / "last.pt")
    for name, expected in (("last.pt", last["history"][-1]["test_top1"]), ("best.pt", last["best_acc"])):
        result = evaluate_checkpoint(out / name, "digits")
        assert result["model"] == "SimKDStudent" and result["method"] == "simkd"
        assert result["top1"] == pytest.approx(expected, abs=1e-9)
    assert evaluate_checkpoint(out / "student.pt", "digits")["top1"] == pytest.approx(last["history"][-1]["test_top1"])


def test_a_simkd_training_checkpoint_written_before_the_simkd_entry_still_evaluates(simkd_run, tmp_path):
    out, _ = simkd_run
    legacy = read_checkpoint(out / "last.pt")
    for key in ("simkd", "kind", "best_epoch"):
        legacy.pop(key)
    atomic_save(legacy, tmp_path / "last.pt")
    assert evaluate_checkpoint(tmp_path / "last.pt", "digits")["top1"] == pytest.approx(
        legacy["history"][-1]["test_top1"])


@pytest.mark.parametrize("name, message", [("student.pt", "deployable SimKD student"),
                                           ("last.pt", "simkd student checkpoint"),
                                           ("best.pt", "simkd student checkpoint")])
def test_teacher_refuses_students(simkd_run, name, message):
    out, _ = simkd_run
    with pytest.raises(ValueError, match=message):
        load_teacher(out / name, "digits")


def test_teacher_refuses_students_of_every_method(tmp_path, digits, digits_teacher):
    teacher, _ = load_teacher(digits_teacher, "digits")
    for method in ("vanilla", "kd"):
        distiller = create_distiller(method, create_model("resnet8_w8", 10, 1), teacher if method != "vanilla" else None)
        fit(distiller, digits.train, digits.test, replace(TINY, epochs=1), tmp_path / method, log=None,
            meta={"kind": "student", "model_name": "resnet8_w8"})
        with pytest.raises(ValueError, match=f"{method} student checkpoint, not a teacher"):
            load_teacher(tmp_path / method / "last.pt", "digits")


def test_a_teacher_from_another_data_set_is_refused_naming_both():
    with pytest.raises(ValueError, match="trained on fashion_mnist, but this run uses digits"):
        load_teacher(_shipped(), "digits")  # the shipped Fashion-MNIST teacher
    result = run_cli("eval", str(_shipped()), "--dataset", "digits", check=False)
    assert result.returncode == 2 and "fashion_mnist" in result.stderr and "digits" in result.stderr
    assert "Traceback" not in result.stderr


def _shipped():
    from simkd_lite.experiments.pretrained import shipped_teacher

    return shipped_teacher("fashion_mnist")[0]


def _official_pair(tmp_path):
    """An official-style SimKD student .pth (model + proj) and its teacher's .pth (with RepDistiller's `opt`)."""
    torch.manual_seed(3)
    teacher, student, projector = create_model("resnet8x2", 10, 1), create_model("resnet8_w8", 10, 1), SimKD(32, 128, 2)
    opt = argparse.Namespace(model="resnet8x2", learning_rate=0.05, lr_decay_epochs=[150, 180, 210],
                             weight_decay=np.float64(5e-4), trial=np.int64(1), kd_T=np.float32(4.0))
    teacher_path = tmp_path / "resnet8x2_vanilla" / "resnet8x2_last.pth"
    student_path = tmp_path / "S_resnet8_w8_T_resnet8x2" / "resnet8_w8_best.pth"
    teacher_path.parent.mkdir(), student_path.parent.mkdir()
    # As RepDistiller saves *_last.pth: the options as an argparse.Namespace, numbers as numpy scalars.
    torch.save({"model": teacher.state_dict(), "opt": opt, "epoch": 240, "accuracy": np.float64(71.25)}, teacher_path)
    torch.save({"model": student.state_dict(), "proj": projector.state_dict(), "epoch": 240, "best_acc": 70.0},
               student_path)
    return teacher_path, student_path


def test_an_official_checkpoint_with_opt_loads_through_the_safe_path(tmp_path):
    teacher_path, _ = _official_pair(tmp_path)
    raw = read_checkpoint(teacher_path)  # weights_only=True with the allow-list, no trust needed
    assert isinstance(raw["opt"], argparse.Namespace) and raw["opt"].trial == 1 and raw["accuracy"] == 71.25
    model, _ = load_teacher(teacher_path, "digits")
    assert model.model_name == "resnet8x2"

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))

    evil = tmp_path / "evil.pth"
    torch.save({"model": create_model("resnet8x2", 10, 1).state_dict(), "extra": Payload()}, evil)
    with pytest.raises(ValueError, match="--trust-checkpoint"):
        read_checkpoint(evil)
    result = run_cli("eval", str(evil), "--dataset", "digits", "--model", "resnet8x2", check=False)
    assert result.returncode == 2 and "--trust-checkpoint" in result.stderr and "Traceback" not in result.stderr
    with pytest.warns(UserWarning, match="trusted"):
        assert "extra" in read_checkpoint(evil, trust=True)


def test_eval_of_an_official_simkd_student_asks_for_the_teacher(tmp_path):
    teacher_path, student_path = _official_pair(tmp_path)
    with pytest.raises(ValueError, match="--teacher TEACHER.pth"):
        evaluate_checkpoint(student_path, "digits")
    with_teacher = evaluate_checkpoint(student_path, "digits", teacher=teacher_path)
    assert with_teacher["model"] == "SimKDStudent" and with_teacher["student_model"] == "resnet8_w8"
    with pytest.raises(ValueError, match="official SimKD student checkpoint"):
        load_teacher(student_path, "digits")


# ------------------------------------------------------------------------------------ 6. the paper path
def test_paper_code_path_on_the_cifar_fixture_teacher_and_simkd_student(tmp_path):
    """The real `paper` profile (augmentation, SGD, multistep, fp32, every-epoch scoring) on a small fixture:
    test top-1 far above chance (10%), and `eval` reproduces the reported numbers."""
    from simkd_lite.data.fixtures import write_cifar_fixture

    write_cifar_fixture(tmp_path / "data", "cifar10", n_train=1000, n_test=200)  # 16 steps of 64 per epoch
    common = ["--profile", "paper", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--threads", "1",
              "--quiet"]
    teacher_out, student_out = tmp_path / "teacher", tmp_path / "simkd"
    run_cli("train-teacher", *common, "--model", "resnet8", "--epochs", "3", "--out", str(teacher_out))
    teacher = read_checkpoint(teacher_out / "best.pt")
    assert teacher["config"]["amp"] is False and teacher["config"]["augment"] is True
    assert teacher["best_acc"] > 50.0  # chance: 10%
    run_cli("distill", *common, "--method", "simkd", "--student", "resnet8_w8", "--epochs", "5",
            "--teacher", str(teacher_out / "best.pt"), "--out", str(student_out))
    student = read_checkpoint(student_out / "last.pt")
    reported = student["history"][-1]["test_top1"]
    assert reported > 50.0
    for path, expected in ((teacher_out / "best.pt", teacher["best_acc"]), (student_out / "last.pt", reported),
                           (student_out / "student.pt", reported)):
        result = json.loads(run_cli("eval", str(path), *common[2:6]).stdout)  # --dataset, --data-root
        assert result["top1"] == pytest.approx(expected, abs=1e-9), path


def test_demo_train_teacher_distils_from_best_pt(tmp_path, monkeypatch):
    """`demo --train-teacher` hands the students OUT/teacher/best.pt, as the official scripts use *_best.pth."""
    from simkd_lite.experiments import demo, runs
    from simkd_lite.experiments.results import RunResult

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit_teacher(dataset, model, config, out, **kwargs):  # the job the experiment API calls
        seen["teacher_lr"] = config.lr
        return RunResult("vanilla", model, out, 90.0, 95.0, 3, 0, 0, 0.0, [], None, kind="teacher")

    def fake_get_teacher(exp, source=None, **kwargs):
        seen["teacher"] = source
        raise Stop

    monkeypatch.setattr(runs, "fit_teacher", fake_fit_teacher)
    monkeypatch.setattr(demo, "get_teacher", fake_get_teacher)
    with pytest.raises(Stop):
        demo.run_demo("digits", "quick", tmp_path, train_new_teacher=True, log=lambda m: None, figures=False)
    assert seen["teacher"] == str(tmp_path / "teacher" / "best.pt")
    assert seen["teacher_lr"] == get_profile("quick", "digits").teacher.lr


# ------------------------------------------------------------------------------------ 7. no drift (issue 19)
# The official SimKD train_student.py / train_teacher.py values, typed in here from the official code (not
# read back from our profile): any change to the `paper` recipe must fail one of the tests below.
OFFICIAL_RECIPE = {"optimizer": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4, "batch_size": 64,
                   "epochs": 240, "lr": 0.05, "schedule": "multistep", "milestones": (150, 180, 210), "gamma": 0.1,
                   "augment": True, "amp": False, "tf32": False, "eval_every": 1, "eval_subset": None,
                   "cache_teacher": False, "compile_teacher": False, "compile_student": False}
# Fields that decide where and how fast a run executes, each checked elsewhere to change results only within
# float tolerance (tests/test_fast.py, test_graphed.py), or that are chosen per call (seed, device, logging).
NOT_RECIPE = {"seed", "device", "eval_batch_size", "num_workers", "tensorboard", "fold_bn", "channels_last",
              "device_data", "cuda_graph"}
OFFICIAL_LOW_LR = {"MobileNetV2": 0.01, "MobileNetV2_1_0": 0.01, "ShuffleV1": 0.01, "ShuffleV2": 0.01,
                   "ShuffleV2_1_5": 0.01}
OFFICIAL_CIFAR100 = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
OFFICIAL_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def test_every_train_config_field_is_either_recipe_or_declared_runtime():
    """A new TrainConfig field must be placed: in the official recipe (and checked) or among the runtime ones."""
    assert set(TrainConfig.__dataclass_fields__) == set(OFFICIAL_RECIPE) | NOT_RECIPE


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10"])
def test_every_field_of_the_paper_recipe_is_the_official_value(dataset):
    paper = get_profile("paper", dataset)
    assert (paper.teacher_model, paper.student_model) == ("resnet32x4", "resnet8x4")
    for config in (paper.teacher, paper.student, paper.teacher_config("resnet32x4"), paper.student_config("resnet8x4"),
                   paper.student_config("vgg8")):
        assert {k: getattr(config, k) for k in OFFICIAL_RECIPE} == OFFICIAL_RECIPE
    for model in OFFICIAL_LOW_LR:  # official: lr 0.01 for MobileNetV2 / ShuffleNet, teachers and students
        for config in (paper.student_config(model), paper.teacher_config(model)):
            assert {k: getattr(config, k) for k in OFFICIAL_RECIPE} == {**OFFICIAL_RECIPE, "lr": OFFICIAL_LOW_LR[model]}
    assert set(LOW_LR_MODELS) == set(OFFICIAL_LOW_LR)


def test_the_paper_optimizer_and_the_lr_of_every_epoch():
    """What `fit` builds from the recipe: torch's SGD with the official values, and x0.1 after epochs 150/180/210."""
    from simkd_lite.training.loop import make_optimizer, make_scheduler

    config = get_profile("paper", "cifar100").student
    optimizer = make_optimizer([nn.Parameter(torch.zeros(1))], config)
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == \
        (0.05, 0.9, False, 5e-4, 0)
    scheduler, unit = make_scheduler(optimizer, config, steps_per_epoch=782)
    assert unit == "epoch"
    lrs = []
    for _ in range(240):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.05] * 150 + [0.005] * 30 + [0.0005] * 30 + [0.00005] * 30  # epochs 1-150, 151-180, ...
    assert lrs == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name, official", [("cifar100", OFFICIAL_CIFAR100), ("cifar10", OFFICIAL_CIFAR10)])
def test_cifar_normalisation_padding_and_transforms_are_the_official_ones(tmp_path, name, official):
    """Train: RandomCrop(32, padding=4), flip, ToTensor, Normalize(official); test: ToTensor, Normalize;
    the on-device augmentation uses the same constants and padding."""
    from torchvision import transforms as T

    from simkd_lite.data.cifar import CIFAR_STATS, CROP_PADDING
    from simkd_lite.data.fixtures import write_cifar_fixture
    from simkd_lite.experiments.jobs import on_device_augment

    assert CIFAR_STATS[name] == official and CROP_PADDING == 4
    write_cifar_fixture(tmp_path, name, n_train=10, n_test=5)
    bundle = load_dataset(name, tmp_path, augment=True)
    train, test = bundle.train.transform.transforms, bundle.test.transform.transforms
    assert [type(t) for t in train] == [T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert (train[0].size, train[0].padding, train[1].p) == ((32, 32), 4, 0.5)
    assert [type(t) for t in test] == [T.ToTensor, T.Normalize]
    for normalize in (train[-1], test[-1]):
        assert (tuple(normalize.mean), tuple(normalize.std)) == official
    assert (bundle.info.mean, bundle.info.std, bundle.info.crop_padding) == (*official, 4)
    gpu = on_device_augment(bundle.info, get_profile("paper", name).student)
    assert gpu.padding == 4 and gpu.flip and gpu.flip_p == 0.5
    assert torch.equal(gpu.mean, torch.tensor(official[0])) and torch.equal(gpu.std, torch.tensor(official[1]))


def _spy_fit(digits, monkeypatch, config):
    """Run `fit` for SimKD on digits, recording the optimizer's parameters and every teacher module's mode."""
    from simkd_lite.training import loop

    torch.manual_seed(0)
    teacher_net = create_model("resnet8x2", 10, 1)
    distiller = create_distiller("simkd", create_model("resnet8_w8", 10, 1), teacher_net)
    seen = {"params": None, "teacher_training": []}
    real_optimizer, real_prepare = loop.make_optimizer, loop.prepare_teacher

    def spy_optimizer(params, cfg):
        seen["params"] = list(params)
        return real_optimizer(seen["params"], cfg)

    def watch(model):
        for module in model.modules():
            module.register_forward_pre_hook(lambda m, inputs: seen["teacher_training"].append(m.training))
        return model

    monkeypatch.setattr(loop, "make_optimizer", spy_optimizer)
    monkeypatch.setattr(loop, "prepare_teacher", lambda model, **kw: watch(real_prepare(model, **kw)))
    watch(teacher_net)
    before = {k: v.clone() for k, v in teacher_net.state_dict().items()}
    fit(distiller, digits.train, digits.test, config, log=None, progress=False)
    return distiller, teacher_net, before, seen


@pytest.mark.parametrize("fast", [True, False], ids=["bn-folded-teacher", "plain-teacher"])
def test_fit_optimises_encoder_and_projector_and_keeps_the_teacher_in_eval_mode(digits, monkeypatch, fast):
    config = TrainConfig(epochs=1, batch_size=128, lr=0.05, augment=False, cache_teacher=False, fold_bn=fast,
                         channels_last=fast)
    distiller, teacher_net, before, seen = _spy_fit(digits, monkeypatch, config)
    optimised = {id(p) for p in seen["params"]}
    assert {id(p) for p in distiller.student.parameters() if p.requires_grad} <= optimised
    projector = list(distiller.projector.parameters())
    assert projector and {id(p) for p in projector} <= optimised  # the projector learns
    assert not optimised & {id(p) for p in teacher_net.parameters()}  # the teacher does not
    assert not optimised & {id(p) for p in distiller.teacher_head.parameters()}  # nor the reused teacher head
    assert seen["teacher_training"] and not any(seen["teacher_training"])  # every teacher forward in eval mode
    after = teacher_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics unchanged


def test_fit_turns_tf32_off_unless_the_config_opts_in(digits, tmp_path):
    import json as _json

    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # cuDNN's own default
        config = TrainConfig(epochs=1, batch_size=128, augment=False)
        assert config.tf32 is False and get_profile("paper", "cifar100").student.tf32 is False
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, config,
            tmp_path / "off", log=None, progress=False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        recorded = _json.loads((tmp_path / "off" / "config.json").read_text())
        assert recorded["tf32"] is False and recorded["train"]["tf32"] is False
        assert (recorded["batch_size"], recorded["world_size"], recorded["batch_size_per_process"]) == (128, 1, 128)
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test,
            replace(config, tf32=True), tmp_path / "on", log=None, progress=False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def test_tf32_flag_opts_in_and_the_default_leaves_the_profile_value():
    parser = build_parser()
    assert _experiment(parser.parse_args(["distill", "--tf32"]))[0].student_train.tf32 is True
    assert _experiment(parser.parse_args(["distill"]))[0].student_train.tf32 is False


def test_the_logged_lr_is_the_lr_the_epoch_trained_with(digits):
    """Epoch 1 trains at lr, epoch 2 (after the first milestone) at lr x 0.1: the history says so."""
    config = TrainConfig(epochs=3, batch_size=256, lr=0.1, milestones=(1, 2), augment=False)
    history = fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, config,
                  log=None, progress=False)
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.01, 0.001], rel=1e-9)
    onecycle = replace(config, epochs=2, batch_size=64, schedule="onecycle")  # per step: the epoch's first step's lr
    history = fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test,
                  onecycle, log=None, progress=False)
    assert history[0]["lr"] == pytest.approx(0.1 / 25)  # OneCycleLR starts at max_lr / div_factor


def test_results_name_best_and_last_and_say_which_the_paper_reports():
    from simkd_lite.training.metrics import describe

    text = describe({"last_top1": 90.0, "best_top1": 91.5, "best_epoch": 7})
    assert text == "last_top1 90.00%, best_top1 91.50% (epoch 7; the paper reports best_top1)"
    assert all(word in BEST_ON_TEST_NOTE for word in ("best_top1", "last_top1", "paper reports"))


# ------------------------------------------------------------------------------------ 8. no silent teacher
def test_paper_profile_without_a_teacher_refuses_instead_of_training_one_for_hours(tmp_path, capsys):
    from simkd_lite.cli import main
    from simkd_lite.experiments import Experiment, get_teacher

    exp = Experiment.resolve("cifar100", "paper", runs=tmp_path)
    with pytest.raises(ValueError, match="--train-teacher") as refused:
        get_teacher(exp)
    assert "--teacher" in str(refused.value) and "resnet32x4_best.pth" in str(refused.value)
    for command in (["distill", "--profile", "paper"], ["demo", "--profile", "paper"], ["reproduce"]):
        assert main([*command, "--dataset", "cifar100", "--out", str(tmp_path / command[0])]) == 2
        err = capsys.readouterr().err
        assert "--train-teacher" in err and "--teacher PATH" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "distill").glob("*.pt")) and not list(tmp_path.glob("teacher_*"))


def test_train_teacher_says_how_long_it_takes(tmp_path, monkeypatch):
    from simkd_lite.experiments import Experiment, get_teacher
    from simkd_lite.experiments import runs as runs_module

    class Stop(Exception):
        pass

    def fake_train_teacher(dataset, model, config, out, **kwargs):
        raise Stop

    monkeypatch.setattr(runs_module, "fit_teacher", fake_train_teacher)
    said = []
    with pytest.raises(Stop):
        get_teacher(Experiment.resolve("cifar100", "paper", runs=tmp_path), "train", log=said.append)
    assert any("240 epochs" in line and "2 h 24 m" in line for line in said)
