"""Every subcommand: `--help` with examples, and a tiny real run on digits."""
import json

import pytest

from conftest import run_cli
from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_python_dash_m_is_the_same_cli():
    assert "demo" in run_cli("--help").stdout


def test_data_and_profiles_commands(capsys):
    assert main(["data", "list"]) == 0 and "digits" in capsys.readouterr().out
    assert main(["profiles"]) == 0 and "paper" in capsys.readouterr().out


def test_bad_input_gives_a_one_line_error_not_a_traceback(tmp_path):
    result = run_cli("distill", "--method", "simkdd", "--dataset", "digits", "--out", str(tmp_path), check=False)
    assert result.returncode == 2 and "Did you mean simkd" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("train-teacher", "--dataset", "digits", "--model", "resnet8x5", "--out", str(tmp_path), check=False)
    assert "resnet8x4" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("eval", str(tmp_path / "missing.pt"), "--dataset", "digits", check=False)
    assert result.returncode == 2 and "No checkpoint" in result.stderr


def test_train_teacher_distill_and_eval_on_digits(tmp_path, digits_teacher):
    out = tmp_path / "simkd"
    result = run_cli("distill", "--method", "simkd", "--dataset", "digits", "--teacher", str(digits_teacher),
                     "--epochs", "2", "--factor", "4", "--out", str(out))
    assert "test top-1" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["method_options"] == {"factor": 4} and config["train"]["epochs"] == 2
    evaluated = json.loads(run_cli("eval", str(out / "student.pt"), "--dataset", "digits").stdout)
    assert evaluated["model"] == "SimKDStudent" and evaluated["test_images"] == 360
    # The deployed student file reproduces the accuracy the training run measured.
    assert evaluated["top1"] == pytest.approx(read_checkpoint(out / "last.pt")["history"][-1]["test_top1"])


def test_demo_writes_the_results_schema_and_figures(tmp_path, digits_teacher):
    run_cli("demo", "--dataset", "digits", "--teacher", str(digits_teacher), "--epochs", "2", "--out", str(tmp_path),
            "--quiet", "--threads", "1")
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"dataset", "profile", "teacher", "students", "seconds"} <= set(results)
    assert {"model", "top1", "params"} <= set(results["teacher"])
    assert [s["method"] for s in results["students"]] == ["vanilla", "kd", "fitnet", "simkd"]
    for student in results["students"]:
        assert {"method", "model", "top1", "best_top1", "best_epoch", "params", "seconds"} <= set(student)
        assert 0.0 <= student["top1"] <= student["best_top1"] <= 100.0 and 1 <= student["best_epoch"] <= 2
        assert (tmp_path / student["method"] / "metrics.csv").exists()
    assert "optimistic" in results["note"] and results["method_options"]["fitnet"]["hint_layer"] == 1
    simkd = results["students"][-1]
    assert simkd["extra_params"] > 0 and simkd["params"] == results["students"][0]["params"] + simkd["extra_params"]
    for figure in ("accuracy.png", "curves.png", "features.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_demo_together_with_stacked_students(tmp_path, digits_teacher):
    """`demo --together --stack-students`: one joint run with the encoders batched; a run per method."""
    run_cli("demo", "--dataset", "digits", "--teacher", str(digits_teacher), "--epochs", "1", "--out", str(tmp_path),
            "--quiet", "--threads", "1", "--together", "--stack-students")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [s["method"] for s in results["students"]] == ["vanilla", "kd", "fitnet", "simkd"]
    assert all(json.loads((tmp_path / m / "config.json").read_text())["stacked"] for m in ("vanilla", "simkd"))
    refused = run_cli("demo", "--dataset", "digits", "--out", str(tmp_path / "alone"), "--stack-students", check=False)
    assert refused.returncode != 0 and "add --together" in refused.stderr
