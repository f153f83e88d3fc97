"""analysis: the measurements notebook 04 makes on trained features."""
import torch
from torch import nn

from simkd_lite import analysis


def test_train_linear_head_recovers_a_linear_rule(one_thread):
    torch.manual_seed(0)
    features = torch.randn(600, 8)
    rule = nn.Linear(8, 3)
    labels = rule(features).argmax(1)  # linearly separable by construction
    head = analysis.train_linear_head(features, labels, num_classes=3, weight_decay=0.0)
    assert isinstance(head, nn.Linear) and not head.training
    assert not any(p.requires_grad for p in head.parameters())
    assert (head(features).argmax(1) == labels).float().mean() > 0.98
    again = analysis.train_linear_head(features, labels, num_classes=3, weight_decay=0.0)
    assert torch.equal(again.weight, head.weight)  # deterministic: full-batch L-BFGS from a seeded start


def test_train_linear_head_is_no_better_than_chance_on_random_labels(one_thread):
    torch.manual_seed(1)
    train, test = torch.randn(400, 4), torch.randn(400, 4)
    head = analysis.train_linear_head(train, torch.randint(0, 4, (400,)), num_classes=4)
    accuracy = (head(test).argmax(1) == torch.randint(0, 4, (400,))).float().mean()
    assert accuracy < 0.4


# ------------------------------------------------------------------------------ the noise table and verdicts
def _table(differences: list[float], other: list[float] | None = None) -> dict:
    """A small table in demo_seeds.json's format: `differences` are SimKD − vanilla per run."""
    import statistics

    other = other or differences
    rows = [{"seed": i // 2, "threads": 1 + i % 2, "vanilla": 88.0, "simkd": 88.0 + d, "kd": 88.0 + d - o,
             "fitnet": 88.0 + d - o, "teacher": 93.0} for i, (d, o) in enumerate(zip(differences, other))]

    def spread(values):
        return {"mean": statistics.mean(values), "std": statistics.stdev(values), "min": min(values),
                "max": max(values), "n": len(values)}

    summary = {"simkd_minus_vanilla": spread(differences), "simkd_minus_kd": spread(other),
               "simkd_minus_fitnet": spread(other), "teacher_minus_simkd": spread([5.0 - d for d in differences])}
    return {"dataset": "fashion_mnist", "profile": "quick", "rows": rows, "summary": summary}


def test_judge_paired_follows_its_rule():
    clear = _table([3.0, 3.2, 2.8, 3.1])                   # same sign, mean far above 2 std
    verdict = analysis.judge_paired(3.05, "simkd_minus_vanilla", clear)
    assert verdict.larger is True and bool(verdict)
    assert "larger than the noise: YES" in str(verdict) and "inside the committed range" in str(verdict)
    assert "OUTSIDE" in str(analysis.judge_paired(4.0, "simkd_minus_vanilla", clear))
    mixed = _table([0.3, -0.2, 0.5, 0.1])                  # the sign flips between runs
    assert analysis.judge_paired(0.3, "simkd_minus_vanilla", mixed).larger is False
    wide = _table([0.1, 0.9, 0.05, 1.2])                   # one sign, but mean < 2 std
    assert analysis.judge_paired(0.5, "simkd_minus_vanilla", wide).larger is False
    assert analysis.judge_paired(0.5, "simkd_minus_vanilla", None).larger is None


def test_judge_step_uses_the_largest_student_pair_std():
    table = _table([3.0, 3.2, 2.8, 3.1], other=[0.5, 1.5, 0.2, 1.0])
    noise = analysis.difference_noise(table)
    assert noise == table["summary"]["simkd_minus_kd"]["std"] > table["summary"]["simkd_minus_vanilla"]["std"]
    assert analysis.judge_step("a -> b", 2 * noise + 0.01, table, 10_000).larger is True
    small = analysis.judge_step("a -> b", -(2 * noise - 0.01), table, 10_000)
    assert small.larger is False and "within the noise" in str(small)
    assert f"{round(-(2 * noise - 0.01) * 100):+,} of 10,000 test images" in str(small)
    rows = analysis.verdict_table([small, analysis.judge_step("c", 1.0, None)])
    assert [r["larger than the noise?"] for r in rows] == ["no", "not judged"]


def test_the_shipped_seed_table_covers_seeds_and_threads():
    table = analysis.load_seed_table()
    pairs = {(r["seed"], r["threads"]) for r in table["rows"]}
    assert {t for _, t in pairs} == {1, 2} and len({s for s, _ in pairs}) >= 5
    assert len(pairs) == len(table["rows"])  # one record per (seed, threads)
    for key in ("simkd_minus_vanilla", "simkd_minus_kd", "simkd_minus_fitnet", "teacher_minus_simkd"):
        s = table["summary"][key]
        assert s["min"] <= s["mean"] <= s["max"] and s["n"] == len(table["rows"])
    assert table["covers"] and table["not_covered"]
    assert analysis.seed_table_for("digits", "quick") is None


def test_load_seed_table_refuses_a_missing_file_in_one_sentence(tmp_path):
    import pytest

    from simkd_lite.errors import SimKDLiteError

    with pytest.raises(SimKDLiteError, match="No seed table at"):
        analysis.load_seed_table(tmp_path / "none.json")


def test_shared_projection_puts_sets_in_one_space():
    import numpy as np

    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(50, 6)).astype(np.float32)
    student = teacher + 0.01 * rng.normal(size=(50, 6)).astype(np.float32)
    shared = analysis.project_2d_shared({"teacher": teacher, "student": student}, "pca")
    assert np.abs(shared["teacher"] - shared["student"]).max() < 0.1   # same axes: nearby points stay nearby
    assert np.allclose(shared["teacher"], analysis.project_2d(teacher, "pca"), atol=1e-4)
    joint = analysis.project_2d_shared({"teacher": teacher, "student": student}, "tsne")
    assert joint["teacher"].shape == joint["student"].shape == (50, 2)


def test_a_step_equal_to_the_limit_as_printed_is_within_the_noise():
    table = _table([3.0, 3.2, 2.8, 3.1], other=[0.5, 1.5, 0.2, 1.0])
    limit = round(2 * analysis.difference_noise(table), 2)
    step = analysis.judge_step("a -> b", 89.26 - (89.26 - limit) + 1e-12, table)   # float noise above the limit
    assert step.larger is False and f"{limit:.2f}" in str(step)
