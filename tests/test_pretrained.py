"""The teachers shipped in the package are what their provenance records say they are."""
import json

import pytest

from simkd_lite.checkpoints import read_checkpoint
from simkd_lite.data import locate_dataset
from simkd_lite.experiments.jobs import evaluate_checkpoint
from simkd_lite.experiments.pretrained import PRETRAINED_DIR, sha256, shipped_teacher

RECORDS = sorted(PRETRAINED_DIR.glob("*.json"))


def test_a_fashion_mnist_teacher_is_shipped_and_worth_distilling():
    path, record = shipped_teacher("fashion_mnist")
    assert path.exists() and record["test_top1"] >= 92.0
    assert record["command"].startswith("simkd-lite train-teacher") and "--seed" in record["command"]


@pytest.mark.parametrize("record_path", RECORDS, ids=[p.stem for p in RECORDS])
def test_shipped_teacher_matches_its_record(record_path):
    record = json.loads(record_path.read_text())
    checkpoint = record_path.with_suffix(".pt")
    assert sha256(checkpoint) == record["sha256"]
    state = read_checkpoint(checkpoint)
    assert {"model", "epoch", "best_acc", "model_name"} <= set(state)  # the official layout, plus the name
    if not locate_dataset(record["dataset"])["present"]:
        pytest.skip(f"{record['dataset']} is not under data/ (run ./scripts/setup.sh)")
    measured = evaluate_checkpoint(checkpoint, record["dataset"])
    assert measured["test_images"] == record["test_images"]
    assert measured["top1"] == pytest.approx(record["test_top1"], abs=0.01)
