"""Teachers shipped inside the package for the quick profile, with their provenance.

Each `simkd_lite/pretrained/<dataset>_<model>.pt` was produced by our own `simkd-lite train-teacher`
(command and seed in the `.json` beside it, with the measured test top-1 and the file's sha256), so
anyone can re-create it and a test re-measures its accuracy against the record. Maintainers ship a
new one with `python scripts/ship_teacher.py CHECKPOINT "COMMAND"`.
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
