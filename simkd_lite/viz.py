"""Figures for the demo and the notebooks (matplotlib + seaborn). They take results, histories and
tensors; they never train. Every function returns the matplotlib Figure, labelled and titled."""
from __future__ import annotations

from typing import Sequence


import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

METHOD_ORDER = ("teacher", "vanilla", "kd", "fitnet", "simkd")
METHOD_LABELS = {"teacher": "Teacher", "vanilla": "Vanilla", "kd": "KD", "fitnet": "FitNet", "simkd": "SimKD"}


def _palette(names: Sequence[str]) -> dict:
    colors = sns.color_palette("colorblind", len(METHOD_ORDER))
    return {name: colors[METHOD_ORDER.index(name) % len(colors)] if name in METHOD_ORDER else "grey" for name in names}


def accuracy_bars(results: dict, ax=None) -> Figure:
    """Test top-1 of the teacher and each student (a `results.json` dict), with values on the bars."""
    names = ["teacher"] + [s["method"] for s in results["students"]]
    values = [results["teacher"]["top1"]] + [s["top1"] for s in results["students"]]
    fig, ax = _figure(ax, (6, 3.5))
    colors = _palette(names)
    bars = ax.bar([METHOD_LABELS.get(n, n) for n in names], values, color=[colors[n] for n in names])
    ax.bar_label(bars, fmt="%.2f")
    low = max(0.0, min(values) - 5)
    ax.set_ylim(low, min(100.0, max(values) + 2))
    ax.axhline(results["teacher"]["top1"], color="black", linestyle="--", linewidth=1, label="teacher")
    ax.set_ylabel("test top-1 (%)")
    ax.set_xlabel("method")
    ax.set_title(f"{results['dataset']}: students of the same size and budget")
    ax.legend(loc="lower right")
    return fig


def training_curves(histories: dict[str, list[dict]], metric: str = "test_top1", ax=None,
                    teacher_top1: float | None = None) -> Figure:
    """One line per method: `metric` (e.g. test_top1, train_top1) against the epoch.

    When the intermediate test scores used fewer images than the last one (`TrainConfig.eval_subset`),
    the y label says so. `teacher_top1` draws the teacher as a dashed line.
    """
    fig, ax = _figure(ax, (6, 3.5))
    colors = _palette(list(histories))
    for method, history in histories.items():
        points = [(h["epoch"], h[metric]) for h in history if h.get(metric) is not None]  # skipped tests: None
        ax.plot(*zip(*points), marker="o", label=METHOD_LABELS.get(method, method), color=colors[method])
    if teacher_top1 is not None:
        ax.axhline(teacher_top1, color="black", linestyle="--", linewidth=1, label="teacher")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    label = metric.replace("_", " ") + (" (%)" if "top1" in metric else "")
    images = sorted({h["test_images"] for hs in histories.values() for h in hs if h.get("test_images")})
    if metric == "test_top1" and len(images) > 1:
        label += f"\n(epochs before the last: {images[0]:,} images; last: {images[-1]:,})"
    elif metric == "test_top1" and images:
        label += f" on {images[0]:,} images"
    ax.set_ylabel(label)
    ax.set_title(f"Training curves: {metric.replace('_', ' ')}")
    ax.legend()
    return fig


def feature_scatter(embeddings: dict[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str] | None = None,
                    title: str = "Pooled features (2-D projection)") -> Figure:
    """Side-by-side 2-D scatter plots (one per feature source), points coloured by class."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(4 * len(embeddings), 4), squeeze=False)
    palette = sns.color_palette("tab10", int(labels.max()) + 1)
    for ax, (name, points) in zip(axes[0], embeddings.items()):
        for c in np.unique(labels):
            mask = labels == c
            ax.scatter(points[mask, 0], points[mask, 1], s=6, color=palette[c],
                       label=class_names[c] if class_names is not None else str(c))
        ax.set_title(name)
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _figure(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


# ------------------------------------------------------------------------------ figures for the notebooks
def run_curves(history: list[dict], title: str = "Training run") -> Figure:
    """Two panels for one run: every `loss_*` term, then train and test top-1, against the epoch."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in [k for k in history[0] if k.startswith("loss_")]:
        ax_loss.plot(epochs, [h[key] for h in history], marker="o", label=key[5:])
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Loss terms")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["train_top1"] for h in history], marker="o", label="train")
    ax_acc.plot(epochs, [h["test_top1"] for h in history], marker="s", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    ax_acc.set_title("Accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def projector_tradeoff(rows: Sequence[dict], baseline_top1: float | None = None, teacher_top1: float | None = None,
                       ax=None) -> Figure:
    """Accuracy against extra parameters, one labelled point per projector variant.

    `rows`: dicts with "name", "extra_params" and "top1" (the student's test top-1 through the teacher head).
    The x-axis is symmetric-log so that a variant with no projector (0 extra parameters) still shows.
    """
    fig, ax = _figure(ax, (6.5, 4))
    colors = sns.color_palette("colorblind", len(rows))
    for color, row in zip(colors, rows):
        ax.scatter(row["extra_params"], row["top1"], s=60, color=color, label=row["name"], zorder=3)
        ax.annotate(row["name"], (row["extra_params"], row["top1"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    if teacher_top1 is not None:
        ax.axhline(teacher_top1, color="black", linestyle="--", linewidth=1, label="teacher")
    if baseline_top1 is not None:
        ax.axhline(baseline_top1, color="grey", linestyle=":", linewidth=1, label="vanilla student")
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(-50, max(r["extra_params"] for r in rows) * 3 + 200)
    ax.set_xlabel("extra parameters (projector), symlog scale")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Projector variants: accuracy vs. extra parameters")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def image_grid(rows: dict[str, "np.ndarray"], mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
               labels: Sequence[str] | None = None, max_images: int = 8, title: str = "Images") -> Figure:
    """One row of images per entry of `rows` ({"original": (N, C, H, W), "augmented": ...}), un-normalised."""
    n = min(max_images, min(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
    mean_a = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    std_a = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    for r, (name, images) in enumerate(rows.items()):
        images = np.asarray(images, dtype=np.float32)
        for i in range(n):
            ax = axes[r][i]
            picture = np.clip(images[i] * std_a + mean_a, 0, 1)
            ax.imshow(picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0),
                      cmap="gray" if picture.shape[0] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_similarity(similarities: dict[str, Sequence[float]], class_names: Sequence[str], ax=None) -> Figure:
    """Grouped bars: mean student-teacher cosine similarity of pooled features, per class."""
    fig, ax = _figure(ax, (max(6, 0.6 * len(class_names) * max(1, len(similarities))), 3.5))
    n = len(similarities)
    width = 0.8 / n
    x = np.arange(len(class_names))
    colors = sns.color_palette("colorblind", n)
    for i, (name, values) in enumerate(similarities.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=name, color=colors[i])
    ax.set_xticks(x, class_names, rotation=45 if max(len(c) for c in class_names) > 3 else 0, ha="right"
                  if max(len(c) for c in class_names) > 3 else "center")
    ax.set_ylim(min(0.0, float(np.nanmin([np.nanmin(v) for v in similarities.values()]))), 1.0)
    ax.set_xlabel("class")
    ax.set_ylabel("mean cosine similarity")
    ax.set_title("Student vs. teacher pooled features, per class")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: Sequence[str], normalize: bool = True) -> Figure:
    """One heatmap per model (rows: true class, columns: predicted), normalised per row by default."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        values = np.asarray(matrix, dtype=float)
        if normalize:
            values = values / np.maximum(values.sum(1, keepdims=True), 1)
        sns.heatmap(values, ax=ax, cmap="Blues", vmin=0, vmax=1 if normalize else None, square=True, cbar=False,
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_title(name)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.suptitle("Confusion matrices" + (" (row-normalised)" if normalize else ""))
    fig.tight_layout()
    return fig


def throughput_bars(throughputs: dict[str, float], device: str, ax=None) -> Figure:
    """Images per second of several ways to run a model, on one device, values on the bars."""
    fig, ax = _figure(ax, (6.5, 3.2))
    names = list(throughputs)
    colors = sns.color_palette("colorblind", len(names))
    bars = ax.barh(names, [throughputs[n] for n in names], color=colors)
    ax.bar_label(bars, fmt="%.0f", padding=3)
    ax.set_xlabel("images / second (higher is better)")
    ax.set_ylabel("inference path")
    ax.set_title(f"Inference throughput on {device}")
    ax.set_xlim(0, max(throughputs.values()) * 1.25)
    return fig


def parameter_breakdown(summary: dict, ax=None) -> Figure:
    """Stacked bars of a `analysis.projector_summary`: deployed student (encoder + projector + head) vs teacher."""
    fig, ax = _figure(ax, (6.5, 2.6))
    colors = sns.color_palette("colorblind", 4)
    parts = [("student encoder", summary["student_encoder_params"]), ("projector", summary["projector_params"]),
             ("teacher head (copied)", summary["teacher_head_params"])]
    left = 0
    for color, (name, value) in zip(colors, parts):
        ax.barh("SimKD student", value, left=left, color=color, label=name)
        left += value
    ax.barh("teacher", summary["teacher_params"], color=colors[3], label=f"teacher ({summary['teacher']})")
    ax.set_xlabel("parameters")
    ax.set_title(f"{summary['student']} + projector (f={summary['factor']}) vs {summary['teacher']}: "
                 f"{summary['compression_ratio']:.2f}x smaller")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
