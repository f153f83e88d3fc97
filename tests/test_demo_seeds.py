"""benchmarks/demo_seeds.py: one record per (seed, threads), paired spreads, resuming; no training here."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_seeds():
    spec = importlib.util.spec_from_file_location("demo_seeds", ROOT / "benchmarks" / "demo_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(seed, threads, simkd, vanilla=88.0, busy=True):
    return {"seed": seed, "threads": threads, "teacher": 92.94, "vanilla": vanilla, "kd": 90.0, "fitnet": 90.5,
            "simkd": simkd, "wall_seconds": 300.0, "wall_busy_machine": busy, "vanilla_params": 77754,
            "simkd_params": 91322, "teacher_params": 174970, "test_images": 10000}


def test_summary_pairs_within_runs_and_states_the_thread_effect(demo_seeds):
    rows = [record(0, 1, 91.68, 88.68), record(0, 2, 91.61, 88.93), record(1, 1, 91.3, 88.2), record(1, 2, 91.2, 88.1)]
    data = demo_seeds.build(rows, "fashion_mnist", "", "cmd")
    s = data["summary"]
    assert s["simkd_minus_vanilla"]["min"] == pytest.approx(2.68) and s["simkd_minus_vanilla"]["n"] == 4
    assert s["threads_2_minus_1"]["simkd"]["mean"] == pytest.approx(-0.085, abs=0.01)
    assert set(s["by_threads"]) == {"1", "2"}
    assert s["targets_met"]["wall <= 180 s on every run"] is None  # busy machine: no timing verdict
    text = demo_seeds.markdown(data)
    assert "s0/t1" in text and "s1/t2" in text and "What this covers" in text and "does not cover" in text
    assert "BUSY machine" in text


def test_resume_keeps_measured_pairs_and_merges_tables(demo_seeds, tmp_path):
    first = tmp_path / "a.json"
    demo_seeds.write(demo_seeds.build([record(0, 1, 91.68)], "fashion_mnist", "", "cmd"), first, tmp_path / "a.md")
    second = tmp_path / "b.json"
    demo_seeds.write(demo_seeds.build([record(0, 2, 91.61), record(0, 1, 91.0)], "fashion_mnist", "", "cmd"),
                     second, tmp_path / "b.md")
    rows = demo_seeds.load_rows([first, second])
    assert sorted((r["seed"], r["threads"]) for r in rows) == [(0, 1), (0, 2)]
    assert next(r for r in rows if r["threads"] == 1)["simkd"] == 91.0   # the later file wins
    demo_seeds.main(["--json", str(tmp_path / "m.json"), "--md", str(tmp_path / "m.md"), "--merge", str(first),
                     str(second)])
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [(r["seed"], r["threads"]) for r in merged["rows"]] == [(0, 1), (0, 2)]
    assert not list(tmp_path.glob("*.writing"))
