"""The notebook widgets: controls change what is shown, and the underlying functions work headless."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from simkd_lite import analysis, widgets  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_projector_summary_matches_the_paper_counts():
    for factor, expected in {2: 214_016, 4: 70_400, 8: 26_240}.items():
        summary = analysis.projector_summary("resnet32x4", "resnet8x4", factor)
        assert summary["projector_params"] == summary["formula_params"] == expected
    assert summary["teacher_map"] == (256, 8, 8) and summary["aligned_size"] == 8
    assert [layer["output"] for layer in summary["layers"]][-1] == (256, 8, 8)


def test_projector_summary_alignment_and_macs():
    summary = analysis.projector_summary("resnet32x4", "vgg8", 2)   # VGG-8 ends at 512x4x4
    assert summary["student_map"] == (512, 4, 4) and summary["aligned_size"] == 4
    m = 128
    expected_macs = 16 * (512 * m + 9 * m * m + m * 256)
    assert summary["projector_macs"] == expected_macs
    assert summary["deployed_params"] == (summary["student_encoder_params"] + summary["projector_params"]
                                          + summary["teacher_head_params"])
    assert summary["compression_ratio"] == pytest.approx(summary["teacher_params"] / summary["deployed_params"])


def test_describe_projector_reports_shapes_counts_and_ratio():
    text = widgets.describe_projector(analysis.projector_summary("resnet32x4", "vgg8", 4))
    assert "teacher map pooled 8x8 -> 4x4" in text
    assert "Conv3x3(64->64, bias=False)" in text
    assert "compression ratio" in text and "multiply-accumulates" in text


def test_count_macs_counts_conv_and_linear():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 2))
    assert analysis.count_macs(net, torch.zeros(1, 3, 5, 5)) == 25 * 4 * 3 * 9 + 100 * 2


def test_projector_designer_updates_on_every_control():
    ui = widgets.projector_designer()
    assert isinstance(ui, ipywidgets.VBox)
    assert ui.state["summary"]["projector_params"] == 214_016
    assert "214,016" in ui.state["text"] and ui.state["figure"].axes
    ui.controls["factor"].value = 4
    assert ui.state["summary"]["projector_params"] == 70_400
    ui.controls["student"].value = "vgg8"
    assert ui.state["summary"]["student_map"] == (512, 4, 4)


def test_projector_designer_explains_an_invalid_teacher():
    ui = widgets.projector_designer()
    ui.controls["teacher"].value = "MobileNetV2"
    assert "summary" not in ui.state
    assert ui.state["text"].startswith("Not a valid design") and "SimKD teacher" in ui.state["text"]


def features(n=60, classes=3):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    return {"teacher": rng.normal(size=(n, 8)) + labels[:, None], "student": rng.normal(size=(n, 4))}, labels


def test_explore_features_draws_only_the_chosen_classes():
    feats, labels = features()
    fig = widgets.explore_features(feats, labels, ["a", "b", "c"], "teacher", classes=[0, 2], projection="pca")
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and ax.get_title() == "teacher"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40
    fig = widgets.explore_features(feats, labels, ["a", "b", "c"], "student", projection="tsne", max_points=30)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 30
    with pytest.raises(ValueError, match="Unknown feature source"):
        widgets.explore_features(feats, labels, ["a", "b", "c"], "nope")


def test_feature_explorer_reacts_to_its_controls():
    feats, labels = features()
    ui = widgets.feature_explorer(feats, labels, ["a", "b", "c"])
    assert isinstance(ui, ipywidgets.VBox)
    first = ui.state["figure"]
    assert first.axes[0].get_title() == "teacher"
    ui.controls["method"].value = "student"
    assert ui.state["figure"] is not first and ui.state["figure"].axes[0].get_title() == "student"
    ui.controls["classes"].value = (1,)
    assert len(ui.state["figure"].axes[0].collections) == 1
    ui.controls["classes"].value = ()
    assert "figure" not in ui.state


def test_explore_features_falls_back_to_pca_for_a_handful_of_points():
    feats, labels = features(n=12, classes=3)
    fig = widgets.explore_features(feats, labels, ["a", "b", "c"], "teacher", classes=[0], projection="tsne")
    assert fig._suptitle.get_text().startswith("PCA of 4 points")
