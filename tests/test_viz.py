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


def test_accuracy_bars_and_training_curves():
    results = {"dataset": "digits", "teacher": {"top1": 98.0},
               "students": [{"method": "vanilla", "top1": 95.0}, {"method": "simkd", "top1": 96.5}]}
    fig = viz.accuracy_bars(results)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 and labelled(ax)
    fig = viz.training_curves({"vanilla": history(), "simkd": history()})
    assert len(fig.axes[0].get_lines()) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["Vanilla", "SimKD"]


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


def test_per_class_similarity_grouped_bars():
    sims = {"trained": np.array([0.9, 0.8, 0.95]), "untrained": np.array([0.3, 0.2, 0.4])}
    fig = viz.per_class_similarity(sims, ["a", "b", "c"])
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and labelled(ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylim()[1] == 1.0


def test_confusion_matrices_one_heatmap_per_model():
    matrix = np.array([[5, 1], [0, 4]])
    fig = viz.confusion_matrices({"teacher": matrix, "student": matrix.T}, ["x", "y"])
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heat_axes] == ["teacher", "student"]
    mesh = heat_axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 2), [[5 / 6, 1 / 6], [0, 1]])
    assert heat_axes[0].get_xlabel() == "predicted class" and heat_axes[0].get_ylabel() == "true class"


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
    images = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    fig = viz.image_grid({"original": images, "augmented": images}, (0.3,), (0.4,), labels=list("01234"), title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 10
    assert fig.axes[0].get_ylabel() == "original" and fig.axes[0].get_title() == "0" and fig._suptitle.get_text() == "t"
