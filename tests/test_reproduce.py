"""Issue 19: `simkd-lite reproduce` writes the paper's table with seeds, beside the paper's numbers, and a second
call reuses every run. On a tiny CIFAR-100 fixture with an official-layout ResNet-32x4 file (random weights)."""
import csv
import json

import pytest
import torch

from simkd_lite.cli import main
from simkd_lite.data.fixtures import write_cifar_fixture
from simkd_lite.experiments import Plan, reproduce
from simkd_lite.experiments.paper_table import PAPER_TABLE, paper_column, paper_top1
from simkd_lite.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(data root, teacher path): 64 train / 50 test fake CIFAR-100 images, a `{'model': state_dict}` teacher."""
    root = tmp_path_factory.mktemp("reproduce")
    write_cifar_fixture(root / "data", "cifar100", n_train=64, n_test=50)  # one step of 64 per epoch
    torch.manual_seed(0)
    teacher = root / "resnet32x4_vanilla" / "resnet32x4_best.pth"
    teacher.parent.mkdir()
    torch.save({"model": create_model("resnet32x4", 100).state_dict(), "epoch": 240, "best_acc": 79.42}, teacher)
    return root / "data", teacher


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reproduce_writes_the_table_beside_the_paper_and_a_second_call_reuses_every_run(official, tmp_path, capsys):
    data_root, teacher = official
    out = tmp_path / "table"
    code = main(["reproduce", "--dataset", "cifar100", "--teacher", str(teacher), "--student", "resnet8x4",
                 "--seeds", "0", "1", "--epochs", "1", "--data-root", str(data_root), "--threads", "1",
                 "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = _read(out / "table.csv")
    assert [row["method"] for row in table] == ["vanilla", "kd", "fitnet", "simkd"]
    assert list(table[0]) == ["method", "seeds", "n", "best_top1_mean", "best_top1_std", "last_top1_mean",
                              "last_top1_std", "paper_best_top1", "seconds_mean"]
    assert [float(row["paper_best_top1"]) for row in table] == [73.09, 74.42, 74.32, 78.08]
    assert all(row["seeds"] == "0 1" and row["n"] == "2" for row in table)
    per_seed = _read(out / "per_seed.csv")
    assert sorted((r["method"], r["seed"]) for r in per_seed) == sorted(
        (m, s) for m in ("vanilla", "kd", "fitnet", "simkd") for s in ("0", "1"))
    for row in table:  # the table is computed from the per-seed rows
        mine = [float(r["best_top1"]) for r in per_seed if r["method"] == row["method"]]
        assert float(row["best_top1_mean"]) == pytest.approx(sum(mine) / 2, abs=1e-4)
    markdown = (out / "table.md").read_text()
    for number in ("78.08", "74.42", "74.32", "73.09", "79.42"):
        assert number in markdown
    assert "best_top1" in markdown and "last_top1" in markdown and "not the paper's 240" in markdown
    assert (out / "table.png").stat().st_size > 10_000
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 8 and all((run / "last.pt").exists() for run in runs)  # one folder per method x seed
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["tf32"] is False and config["profile"] == "paper" and config["train"]["momentum"] == 0.9
    stamps = {run.name: (run / "last.pt").stat().st_mtime_ns for run in runs}

    said = []
    again = reproduce(out, teacher=str(teacher), student="resnet8x4", seeds=(0, 1), epochs=1,
                      data_root=str(data_root), device="cpu", log=said.append, progress=False)
    assert sum("holds a finished run" in line and "reusing it" in line for line in said) == 8
    assert not any("epoch 1/1" in line for line in said)  # nothing trained again
    assert {run.name: (run / "last.pt").stat().st_mtime_ns for run in runs} == stamps
    assert [r["best_top1_mean"] for r in again.table] == pytest.approx([float(r["best_top1_mean"]) for r in table],
                                                                      abs=1e-4)


def test_reproduce_continues_an_interrupted_run_from_its_last_epoch(official, tmp_path, monkeypatch):
    from simkd_lite.training import loop

    data_root, teacher = official
    common = dict(teacher=str(teacher), methods=("vanilla",), seeds=(0,), epochs=2, data_root=str(data_root),
                  device="cpu", progress=False)
    real_write = loop.write_metrics_csv

    def killed_after_epoch_1(history, path):  # called right after last.pt is saved
        real_write(history, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "write_metrics_csv", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        reproduce(tmp_path / "killed", log=None, **common)
    monkeypatch.setattr(loop, "write_metrics_csv", real_write)
    said = []
    resumed = reproduce(tmp_path / "killed", log=said.append, **common)
    assert any("resuming" in line and "after epoch 1 of 2" in line for line in said)
    whole = reproduce(tmp_path / "whole", log=None, **common)
    assert resumed.per_seed[0]["epochs"] == 2
    assert [(r["best_top1"], r["last_top1"]) for r in resumed.per_seed] == \
        [(r["best_top1"], r["last_top1"]) for r in whole.per_seed]


def test_reproduce_together_reuses_a_finished_joint_run(official, tmp_path):
    data_root, teacher = official
    common = dict(teacher=str(teacher), methods=("vanilla", "simkd"), seeds=(0,), epochs=1, data_root=str(data_root),
                  device="cpu", together=True, progress=False)
    first = reproduce(tmp_path, log=None, **common)
    said = []
    second = reproduce(tmp_path, log=said.append, **common)
    assert sum("holds a finished run" in line and "reusing it" in line for line in said) == 2  # both students
    assert [r["best_top1"] for r in second.per_seed] == [r["best_top1"] for r in first.per_seed]
    assert (tmp_path / "table.md").exists()


def test_reproduce_refuses_bad_plans():
    with pytest.raises(ValueError, match="given twice"):
        Plan(seeds=(0, 0))
    with pytest.raises(ValueError, match="simkd"):
        Plan(methods=("simkdd",))
    with pytest.raises(ValueError, match="contradict"):
        Plan(teacher="t.pth", train_teacher=True)
    with pytest.raises(TypeError, match="unknown setting"):
        reproduce("unused", seedz=(0,))


def test_the_paper_numbers_are_typed_in_once_and_looked_up_by_pair_method_and_options():
    assert paper_column("cifar100", "resnet32x4", "resnet8x4").teacher_top1 == 79.42
    assert paper_top1("cifar100", "resnet32x4", "resnet8x4", "simkd", {"factor": 4}) == 77.88
    assert paper_top1("cifar100", "resnet32x4", "vgg8", "kd", {"temperature": 4.0, "ce_weight": 1.0,
                                                               "kd_weight": 1.0}) == 72.73
    # RepDistiller's KD (0.1 CE + 0.9 KD) is another protocol: not the SimKD paper's number
    assert paper_top1("cifar100", "resnet32x4", "resnet8x4", "kd", {"temperature": 4.0, "ce_weight": 0.1,
                                                                    "kd_weight": 0.9}) is None
    assert paper_top1("cifar100", "resnet32x4", "resnet14", "vanilla", {}) is None
    assert len(PAPER_TABLE) == 3 and all(len(c.top1) == 8 for c in PAPER_TABLE)


def test_each_method_names_its_own_paper_row_so_a_new_method_is_one_file(monkeypatch):
    from simkd_lite.distillers import base, get_distiller_class
    from simkd_lite.distillers.kd import KD
    from simkd_lite.experiments.profiles import PAPER_METHOD_OPTIONS

    assert get_distiller_class("vanilla").paper_label({}) == "vanilla"
    assert get_distiller_class("simkd").paper_label({"factor": 8}) == "simkd f=8"
    assert get_distiller_class("fitnet").paper_label(PAPER_METHOD_OPTIONS["fitnet"]) == "fitnet"
    assert get_distiller_class("fitnet").paper_label({**PAPER_METHOD_OPTIONS["fitnet"], "hint_layer": 2}) is None
    # a method added in its own file, under a label the paper's table has: found without touching paper_table.py
    monkeypatch.setitem(base._DISTILLERS, "crd", None)
    crd = base.register_distiller("crd")(type("CRD", (KD,), {"paper_options": {"nce_k": 16384}}))
    assert paper_top1("cifar100", "resnet32x4", "resnet8x4", "crd", {"nce_k": 16384}) == 75.59
    assert paper_top1("cifar100", "resnet32x4", "resnet8x4", "crd", {"nce_k": 4096}) is None
    assert crd.paper_label({"nce_k": 16384}) == "crd"


def test_a_pair_the_paper_did_not_run_says_so_and_short_runs_show_no_gap():
    from simkd_lite.experiments.reproduction import summary_table, table_markdown

    rows = [{"method": "kd", "seed": s, "best_top1": 70.0 + s, "best_epoch": 3, "last_top1": 69.0 + s, "epochs": 240,
             "seconds": 10.0, "run": "r"} for s in (0, 1)]
    context = {"dataset": "cifar100", "teacher": "resnet32x4", "student": "resnet14", "profile": "paper", "epochs": 240,
               "teacher_top1": 79.0, "threads": 1, "device": "cpu", "tf32": False, "batch_size": 64, "world_size": 1,
               "together": False, "options": {"kd": {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0}}}
    table = summary_table(rows, context)
    assert table[0]["paper_best_top1"] is None and table[0]["best_top1_mean"] == 70.5
    assert table[0]["best_top1_std"] == pytest.approx(0.7071, abs=1e-4)
    markdown = table_markdown(table, context)
    assert "| kd | 70.50 ± 0.71 | 69.50 ± 0.71 | not in the paper |  |" in markdown
    paired = table_markdown(summary_table(rows, {**context, "student": "resnet8x4", "epochs": 2}),
                            {**context, "student": "resnet8x4", "epochs": 2})
    assert "| 74.42 |  |" in paired and "not comparable" in paired  # 2 epochs: no gap to the paper's 240
