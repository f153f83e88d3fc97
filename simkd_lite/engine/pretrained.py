"""Teachers shipped inside the package for the quick profile, with their provenance.

Each `simkd_lite/pretrained/<dataset>_<model>.pt` was produced by our own `simkd-lite train-teacher`
(command and seed in the `.json` beside it, with the measured test top-1 and the file's sha256), so
anyone can re-create it and a test re-measures its accuracy against the record.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


def shipped_teacher(dataset: str) -> tuple[Path, dict] | None:
    """(checkpoint path, provenance record) of the shipped teacher for `dataset`, or None."""
    for record_path in sorted(PRETRAINED_DIR.glob(f"{dataset}_*.json")):
        record = json.loads(record_path.read_text())
        return record_path.with_suffix(".pt"), record
    return None


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ship_teacher(checkpoint: str | Path, command: str, data_root: str | Path = "data") -> Path:
    """Copy a trained teacher into the package with its provenance (run once by maintainers).

    Keeps the official layout (`model`, `epoch`, `best_acc`) plus `kind`, `model_name` and `dataset`,
    drops optimizer/RNG state, re-measures the test top-1 on the full test set and records it
    with the command, seed and sha256 in `<dataset>_<model>.json`.
    """
    import torch

    from simkd_lite.checkpoints import atomic_save, read_checkpoint
    from simkd_lite.engine.jobs import evaluate_checkpoint

    state = read_checkpoint(checkpoint)
    if state.get("kind", "teacher") != "teacher":
        raise ValueError(f"{checkpoint} is a {state.get('method')} student checkpoint; only teachers are shipped.")
    dataset, model = state["dataset"]["name"], state["model_name"]
    slim = {k: state[k] for k in ("model", "epoch", "best_acc", "best_epoch", "model_name", "dataset", "history")
            if k in state}
    slim.update(kind="teacher", method="vanilla")  # what it is (engine.loading reads it)
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


if __name__ == "__main__":  # python -m simkd_lite.engine.pretrained CHECKPOINT "COMMAND"
    import sys

    print(ship_teacher(sys.argv[1], sys.argv[2]))
