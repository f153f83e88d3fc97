"""Maintainers only: copy a trained teacher into the package with its provenance.

    python scripts/ship_teacher.py runs/teacher_fm_final/best.pt \
        "simkd-lite train-teacher --dataset fashion_mnist --profile quick --seed 0 --threads 1 --out runs/teacher_fm_final"

Keeps the official layout (`model`, `epoch`, `best_acc`) plus `kind`, `model_name` and `dataset`, drops
optimizer/RNG state, re-measures the test top-1 on the full test set and records it with the
command, seed and sha256 in `simkd_lite/pretrained/<dataset>_<model>.json`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.experiments.jobs import evaluate_checkpoint
from simkd_lite.experiments.pretrained import PRETRAINED_DIR, sha256


def ship_teacher(checkpoint: str | Path, command: str, data_root: str | Path = "data") -> Path:
    state = read_checkpoint(checkpoint)
    if state.get("kind", "teacher") != "teacher":
        raise ValueError(f"{checkpoint} is a {state.get('method')} student checkpoint; only teachers are shipped.")
    dataset, model = state["dataset"]["name"], state["model_name"]
    slim = {k: state[k] for k in ("model", "epoch", "best_acc", "best_epoch", "model_name", "dataset", "history")
            if k in state}
    slim.update(kind="teacher", method="vanilla")  # what it is (experiments.loading reads it)
    target = PRETRAINED_DIR / f"{dataset}_{model}.pt"
    atomic_save(slim, target)
    measured = evaluate_checkpoint(target, dataset, data_root)
    record = {"dataset": dataset, "model": model, "file": target.name, "command": command,
              "seed": state["config"]["seed"], "epochs": state["epoch"], "test_top1": round(measured["top1"], 2),
              "test_images": measured["test_images"], "sha256": sha256(target),
              "train_seconds": round(sum(h["seconds"] for h in state["history"]), 1),
              "torch": torch.__version__}
    target.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(ship_teacher(sys.argv[1], sys.argv[2]))
