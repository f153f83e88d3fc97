"""The paper's published CIFAR-100 numbers, typed in once: everything that compares with the paper reads them here.

    paper_top1("cifar100", "resnet32x4", "resnet8x4", "simkd", {"factor": 2})   # -> 78.08
    paper_top1("cifar100", "resnet32x4", "resnet14", "kd", {...})               # -> None: not in the paper

Source: SimKD (Chen et al., CVPR 2022), the CIFAR-100 table for the teacher ResNet-32x4 (79.42% top-1).
The numbers are test top-1 in percent as the official scripts report them: the **best** of the test
evaluations after each of the 240 epochs (`training.metrics.BEST_ON_TEST_NOTE`). Each baseline's number holds
for the SimKD repository's protocol (`--cls 1 --div 1`); SimKD's depends on the projector factor (2 is the
default). Which row a run is, is the method's own answer (`Distiller.paper_label(options)`, from its
`paper_options`); with other method options a run is "not in the paper".
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from simkd_lite.distillers import get_distiller_class

# How the paper's numbers were selected: the official scripts keep the best of 240 test evaluations.
PAPER_REPORTS = "best_top1"


@dataclass(frozen=True)
class PaperColumn:
    """One column of the paper's table: a teacher-student pair and the top-1 (%) of each method."""

    dataset: str
    teacher: str  # official model names (GUIDE section 4)
    teacher_top1: float
    student: str
    top1: Mapping[str, float]  # "vanilla", "kd", "fitnet", "crd", "semckd", "simkd f=8" / "f=4" / "f=2"


def _column(student: str, vanilla, kd, fitnet, crd, semckd, simkd_f8, simkd_f4, simkd_f2) -> PaperColumn:
    numbers = {"vanilla": vanilla, "kd": kd, "fitnet": fitnet, "crd": crd, "semckd": semckd,
               "simkd f=8": simkd_f8, "simkd f=4": simkd_f4, "simkd f=2": simkd_f2}
    return PaperColumn("cifar100", "resnet32x4", 79.42, student, MappingProxyType(numbers))


# The paper's CIFAR-100 table, teacher ResNet-32x4 (79.42): one column per student.
PAPER_TABLE: tuple[PaperColumn, ...] = (
    _column("resnet8x4", 73.09, 74.42, 74.32, 75.59, 76.23, 76.73, 77.88, 78.08),
    _column("vgg8", 70.46, 72.73, 72.91, 73.54, 75.27, 74.74, 75.62, 75.76),
    _column("ShuffleV2_1_5", 74.15, 76.82, 77.12, 77.66, 79.13, 78.96, 79.48, 79.54),
)

# Official wall times on one RTX 2080 Ti for 240 epochs (the SimKD repository's logs; GUIDE section 2).
OFFICIAL_WALL_TIMES = {("resnet32x4", "teacher"): "2 h 24 m", ("resnet8x4", "simkd"): "1 h 24 m",
                       ("resnet8x4", "kd"): "1 h 12 m"}


def paper_column(dataset: str, teacher: str, student: str) -> PaperColumn | None:
    """The paper's column for this (dataset, teacher, student), or None when the paper has none."""
    for column in PAPER_TABLE:
        if (column.dataset, column.teacher, column.student) == (dataset, teacher, student):
            return column
    return None


def paper_top1(dataset: str, teacher: str | None, student: str, method: str, options: Mapping) -> float | None:
    """The paper's top-1 (%, best of 240 epochs) for this run, or None ("not in the paper")."""
    column = paper_column(dataset, teacher, student) if teacher else None
    key = get_distiller_class(method).paper_label(options)
    return column.top1.get(key) if column is not None and key is not None else None


def missing_teacher_message(dataset: str, teacher_model: str, epochs: int) -> str:
    """The one-sentence refusal when a paper run on `dataset` has no teacher: pass the official one, or opt in."""
    wall = OFFICIAL_WALL_TIMES.get((teacher_model, "teacher"))
    took = f"; the official {teacher_model} took {wall} for 240 epochs on one RTX 2080 Ti" if wall else ""
    published = [c.teacher_top1 for c in PAPER_TABLE if (c.dataset, c.teacher) == (dataset, teacher_model)]
    accuracy = f" ({published[0]:.2f}% in the paper)" if published else ""
    return (f"the paper profile on {dataset} needs a teacher and none is shipped for it: pass --teacher "
            f"PATH/{teacher_model}_best.pth (the paper distils from the official {teacher_model} checkpoint{accuracy}, "
            f"linked from the SimKD repository's README; add --teacher-model {teacher_model} if the path does not "
            f"name it), or add --train-teacher to train one first with the paper recipe ({epochs} epochs{took})")


def teacher_time_note(teacher_model: str, epochs: int) -> str:
    """What `--train-teacher` is about to cost, from the only timing we know (the official logs)."""
    wall = OFFICIAL_WALL_TIMES.get((teacher_model, "teacher"))
    known = (f"the official run took {wall} for 240 epochs on one RTX 2080 Ti" if wall
             else "no timing is recorded for this model")
    return (f"training the {teacher_model} teacher with the paper recipe, {epochs} epochs ({known}; this package "
            "has not timed it); a finished teacher with the same settings is reused, an interrupted one continued")
