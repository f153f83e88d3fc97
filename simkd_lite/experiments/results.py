"""The one result type of the experiment API: what a finished training run reports.

    run = train_student("simkd", data, teacher)        # or train_teacher(exp), compare(...)[method]
    run.top1, run.best_top1, run.best_epoch, run.history, run.out, run.checkpoint
    run.predictor     # the network whose predictions `top1` scored (SimKD: through the teacher's head)
    run.export()      # the deployable network (SimKD: encoder + projector + teacher head)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn


@dataclass
class RunResult:
    """One trained network (a teacher, or a student of some method): its numbers, its folder, its distiller."""

    method: str  # the training method ("vanilla" for a teacher: cross-entropy alone)
    model: str
    out: Path
    top1: float  # test top-1 (%) after the last epoch (= last_top1; the paper reports best_top1)
    best_top1: float | None  # the best epoch's test top-1 (selected on the test set: optimistic)
    best_epoch: int | None
    params: int  # parameters the deployed network runs (SimKD: encoder + projector + teacher head)
    extra_params: int  # params - the plain student's
    seconds: float
    history: list[dict]
    distiller: nn.Module
    files: list[str] = field(default_factory=list)  # deployable files the method wrote (SimKD: student.pt)
    kind: str = "student"  # "teacher" or "student"
    together: list[str] | None = None  # the methods of a joint run this student was trained in

    @property
    def predictor(self) -> nn.Module:
        """The network that makes this run's predictions (SimKD: through the teacher's head)."""
        return self.distiller

    @property
    def last_top1(self) -> float:
        """The last epoch's test top-1 (the unselected number; `top1` is its older name)."""
        return self.top1

    @property
    def checkpoint(self) -> Path:
        """OUT/best.pt: the file the official scripts distil students from (`*_best.pth`)."""
        return self.out / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.out / "last.pt"

    def export(self) -> nn.Module:
        """The deployable network (SimKD: a `SimKDStudent`; other methods: the student network)."""
        return self.distiller.export()

    def summary(self) -> dict:
        """The numbers as a plain dict (what results.json files hold); `top1` is `last_top1`, kept for older
        readers; the paper reports `best_top1`."""
        summary = {"method": self.method, "model": self.model, "top1": self.top1, "last_top1": self.top1,
                   "best_top1": self.best_top1,
                   "best_epoch": self.best_epoch, "params": self.params, "extra_params": self.extra_params,
                   "seconds": self.seconds, "out": str(self.out)}
        if self.together is not None:
            summary["together"] = list(self.together)
        return summary


StudentRun = RunResult  # the name the notebooks and earlier versions use
