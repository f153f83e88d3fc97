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


# One colour-blind-safe palette everywhere (seaborn's "colorblind", after Okabe and Ito): methods keep their
# colour in every figure; classes get these colours plus a marker each, so no figure relies on hue alone.
COLORBLIND = sns.color_palette("colorblind", 10)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# Method colours from that palette, chosen far apart (its orange and vermilion are too close to pair).
METHOD_COLORS = {"teacher": COLORBLIND[0], "vanilla": COLORBLIND[1], "kd": COLORBLIND[2], "fitnet": COLORBLIND[9],
                 "simkd": COLORBLIND[4]}


def _palette(names: Sequence[str]) -> dict:
    return {name: METHOD_COLORS.get(name, "grey") for name in names}


def budget_title(dataset: str, extra_params: dict[str, int] | None) -> str:
    """'<dataset>: same student architecture and training budget; SimKD deploys +13,568 parameters' (computed)."""
    extra = {m: p for m, p in (extra_params or {}).items() if p}
    more = "; ".join(f"{METHOD_LABELS.get(m, m)} deploys {p:+,} parameters" for m, p in extra.items())
    return f"{dataset}: same student architecture and training budget" + (f"; {more}" if more else "")


def accuracy_bars(results: dict, ax=None) -> Figure:
    """Test top-1 of the teacher and each student (a `results.json` dict): bars from zero, values on the bars
    (a bar's length is its accuracy: an axis starting near the values would exaggerate the gaps)."""
    names = ["teacher"] + [s["method"] for s in results["students"]]
    values = [results["teacher"]["top1"]] + [s["top1"] for s in results["students"]]
    fig, ax = _figure(ax, (6, 3.5))
    colors = _palette(names)
    bars = ax.bar([METHOD_LABELS.get(n, n) for n in names], values, color=[colors[n] for n in names])
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylim(0, 105)
    ax.set_ylabel("test top-1 (%)")
    ax.set_xlabel("method")
    extra = {s["method"]: s.get("extra_params") for s in results["students"]}
    ax.set_title(budget_title(results["dataset"], extra), fontsize=9)
    return fig


def method_comparison(this_run: dict[str, float], table: dict | None = None, *, dataset: str = "",
                      extra_params: dict[str, int] | None = None, ax=None) -> Figure:
    """A dot plot: per method, the committed runs (small grey dots), their mean ± std (black bar) and range,
    and this run's top-1 on top (large coloured dot). Positions, not bar lengths, carry the values, so the
    axis may zoom in without exaggerating: the spread is drawn next to every point.

    this_run: {method: top-1 (%)} (include "teacher"); table: `analysis.load_seed_table()` or None.
    """
    names = [m for m in METHOD_ORDER if m in this_run] + [m for m in this_run if m not in METHOD_ORDER]
    fig, ax = _figure(ax, (6.5, 3.6))
    colors = _palette(names)
    for y, name in enumerate(names):
        spread = (table or {}).get("summary", {}).get("top1", {}).get(name)
        if spread is not None:
            runs = [r[name] for r in table["rows"]]
            ax.scatter(runs, [y + 0.25] * len(runs), s=12, color="0.6", zorder=2,
                       label="committed runs (seeds × threads)" if y == 0 else None)
            ax.errorbar(spread["mean"], y + 0.25, xerr=spread["std"], fmt="|", color="black", capsize=4, zorder=3,
                        markersize=12, label="committed mean ± std" if y == 0 else None)
        ax.scatter(this_run[name], y, s=70, color=colors[name], edgecolor="black", zorder=4,
                   label="this run" if y == 0 else None)
        ax.annotate(f"{this_run[name]:.2f}", (this_run[name], y), textcoords="offset points", xytext=(0, 7),
                    ha="center", va="bottom", fontsize=8)
    ax.set_yticks(range(len(names)), [METHOD_LABELS.get(n, n) for n in names])
    ax.set_ylim(len(names) - 0.4, -0.6)
    ax.set_xlabel("test top-1 (%) on the full test set")
    ax.set_ylabel("method")
    n = len(table["rows"]) if table else 0
    ax.set_title(budget_title(dataset, extra_params) + (f"\ngrey: {n} committed runs; black: their mean ± std"
                                                          if n else "\n(no committed spread for this setting)"),
                 fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    return fig


def training_curves(histories: dict[str, list[dict]], metric: str = "test_top1", ax=None,
                    teacher_top1: float | None = None) -> Figure:
    """One line per method: `metric` (e.g. test_top1, train_top1) against the epoch.

    Points scored on a subset of the test set (`TrainConfig.eval_subset`) are hollow, points scored on the
    full test set are filled, and the legend says how many images each kind used: a step between a hollow
    and a filled point is partly a change of test images. `teacher_top1` draws the teacher as a dashed line.
    """
    fig, ax = _figure(ax, (6, 3.5))
    colors = _palette(list(histories))
    full = max((h.get("test_images") or 0 for hs in histories.values() for h in hs), default=0)
    subsets = sorted({h["test_images"] for hs in histories.values() for h in hs
                      if h.get("test_images") and h["test_images"] < full})
    for method, history in histories.items():
        points = [(h["epoch"], h[metric], h.get("test_images")) for h in history if h.get(metric) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[method],
                label=METHOD_LABELS.get(method, method))
        for epoch, value, images in points:
            hollow = metric == "test_top1" and images is not None and images < full
            ax.scatter(epoch, value, s=36, zorder=3, color="white" if hollow else colors[method],
                       edgecolor=colors[method], linewidth=1.5)
    if metric == "test_top1" and subsets:
        ax.scatter([], [], s=36, color="white", edgecolor="black", label=f"scored on {subsets[0]:,} images")
        ax.scatter([], [], s=36, color="black", label=f"scored on all {full:,}")
    if teacher_top1 is not None:
        ax.axhline(teacher_top1, color="black", linestyle="--", linewidth=1, label="teacher")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    label = metric.replace("_", " ") + (" (%)" if "top1" in metric else "")
    if metric == "test_top1" and full and not subsets:
        label += f" on {full:,} images"
    ax.set_ylabel(label)
    ax.set_title(f"Training curves: {metric.replace('_', ' ')}"
                 + (" (hollow: test subset, filled: full test set)" if metric == "test_top1" and subsets else ""),
                 fontsize=9)
    ax.legend(fontsize=8)
    return fig


def feature_scatter(embeddings: dict[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str] | None = None,
                    title: str = "Pooled features (2-D projection)") -> Figure:
    """Side-by-side 2-D scatter plots (one per feature source), points coloured and shaped by class
    (the colour-blind-safe palette plus one marker per class)."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(4 * len(embeddings), 4), squeeze=False)
    for ax, (name, points) in zip(axes[0], embeddings.items()):
        for c in np.unique(labels):
            mask = labels == c
            ax.scatter(points[mask, 0], points[mask, 1], s=9, color=COLORBLIND[c % 10], marker=MARKERS[c % 10],
                       linewidths=0, label=class_names[c] if class_names is not None else str(c))
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
                       ax=None, noise: float | None = None,
                       title: str = "Projector variants: accuracy vs. extra parameters") -> Figure:
    """Accuracy against extra parameters, one labelled point per projector variant.

    `rows`: dicts with "name", "extra_params" and "top1" (the student's test top-1 through the teacher head).
    `noise`: drawn as an error bar of ± noise points on every point (e.g. twice the committed std of a
    difference between two students), so that two points whose bars overlap are not ranked by eye.
    The x-axis is symmetric-log so that a variant with no projector (0 extra parameters) still shows.
    """
    fig, ax = _figure(ax, (6.5, 4))
    for i, row in enumerate(rows):
        color = COLORBLIND[i % 10]
        if noise:
            ax.errorbar(row["extra_params"], row["top1"], yerr=noise, color=color, capsize=4, zorder=2)
        ax.scatter(row["extra_params"], row["top1"], s=60, color=color, marker=MARKERS[i % 10], label=row["name"],
                   zorder=3)
        ax.annotate(row["name"], (row["extra_params"], row["top1"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    if teacher_top1 is not None:
        ax.axhline(teacher_top1, color="black", linestyle="--", linewidth=1, label="teacher")
    if baseline_top1 is not None:
        ax.axhline(baseline_top1, color="grey", linestyle=":", linewidth=1, label="vanilla student")
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(-50, max(r["extra_params"] for r in rows) * 3 + 200)
    shown = [r["top1"] for r in rows] + [v for v in (baseline_top1, teacher_top1) if v is not None]
    pad = max(0.5, noise or 0.0)
    ax.set_ylim(min(shown) - pad, max(shown) + pad)   # the reference lines stay inside the axes
    ax.set_xlabel("extra parameters (projector), symlog scale")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title
                 + (f"\n(bars: ± {noise:.2f} points, the noise of a difference between two students)" if noise else ""),
                 fontsize=9)
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
    """Dots per class: 1 − mean student-teacher cosine similarity of pooled features (the cosine distance),
    on a log axis. Cosines near 1 (0.98 vs 0.995) look alike on a 0-1 axis; their distances (0.02 vs 0.005)
    differ by 4x, and a log axis shows that ratio."""
    fig, ax = _figure(ax, (max(6, 0.7 * len(class_names)), 3.6))
    x = np.arange(len(class_names))
    for i, (name, values) in enumerate(similarities.items()):
        distance = np.clip(1 - np.asarray(values, dtype=float), 1e-6, None)
        ax.plot(x, distance, marker=MARKERS[i], linestyle="none", markersize=8, color=COLORBLIND[i], label=name)
    ax.set_yscale("log")
    rotate = max(len(c) for c in class_names) > 3
    ax.set_xticks(x, class_names, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_xlabel("class")
    ax.set_ylabel("1 − mean cosine similarity\n(log scale; lower = closer)")
    ax.set_title("Student vs. teacher pooled features, per class: distance from identical directions")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: Sequence[str], normalize: bool = True) -> Figure:
    """One heatmap per model (rows: true class, columns: predicted), in % of the row, numbers and a colour bar."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.4), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        values = _row_percent(matrix) if normalize else np.asarray(matrix, dtype=float)
        sns.heatmap(values, ax=ax, cmap="Blues", vmin=0, vmax=100 if normalize else None, square=True, annot=True,
                    fmt=".0f", annot_kws={"fontsize": 6}, cbar_kws={"label": "% of the true class" if normalize
                                                                    else "images", "shrink": 0.8},
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_title(name)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.suptitle("Confusion matrices" + (" (% of each true class)" if normalize else ""))
    fig.tight_layout()
    return fig


def confusion_differences(matrices: dict[str, np.ndarray], reference: str, class_names: Sequence[str]) -> Figure:
    """The reference's confusion matrix (% of each true class), then each other model minus the reference,
    in percentage points, on a diverging colour scale centred at 0 with a colour bar and the numbers.

    Red (above 0): the student sends more of that true class there than the reference does; blue: fewer.
    On the diagonal, red is a class the student gets right more often.
    """
    others = [n for n in matrices if n != reference]
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(5 * (1 + len(others)), 4.4), squeeze=False)
    base = _row_percent(matrices[reference])
    sns.heatmap(base, ax=axes[0][0], cmap="Blues", vmin=0, vmax=100, square=True, annot=True, fmt=".0f",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "% of the true class", "shrink": 0.8},
                xticklabels=class_names, yticklabels=class_names)
    axes[0][0].set_title(f"{reference} (% of each true class)")
    differences = {n: _row_percent(matrices[n]) - base for n in others}
    limit = max([1.0] + [float(np.abs(d).max()) for d in differences.values()])
    for ax, (name, diff) in zip(axes[0][1:], differences.items()):
        numbers = np.round(diff).astype(int) + 0   # whole points; "+ 0" turns -0 into 0
        sns.heatmap(diff, ax=ax, cmap="RdBu_r", vmin=-limit, vmax=limit, center=0, square=True, annot=numbers,
                    fmt="d", annot_kws={"fontsize": 6},
                    cbar_kws={"label": f"{name} − {reference} (percentage points)", "shrink": 0.8},
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_title(f"{name} − {reference}")
    for ax in axes[0]:
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    fig.suptitle(f"Where the students' predictions differ from the {reference}'s (same test images)")
    fig.tight_layout()
    return fig


def _row_percent(matrix: np.ndarray) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    return 100 * values / np.maximum(values.sum(1, keepdims=True), 1)


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
