"""What a run reports: last and best test top-1, `OUT/metrics.csv`, and optional TensorBoard logs.

    summary = summarize(history)   # {"last_top1", "best_top1", "best_epoch", "epochs"}
    write_metrics_csv(history, out / "metrics.csv")

`history` is the list of per-epoch dicts that `fit` returns and stores in `last.pt`. The CSV is
rewritten from it (atomically) after every epoch, so a run resumed from `last.pt` continues the
same file without a duplicated or a missing epoch.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from simkd_lite.tempfiles import write_atomically

# One sentence, printed wherever a best-epoch number is.
BEST_ON_TEST_NOTE = ("best_top1 picks the epoch by its test score (model selection on the test set, as the official "
                     "scripts do: it is the number the paper reports), so it reads optimistically; last_top1 (after "
                     "the last epoch) is the unselected number.")


def summarize(history: list[dict]) -> dict:
    """Last and best test top-1 of a run, and the epoch of the best (None where nothing was scored).

    Only scores on the whole test set compete for best: with `eval_subset`, the intermediate epochs
    score the first few test images, and a best taken across two test sets would mean nothing.
    """
    full = max((h.get("test_images", 0) for h in history), default=0)
    scored = [h for h in history if h.get("test_top1") is not None and h.get("test_images", full) == full]
    best = max(scored, key=lambda h: h["test_top1"], default=None)  # the first epoch of a tie, as `>` in fit
    return {"last_top1": history[-1]["test_top1"] if history else None,
            "best_top1": best["test_top1"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "epochs": history[-1]["epoch"] if history else 0}


def describe(summary: dict) -> str:
    """'last_top1 91.20%, best_top1 91.45% (epoch 7; the paper reports best_top1)': the CLI's wording."""
    if summary["last_top1"] is None:
        return "not scored"
    text = f"last_top1 {summary['last_top1']:.2f}%"
    if summary["best_top1"] is not None:
        text += f", best_top1 {summary['best_top1']:.2f}% (epoch {summary['best_epoch']}; the paper reports best_top1)"
    return text


def metrics_columns(history: list[dict]) -> list[str]:
    """epoch, lr, the loss terms (in the run's order), train_top1, test_top1, seconds."""
    losses = [k for h in history for k in h if k.startswith("loss_")]
    return ["epoch", "lr", *dict.fromkeys(losses), "train_top1", "test_top1", "seconds"]


def write_metrics_csv(history: list[dict], path: str | os.PathLike) -> Path:
    """One row per epoch; written to a temp file and renamed, so readers never see half a file."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=metrics_columns(history), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in history:
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return write_atomically(buffer.getvalue().encode("utf-8"), path, mode=0o644)


class TensorBoardLog:
    """Scalars of every epoch under OUT/tensorboard (needs the optional `tensorboard` package).

    A resumed run purges events after its restart epoch, so curves have no duplicated steps.
    """

    def __init__(self, log_dir: str | os.PathLike, start_epoch: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch's module imports tensorboard itself
            raise ValueError("--tensorboard needs the tensorboard package: pip install 'simkd_lite[tensorboard]' "
                             f"(or pip install tensorboard); {err}") from None
        self.writer = SummaryWriter(str(log_dir), purge_step=start_epoch + 1 if start_epoch else None)

    def log(self, record: dict) -> None:
        step = record["epoch"]
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
