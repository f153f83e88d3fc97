"""The benchmark harness: a tiny run returns every number (no timing assertions: the machine is shared)."""
import importlib.util
import json
import warnings
from pathlib import Path

import pytest

from simkd_lite.experiments.bench import run_bench
from simkd_lite.training.teacher_prep import compile_available

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(batch_size=8, steps=2, warmup=1, image_size=16, num_classes=10)
RATES = ("train_images_per_s", "baseline_train_images_per_s", "infer_images_per_s", "baseline_infer_images_per_s",
         "train_speedup", "infer_speedup")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_bench_returns_all_numbers():
    result = run_bench("resnet8", "resnet8_w8", **TINY)
    for key in RATES:
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in ("device", "device_name", "torch", "threads", "cpu_count", "platform", "teacher", "student",
                "batch_size", "steps", "fold_bn", "channels_last", "amp", "compile_teacher", "compile_student"):
        assert key in result, key
    assert result["device"] == "cpu" and result["threads"] == 1 and result["compile_seconds"] is None
    # same initial weights and the same first batch: the fast path computes the baseline's loss
    first = result["first_step_loss"]
    assert abs(first["fast"] - first["baseline"]) <= 1e-4 * abs(first["baseline"])
    assert result["folded_batchnorms"] == {"teacher": 9, "deployed_student": 9 + 3}
    json.dumps(result)  # JSON-serialisable


def test_bench_without_baseline_or_speedups():
    result = run_bench("resnet8", "resnet8_w8", baseline=False, fold_bn=False, channels_last=False, **TINY)
    assert result["train_images_per_s"] > 0 and result["infer_images_per_s"] > 0
    assert result["train_speedup"] is None and result["baseline_train_images_per_s"] is None
    assert result["folded_batchnorms"] == {"teacher": 0, "deployed_student": 0}


@pytest.mark.skipif(not compile_available(), reason="torch.compile unavailable")
def test_bench_compile_reports_compile_seconds():
    # Dynamo's "eager" backend exercises the compile path in seconds (Inductor would take a minute).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_bench("resnet8", "resnet8_w8", compile_teacher=True, compile_student=True,
                           compile_options={"backend": "eager"}, baseline=False, **TINY)
    assert set(result["compile_seconds"]) == {"teacher", "student_train", "student_infer"}
    assert all(v > 0 for v in result["compile_seconds"].values())


def test_run_benchmarks_script_tiny(tmp_path):
    # In-process (the script is a plain module with main(argv)): no second torch import.
    spec = importlib.util.spec_from_file_location("run_benchmarks", ROOT / "benchmarks" / "run_benchmarks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert script.main(["--tiny", "--threads", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results" / "run_benchmarks.json").read_text())
    assert results["rows"] and all(row["train_images_per_s"] > 0 for row in results["rows"])
    readme = (tmp_path / "README.md").read_text()
    assert "images/s" in readme and "speedup" in readme.lower()


def test_graph_bench_reports_simkd_alone_and_the_four_student_row():
    from simkd_lite.experiments.bench_graphed import graph_table, run_graph_bench

    result = run_graph_bench("resnet8", "resnet8_w8", batch_size=8, steps=1, image_size=16, num_classes=10)
    assert result["graphed"] is False  # CPU: the same step, eagerly
    assert result["simkd_images_per_s"] > 0 and result["together_ratio"] > 0 and result["stacked_ratio"] > 0
    assert result["together_methods"] == ["vanilla", "kd", "fitnet", "simkd"]
    bench = run_bench("resnet8", "resnet8_w8", **TINY)
    table = graph_table({**bench, "graphed": result})
    assert "4 students together" in table and "4 students, stacked" in table


def test_bench_reports_onnxruntime_beside_pytorch():
    pytest.importorskip("onnxruntime")
    o = run_bench("resnet8", "resnet8_w8", baseline=False, **TINY)["onnxruntime"]
    assert o["images_per_s"] > 0 and o["pytorch_images_per_s"] > 0 and o["ratio"] > 0
    assert (o["threads"], o["batch_size"]) == (1, TINY["batch_size"])  # the same threads and batch as PyTorch's
    assert o["max_abs_diff"] < 1e-4 and o["top1_identical"] is True


def test_bench_without_onnxruntime_says_why(monkeypatch):
    from simkd_lite.experiments.bench import onnxruntime_line

    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    result = run_bench("resnet8", "resnet8_w8", baseline=False, **TINY)
    assert "pip install 'simkd-lite[export]'" in result["onnxruntime"]["skipped"]
    assert "skipped" in onnxruntime_line(result)
    assert run_bench("resnet8", "resnet8_w8", baseline=False, onnxruntime=False, **TINY)["onnxruntime"] == \
        {"skipped": "onnxruntime=False"}
