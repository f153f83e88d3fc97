"""The experiment API (simkd_lite.experiments): one recipe, one teacher, shared data, reusable runs."""
import pytest

from simkd_lite.experiments import Experiment, compare, evaluate, get_teacher, prepare_data, train_student


def test_resolve_applies_overrides_and_rejects_unknown_settings():
    exp = Experiment.resolve("digits", epochs=2, seed=3, lr=0.01)
    assert (exp.student_train.epochs, exp.student_train.seed, exp.student_train.lr) == (2, 3, 0.01)
    assert exp.teacher_train.seed == 3
    with pytest.raises(ValueError, match="Unknown training setting"):
        Experiment.resolve("digits", learning_rate=0.1)
    with pytest.raises(ValueError, match="Did you mean simkd"):
        exp.options_for("simdk")


def test_run_names_change_with_every_setting():
    exp = Experiment.resolve("digits", epochs=2)
    name = exp.run_name("simkd", {"factor": 2}, "resnet8x2")
    assert name.startswith("simkd_digits_resnet8x2-resnet8_w8_e2_s0_")
    assert name != exp.run_name("simkd", {"factor": 4}, "resnet8x2")
    assert name != Experiment.resolve("digits", epochs=2, lr=0.01).run_name("simkd", {"factor": 2}, "resnet8x2")


def test_compare_trains_once_then_reuses(tmp_path, digits_teacher, one_thread):
    exp = Experiment.resolve("digits", epochs=2, runs=tmp_path)
    teacher = get_teacher(exp, digits_teacher)
    data = prepare_data(exp, teacher)
    assert data.teacher_cache is not None and data.train_x is not None  # the digits recipe caches
    runs = compare(["vanilla", "simkd"], data, teacher)
    assert runs["simkd"].params == runs["simkd"].export().num_parameters()
    assert runs["simkd"].extra_params > 0 and runs["vanilla"].extra_params == 0
    # The number training reported is the number evaluation gives, through the teacher's head.
    assert evaluate(runs["simkd"].predictor, data) == pytest.approx(runs["simkd"].top1)
    assert evaluate(runs["simkd"].export(), data) == pytest.approx(runs["simkd"].top1)
    again = train_student("simkd", data, teacher)
    assert again.out == runs["simkd"].out and again.top1 == runs["simkd"].top1
    assert len(again.history) == 2


def test_teacher_outputs_are_computed_once_and_reused_from_disk(tmp_path, digits_teacher, one_thread, monkeypatch):
    import torch

    from simkd_lite.experiments import teacher_cache

    exp = Experiment.resolve("digits", epochs=1, runs=tmp_path)
    teacher = get_teacher(exp, digits_teacher)
    first = prepare_data(exp, teacher)
    saved = list((tmp_path / "teacher_outputs").glob("*.pt"))
    assert len(saved) == 1
    calls = []
    monkeypatch.setattr(teacher_cache, "cache_teacher_outputs", lambda *a, **k: calls.append(a))
    again = prepare_data(exp, teacher)  # same teacher file, images and device: loaded, the teacher never runs
    assert calls == [] and torch.equal(again.teacher_cache.features, first.teacher_cache.features)
    assert torch.equal(again.teacher_cache.logits, first.teacher_cache.logits)
    identity = {"dataset": "digits", "subset": None, "seed": 1, "images": len(first.train_x), "device": "cpu"}
    assert teacher_cache.cache_path(tmp_path, teacher, identity) != saved[0]  # another seed: another key


def test_get_teacher_trains_silently_without_a_log(tmp_path, one_thread):
    from dataclasses import replace

    exp = Experiment.resolve("digits", runs=tmp_path)
    exp = replace(exp, teacher_train=replace(exp.teacher_train, epochs=1))
    teacher = get_teacher(exp, "train")  # no log callback: nothing may call it
    assert teacher.model_name == exp.teacher_model and teacher.source.endswith(".pt")
