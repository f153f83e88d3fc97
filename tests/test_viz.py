"""The figures of simkd_lite.viz: each returns a Figure with the expected axes, artists and labels."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simkd_lite import analysis, viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(n=3, losses=("ce",)):
    return [{"epoch": e, **{f"loss_{k}": 1.0 / e for k in losses}, "train_top1": 50 + e, "test_top1": 40 + e,
             "seconds": 0.1} for e in range(1, n + 1)]


def labelled(ax):
    return ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_accuracy_bars_start_at_zero_and_title_the_extra_parameters():
    results = {"dataset": "digits", "teacher": {"top1": 98.0},
               "students": [{"method": "vanilla", "top1": 95.0, "extra_params": 0},
                            {"method": "simkd", "top1": 96.5, "extra_params": 13568}]}
    fig = viz.accuracy_bars(results)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 and labelled(ax)
    assert ax.get_ylim()[0] == 0  # a bar's length is its value
    assert "same student architecture and training budget" in ax.get_title()
    assert "SimKD deploys +13,568 parameters" in ax.get_title()


def test_training_curves_mark_subset_and_full_test_set_points():
    subset = [{"epoch": e, "test_top1": 90.0 + e, "test_images": 2000} for e in (1, 2)]
    runs = {"vanilla": subset + [{"epoch": 3, "test_top1": 91.0, "test_images": 10000}],
            "simkd": subset + [{"epoch": 3, "test_top1": 92.0, "test_images": 10000}]}
    fig = viz.training_curves(runs, teacher_top1=93.0)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["Vanilla", "SimKD"]
    assert "scored on 2,000 images" in legend and "scored on all 10,000" in legend
    faces = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections if len(c.get_offsets()) == 1]
    assert faces.count((1.0, 1.0, 1.0)) == 4  # two hollow (subset) points per method
    assert "hollow" in ax.get_title()


def test_method_comparison_draws_the_committed_runs_and_this_run():
    table = {"rows": [{"seed": s, "threads": t, "vanilla": 88.0 + s / 10, "simkd": 91.5 + t / 10}
                      for s in range(3) for t in (1, 2)],
             "summary": {"top1": {"vanilla": {"mean": 88.1, "std": 0.08, "min": 88.0, "max": 88.2, "n": 6},
                                  "simkd": {"mean": 91.65, "std": 0.05, "min": 91.6, "max": 91.7, "n": 6}}}}
    fig = viz.method_comparison({"vanilla": 88.3, "simkd": 91.7}, table, dataset="fashion_mnist",
                                extra_params={"vanilla": 0, "simkd": 13568})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Vanilla", "SimKD"]
    committed = [c for c in ax.collections if len(c.get_offsets()) == 6]
    assert len(committed) == 2  # every committed run drawn, per method
    assert "SimKD deploys +13,568 parameters" in ax.get_title() and "6 committed runs" in ax.get_title()
    assert viz.method_comparison({"vanilla": 88.3}, None).axes[0].get_title().endswith("(no committed spread "
                                                                                      "for this setting)")


def test_run_curves_has_loss_and_accuracy_panels():
    fig = viz.run_curves(history(4, losses=("ce", "kd")), "teacher")
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 and len(acc_ax.get_lines()) == 2
    assert acc_ax.get_ylabel() == "top-1 (%)" and loss_ax.get_ylabel() == "training loss"
    assert list(acc_ax.get_lines()[1].get_xdata()) == [1, 2, 3, 4]
    assert fig._suptitle.get_text() == "teacher"


def test_projector_tradeoff_points_and_reference_lines():
    rows = [{"name": "no projector", "extra_params": 0, "top1": 90.0},
            {"name": "SimKD bottleneck", "extra_params": 13568, "top1": 93.0}]
    fig = viz.projector_tradeoff(rows, baseline_top1=91.0, teacher_top1=95.0)
    ax = fig.axes[0]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 2
    assert ax.get_xscale() == "symlog" and labelled(ax) and ax.get_xlim()[0] < 0
    assert sorted(line.get_ydata()[0] for line in ax.get_lines()) == [91.0, 95.0]
    assert {t.get_text() for t in ax.texts} == {"no projector", "SimKD bottleneck"}


def test_per_class_similarity_shows_distances_on_a_log_axis():
    sims = {"trained": np.array([0.99, 0.98, 0.995]), "untrained": np.array([0.3, 0.2, 0.4])}
    fig = viz.per_class_similarity(sims, ["a", "b", "c"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and labelled(ax)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.01, 0.02, 0.005], atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_confusion_matrices_in_percent_with_colour_bar():
    matrix = np.array([[5, 1], [0, 4]])
    fig = viz.confusion_matrices({"teacher": matrix, "student": matrix.T}, ["x", "y"])
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat_axes] == ["teacher", "student"]
    mesh = heat_axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 2), [[500 / 6, 100 / 6], [0, 100]])
    assert heat_axes[0].get_xlabel() == "predicted class" and heat_axes[0].get_ylabel() == "true class"
    assert len(fig.axes) == 4  # two heatmaps, two colour bars


def test_confusion_differences_are_student_minus_teacher_on_a_centred_scale():
    teacher = np.array([[8, 2], [1, 9]])
    student = np.array([[6, 4], [1, 9]])
    fig = viz.confusion_differences({"teacher": teacher, "SimKD": student}, "teacher", ["x", "y"])
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat_axes] == ["teacher (% of each true class)", "SimKD − teacher"]
    diff = np.asarray(heat_axes[1].collections[0].get_array()).reshape(2, 2)
    np.testing.assert_allclose(diff, [[-20, 20], [0, 0]])
    low, high = heat_axes[1].collections[0].get_clim()
    assert low == -high  # centred at zero
    assert len(fig.axes) == 4 and "percentage points" in fig.axes[-1].get_ylabel()


def test_throughput_bars_and_parameter_breakdown():
    fig = viz.throughput_bars({"deployed": 1000.0, "official-style": 250.0}, "cpu")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and "cpu" in ax.get_title() and labelled(ax)
    summary = analysis.projector_summary("resnet32x4", "resnet8x4", 2)
    fig = viz.parameter_breakdown(summary)
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # encoder, projector, head stacked; the teacher alone
    widths = sorted(round(p.get_width()) for p in ax.patches)
    assert 214_016 in widths and summary["teacher_params"] in widths
    assert "5.14x" in ax.get_title()


def test_feature_scatter_and_image_grid():
    rng = np.random.default_rng(0)
    points = {"teacher": rng.normal(size=(20, 2)), "student": rng.normal(size=(20, 2))}
    labels = np.arange(20) % 4
    fig = viz.feature_scatter(points, labels, list("abcd"))
    assert len(fig.axes) == 2 and all(len(ax.collections) == 4 for ax in fig.axes)
    colours = {tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections}
    assert colours == {tuple(c) for c in viz.COLORBLIND[:4]}  # the colour-blind-safe palette, not tab10
    images = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    fig = viz.image_grid({"original": images, "augmented": images}, (0.3,), (0.4,), labels=list("01234"), title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 10
    assert fig.axes[0].get_ylabel() == "original" and fig.axes[0].get_title() == "0" and fig._suptitle.get_text() == "t"
