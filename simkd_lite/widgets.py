"""Interactive explorers for the notebooks (ipywidgets). They never train.

Each widget is a thin shell around a plain function that the notebooks also call directly, so a
headless run (nbmake, papermill, a static HTML export) still shows the figure or the table:

    projector_designer()         <- describe_projector(analysis.projector_summary(...)) + viz.parameter_breakdown
    feature_explorer(features, ...)  <- explore_features(features, labels, class_names, method, classes, projection)

A widget keeps what it last showed in `widget.state` ("summary"/"text"/"figure"), which is what the
unit tests read after changing a control's value.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from simkd_lite import analysis, viz
from simkd_lite.models import OFFICIAL_CIFAR_MODELS

DEFAULT_FACTORS = (1, 2, 4, 8, 16)


# ------------------------------------------------------------------------------ projector designer
def describe_projector(summary: dict) -> str:
    """A plain-text report of `analysis.projector_summary(...)`: shapes, parameters, MACs, compression."""
    t_map, s_map, size = summary["teacher_map"], summary["student_map"], summary["aligned_size"]
    if s_map[-1] > t_map[-1]:
        alignment = f"student map pooled {s_map[-1]}x{s_map[-1]} -> {size}x{size}"
    elif t_map[-1] > s_map[-1]:
        alignment = f"teacher map pooled {t_map[-1]}x{t_map[-1]} -> {size}x{size}"
    else:
        alignment = "same size: no pooling"
    lines = [
        f"teacher {summary['teacher']}: feature map {_shape(t_map)}, {summary['teacher_params']:,} parameters",
        f"student {summary['student']}: feature map {_shape(s_map)}; alignment: {alignment}",
        f"projector (factor {summary['factor']}, bottleneck m = {t_map[0]} // {summary['factor']} = "
        f"{summary['bottleneck']}):",
    ]
    for layer in summary["layers"]:
        lines.append(f"  {layer['name']:11} {layer['layer']:32} -> {_shape(layer['output']):12} "
                     f"{layer['params']:>9,} params")
    s, t, m = s_map[0], t_map[0], summary["bottleneck"]
    lines += [
        f"  total {summary['projector_params']:,} parameters; formula s*m + 9m^2 + m*t + 4m + 2t with "
        f"s={s}, m={m}, t={t}: {summary['formula_params']:,}",
        f"  {summary['projector_macs'] / 1e6:.2f} M multiply-accumulates per image "
        f"(about {2 * summary['projector_macs'] / 1e6:.2f} MFLOPs)",
        f"deployed student = encoder {summary['student_encoder_params']:,} + projector "
        f"{summary['projector_params']:,} + teacher head {summary['teacher_head_params']:,} = "
        f"{summary['deployed_params']:,} parameters",
        f"compression ratio (teacher / deployed student): {summary['compression_ratio']:.2f}x parameters, "
        f"{summary['teacher_macs'] / max(summary['deployed_macs'], 1):.2f}x MACs "
        f"({summary['teacher_macs'] / 1e6:.1f} M vs {summary['deployed_macs'] / 1e6:.1f} M)",
    ]
    return "\n".join(lines)


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def projector_designer(teachers: Sequence[str] = OFFICIAL_CIFAR_MODELS, students: Sequence[str] = OFFICIAL_CIFAR_MODELS,
                       factors: Sequence[int] = DEFAULT_FACTORS, teacher: str = "resnet32x4",
                       student: str = "resnet8x4", factor: int = 2, *, num_classes: int = 100,
                       in_channels: int = 3, image_size: int = 32):
    """Pick a teacher, a student and a factor; see the projector's shapes, size, cost and the compression.

    Returns an ipywidgets VBox (controls + output). Invalid choices (a teacher whose classifier does not
    read its feature map, a factor larger than the teacher's width) are explained in the output.
    """
    import ipywidgets as widgets
    from IPython.display import display

    teacher_box = widgets.Dropdown(options=list(teachers), value=teacher, description="teacher")
    student_box = widgets.Dropdown(options=list(students), value=student, description="student")
    factor_box = widgets.Dropdown(options=list(factors), value=factor, description="factor")
    out = widgets.Output()
    state: dict = {}

    def update(change=None) -> None:
        state.clear()
        with out:
            out.clear_output(wait=True)
            try:
                summary = analysis.projector_summary(teacher_box.value, student_box.value, factor_box.value,
                                                     num_classes=num_classes, in_channels=in_channels,
                                                     image_size=image_size)
            except ValueError as err:
                state["text"] = f"Not a valid design: {err}"
                print(state["text"])
                return
            state["summary"], state["text"] = summary, describe_projector(summary)
            print(state["text"])
            state["figure"] = viz.parameter_breakdown(summary)
            display(state["figure"])
            plt.close(state["figure"])

    for box in (teacher_box, student_box, factor_box):
        box.observe(update, names="value")
    update()
    ui = widgets.VBox([widgets.HBox([teacher_box, student_box, factor_box]), out])
    ui.state = state
    ui.controls = {"teacher": teacher_box, "student": student_box, "factor": factor_box}
    return ui


# ------------------------------------------------------------------------------ feature explorer
_PROJECTION_CACHE: dict = {}


def explore_features(features: dict, labels, class_names: Sequence[str], method: str,
                     classes: Sequence[int] | None = None, projection: str = "pca", max_points: int = 500,
                     seed: int = 0) -> Figure:
    """2-D scatter of one feature source (`features[method]`, (N, C)) restricted to `classes`.

    At most `max_points` points (a seeded random choice) are projected with PCA or t-SNE; results
    are cached, so switching back and forth in the widget is instant.
    """
    if method not in features:
        raise ValueError(f"Unknown feature source {method!r}: choose one of {', '.join(features)}.")
    labels = np.asarray(labels)
    chosen = sorted(set(range(len(class_names))) if classes is None or len(classes) == 0 else set(classes))
    index = np.flatnonzero(np.isin(labels, chosen))
    if len(index) > max_points:
        index = np.sort(np.random.default_rng(seed).choice(index, max_points, replace=False))
    if projection == "tsne" and len(index) <= 5:  # t-SNE needs more points than its smallest perplexity
        projection = "pca"
    key = (id(features[method]), method, tuple(index.tolist()), projection, seed)
    if key not in _PROJECTION_CACHE:
        if len(_PROJECTION_CACHE) > 32:
            _PROJECTION_CACHE.clear()
        _PROJECTION_CACHE[key] = analysis.project_2d(np.asarray(features[method])[index], projection, seed)
    title = f"{projection.upper() if projection == 'pca' else 't-SNE'} of {len(index)} points, {len(chosen)} classes"
    return viz.feature_scatter({method: _PROJECTION_CACHE[key]}, labels[index], class_names, title)


def feature_explorer(features: dict, labels, class_names: Sequence[str], projection: str = "pca",
                     max_points: int = 500, seed: int = 0):
    """Choose a feature source (e.g. teacher / SimKD / vanilla), the classes shown and the projection."""
    import ipywidgets as widgets
    from IPython.display import display

    method_box = widgets.Dropdown(options=list(features), value=next(iter(features)), description="features")
    classes_box = widgets.SelectMultiple(options=[(name, i) for i, name in enumerate(class_names)],
                                         value=tuple(range(len(class_names))), description="classes", rows=6)
    projection_box = widgets.ToggleButtons(options=["pca", "tsne"], value=projection, description="projection")
    out = widgets.Output()
    state: dict = {}

    def update(change=None) -> None:
        with out:
            out.clear_output(wait=True)
            if not classes_box.value:
                state.pop("figure", None)
                print("Select at least one class.")
                return
            fig = explore_features(features, labels, class_names, method_box.value, classes_box.value,
                                   projection_box.value, max_points, seed)
            state["figure"] = fig
            display(fig)
            plt.close(fig)

    for box in (method_box, classes_box, projection_box):
        box.observe(update, names="value")
    update()
    ui = widgets.VBox([widgets.HBox([method_box, projection_box]), classes_box, out])
    ui.state = state
    ui.controls = {"method": method_box, "classes": classes_box, "projection": projection_box}
    return ui
