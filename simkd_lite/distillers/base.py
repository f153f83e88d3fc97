"""The small interface every method shares, and the registry that finds them.

A method is a subclass of `Distiller` with two jobs:
- `forward_train(x, y, teacher_out)` -> (logits, {loss_name: loss}) for one training batch;
- `forward(x)` -> logits of the *prediction head* used for evaluation
  (for SimKD: student encoder -> projector -> the teacher's classifier; never the teacher network).
Adding a method = one small file with a subclass decorated by `@register_distiller("name")`.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, ClassVar

from torch import Tensor, nn

from simkd_lite.distillers.checks import check_finite_weights, check_model
from simkd_lite.distillers.losses import global_pool
from simkd_lite.distillers.teacher import FrozenTeacher, TeacherOutputs
from simkd_lite.models import count_parameters

_DISTILLERS: dict[str, type["Distiller"]] = {}


def register_distiller(name: str) -> Callable[[type["Distiller"]], type["Distiller"]]:
    """Class decorator: make a Distiller subclass available as `create_distiller(name, ...)`."""

    def add(cls: type["Distiller"]) -> type["Distiller"]:
        cls.method = name
        _DISTILLERS[name] = cls
        return cls

    return add


def list_methods() -> list[str]:
    """Names accepted by `create_distiller` (and the CLI's `--method`)."""
    return sorted(_DISTILLERS)


def get_distiller_class(method: str) -> type["Distiller"]:
    if not isinstance(method, str):
        raise TypeError(f"method must be a name, one of {', '.join(list_methods())}; got {method!r}")
    if method not in _DISTILLERS:
        close = difflib.get_close_matches(method, list(_DISTILLERS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown method {method!r}.{hint} Available: {', '.join(list_methods())}.")
    return _DISTILLERS[method]


def create_distiller(method: str, student: nn.Module, teacher: nn.Module | None = None, **options) -> "Distiller":
    """Build a method by name, e.g. `create_distiller("simkd", student, teacher, factor=2)`."""
    cls = get_distiller_class(method)
    if cls.needs_teacher and teacher is None:
        raise ValueError(f"Method {method!r} distils from a teacher: pass teacher=<model>.")
    return cls(student, teacher, **options) if cls.needs_teacher else cls(student, **options)


class Distiller(nn.Module):
    """Base class: a student plus whatever extra modules a method trains (projector, regressor).

    The teacher, when there is one, lives in `self.teacher` as a `FrozenTeacher`, outside the
    module tree: `state_dict()` holds only what this method trains and predicts with.
    """

    method: ClassVar[str] = "base"
    needs_teacher: ClassVar[bool] = True
    # Index into the teacher's official feature list that this method reads besides the last map
    # (FitNet's hint layer); the engine then caches that map too. None: features + logits suffice.
    teacher_hint_layer: int | None = None
    # The options this method ran with in the paper's CIFAR-100 table: the SimKD repository's protocol
    # (its README fixes `--cls 1 --div 1` for every baseline). A run with other values is not the paper's row.
    paper_options: ClassVar[dict] = {}

    @classmethod
    def paper_label(cls, options: Mapping) -> str | None:
        """This method's row in the paper's table when run with `options` ("kd"), or None: the paper ran it
        otherwise (`experiments.paper_table` reads the number; a new method only sets `paper_options`)."""
        if any(options.get(name) != value for name, value in cls.paper_options.items()):
            return None
        return cls.method

    @classmethod
    def data_options(cls, image_size: int) -> dict:
        """Options this method needs from the data set (FitNet's regressor depends on map sizes)."""
        return {}

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None):
        check_model(student, "student")
        if teacher is not None:
            check_model(teacher, "teacher")
            check_finite_weights(teacher, f"the teacher ({getattr(teacher, 'model_name', type(teacher).__name__)})")
            if (teacher.num_classes, teacher.in_channels) != (student.num_classes, student.in_channels):
                raise ValueError(f"the student ({student.num_classes} classes, {student.in_channels} input channels) "
                                 f"and the teacher ({teacher.num_classes} classes, {teacher.in_channels} input "
                                 "channels) must see the same images and classes")
        super().__init__()
        self.student = student
        self.teacher = FrozenTeacher(teacher) if teacher is not None else None

    def teacher_outputs(self, x: Tensor, teacher_out: TeacherOutputs | None) -> TeacherOutputs:
        """Cached outputs when the engine has them, else one frozen-teacher forward."""
        if teacher_out is not None:
            return teacher_out
        if self.teacher is None:
            raise RuntimeError(f"{self.method} needs teacher outputs but has no teacher.")
        return self.teacher(x, self.teacher_hint_layer)

    def forward_train(
        self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Prediction logits (N, num_classes) through this method's own head."""
        return self.student(x)

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules trained besides the student (counted as 'extra parameters')."""
        return {}

    # -------------------------------------------------- hooks: what a method adds to a run's files
    def pooled_features(self, x: Tensor) -> Tensor:
        """(N, C): the pooled features this method's classifier reads (for feature-space plots)."""
        return global_pool(self.student.forward_features(x))

    def checkpoint_entries(self) -> dict:
        """Entries a training checkpoint needs besides the student's weights to predict as this method
        does (SimKD: the official `proj` and what rebuilds the teacher head). Default: none."""
        return {}

    @classmethod
    def predictor_from_checkpoint(cls, checkpoint: dict) -> nn.Module | None:
        """The network a training checkpoint of this method predicts with, when it is not the saved
        network itself (SimKD: encoder + projector + teacher head). None: the network in `model`."""
        return None

    def export(self) -> nn.Module:
        """The network deployed after training: by default the student itself."""
        return self.student

    def deployed_parameters(self) -> int:
        """Parameters the deployed network runs at inference."""
        return count_parameters(self.student)

    def write_deployable(self, out_dir: Path, dataset: dict | None = None) -> list[Path]:
        """Extra files a finished run writes into its folder (SimKD: `student.pt`, recording `dataset`)."""
        return []

    def to(self, *args, **kwargs):  # noqa: D102 - also move the teacher, which is outside the tree
        if self.teacher is not None:
            self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """The optimised objective: the sum of the (already weighted) named terms."""
    return sum(losses.values())
