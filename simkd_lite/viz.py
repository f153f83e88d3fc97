"""Figures for the demo and the notebooks (matplotlib + seaborn). They take results, histories and
tensors; they never train. Every function returns the matplotlib Figure, labelled and titled."""
from __future__ import annotations

from typing import Sequence


import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

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


def training_curves(histories: dict[str, list[dict]], metric: str = "test_top1", ax=None) -> Figure:
    """One line per method: `metric` (e.g. test_top1, train_top1) against the epoch."""
    fig, ax = _figure(ax, (6, 3.5))
    colors = _palette(list(histories))
    for method, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h[metric] for h in history], marker="o", label=METHOD_LABELS.get(method, method),
                color=colors[method])
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + (" (%)" if "top1" in metric else ""))
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
