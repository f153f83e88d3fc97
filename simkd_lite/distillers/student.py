"""The deployable SimKD student: student encoder -> projector -> global pool -> frozen copy of the teacher head.

It never holds or runs the teacher network, and it saves to one self-contained file.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor, nn

from simkd_lite.checkpoints import atomic_save, extract_state_dict, infer_in_channels, load_model, load_weights, read_checkpoint
from simkd_lite.distillers.projector import SimKDProjector, predict_with_teacher_head
from simkd_lite.distillers.teacher import FrozenTeacher
from simkd_lite.models import count_parameters, create_model

FILE_FORMAT = "simkd_lite.SimKDStudent/1"


class SimKDStudent(nn.Module):
    """A SimKD student ready for inference: `forward(x)` (N, C, H, W) -> logits (N, num_classes)."""

    method = "simkd"  # the method that trains it (what a file holding one reports)

    def __init__(self, student: nn.Module, projector: SimKDProjector, teacher_head: nn.Linear,
                 teacher_feature_size: int | None = None, teacher_model: str | None = None,
                 dataset: dict | None = None):
        super().__init__()
        self.student = student  # used up to forward_features; its own classifier never runs
        self.projector = projector
        self.teacher_head = copy.deepcopy(teacher_head).requires_grad_(False)
        self.teacher_feature_size = teacher_feature_size  # H_t: pool larger student maps to it
        self.teacher_model = teacher_model
        self.dataset = dataset  # the data set it was trained on (name, classes, channels, image size), if known

    def forward(self, x: Tensor) -> Tensor:
        return predict_with_teacher_head(self.student, self.projector, self.teacher_head, x, self.teacher_feature_size)

    def num_parameters(self) -> int:
        """Parameters that run in `forward`: student encoder (without its unused classifier) + projector + teacher head."""
        unused = count_parameters(self.student.get_classifier())
        return count_parameters(self) - unused

    # ------------------------------------------------------------------ one self-contained file
    def save(self, path: str | os.PathLike) -> Path:
        """Write architecture names, channels, factor, sizes and all weights to one file."""
        return atomic_save({
            "format": FILE_FORMAT,
            "kind": "student", "method": "simkd", "deployable": True, "dataset": self.dataset,
            "student_model": self.student.model_name,
            "teacher_model": self.teacher_model,
            "student_channels": self.projector.student_channels,
            "teacher_channels": self.projector.teacher_channels,
            "factor": self.projector.factor,
            "num_classes": self.teacher_head.out_features,
            "in_channels": self.student.in_channels,
            "teacher_feature_size": self.teacher_feature_size,
            "model": self.student.state_dict(),
            "proj": self.projector.state_dict(),
            "head": self.teacher_head.state_dict(),
        }, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SimKDStudent":
        """Rebuild a saved student; no teacher checkpoint is needed.

        `path`: a `student.pt` (`save`), or a SimKD run's last.pt / best.pt, which hold the same
        prediction path (`from_training_checkpoint`).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"SimKDStudent.load needs the path of a student file (e.g. runs/simkd/student.pt), "
                            f"got {path!r}")
        saved = read_checkpoint(path)
        if saved.get("format") != FILE_FORMAT:
            if saved.get("method") == "simkd" and "proj" in saved:  # our SimKD training checkpoint
                return cls.from_training_checkpoint(saved)
            if "proj" in saved:
                raise ValueError(f"{path} is an official SimKD student checkpoint: it predicts through its teacher's "
                                 "classifier, which it does not hold; use SimKDStudent.from_official(path, "
                                 "teacher_checkpoint, student_model).")
            what = f"a {saved['method']} {saved.get('kind') or 'model'} checkpoint" if saved.get("method") else \
                "not a SimKD student (no projector)"
            raise ValueError(f"{path} is {what}, not a SimKDStudent file: load it with "
                             "simkd_lite.checkpoints.load_model(path).")
        return cls._rebuild(saved["student_model"], saved["in_channels"], saved["model"], saved["proj"],
                            {k: saved[k] for k in ("student_channels", "teacher_channels", "factor", "num_classes")},
                            saved["head"], saved["teacher_feature_size"], saved["teacher_model"], saved.get("dataset"))

    @classmethod
    def _rebuild(cls, student_model: str, in_channels: int, student_state, proj_state, sizes: Mapping[str, int],
                 head_state, target_size: int | None, teacher_model: str | None, dataset: dict | None) -> "SimKDStudent":
        """Student + projector + teacher head from their state_dicts; `sizes`: student_channels,
        teacher_channels, factor, num_classes."""
        student = create_model(student_model, sizes["num_classes"], in_channels)
        load_weights(student, student_state, student_model)
        projector = SimKDProjector(sizes["student_channels"], sizes["teacher_channels"], sizes["factor"])
        load_weights(projector, proj_state, "SimKD projector")
        teacher_head = nn.Linear(sizes["teacher_channels"], sizes["num_classes"])
        teacher_head.load_state_dict(head_state)
        return cls(student, projector, teacher_head, target_size, teacher_model, dataset).eval()

    @classmethod
    def from_training_checkpoint(cls, checkpoint: Mapping[str, Any]) -> "SimKDStudent":
        """The deployable student inside a SimKD training checkpoint (our OUT/last.pt or OUT/best.pt).

        Such a file holds the encoder (`model`), the projector (`proj`) and, under `simkd`, the
        frozen teacher head and the teacher's map size: the prediction the run scored, without
        the teacher network.
        """
        info = checkpoint.get("simkd") or _legacy_simkd_entry(checkpoint)
        if not isinstance(info, Mapping) or "proj" not in checkpoint:
            raise ValueError("This is not a SimKD training checkpoint of ours (no 'proj' and 'simkd' entries).")
        state = extract_state_dict(checkpoint)
        return cls._rebuild(checkpoint["model_name"], infer_in_channels(state), state, checkpoint["proj"], info,
                            info["head"], info["target_size"], info["teacher_model"], checkpoint.get("dataset"))

    @classmethod
    def from_official(cls, student_checkpoint: str | os.PathLike | Mapping[str, Any],
                      teacher_checkpoint: str | os.PathLike | Mapping[str, Any], student_model: str,
                      teacher_model: str | None = None, image_size: int = 32) -> "SimKDStudent":
        """Assemble a student from the official files: `{'model', 'proj', ...}` + the teacher's `{'model'}`.

        The official student file lacks the teacher head, so we take it from the teacher file
        once; the factor and channels are read off the projector weights.
        """
        saved = dict(student_checkpoint) if isinstance(student_checkpoint, Mapping) else read_checkpoint(student_checkpoint)
        if "proj" not in saved:
            raise ValueError("An official SimKD student checkpoint has a 'proj' entry (the projector); this one has "
                             f"only {sorted(saved)}.")
        teacher, _ = load_model(teacher_checkpoint, teacher_model)
        frozen = FrozenTeacher(teacher)
        proj_state = {k.removeprefix("module."): v for k, v in saved["proj"].items()}
        mid, student_channels = proj_state["transfer.0.weight"].shape[:2]
        teacher_channels = proj_state["transfer.6.weight"].shape[0]
        projector = SimKDProjector(student_channels, teacher_channels, factor=teacher_channels // mid)
        load_weights(projector, proj_state, "SimKD projector")
        student_state = extract_state_dict(saved)
        student = create_model(student_model, teacher.num_classes, infer_in_channels(student_state))
        load_weights(student, student_state, student_model)
        head = frozen.classifier_copy()
        # Shapes checked now, not as a matmul error at the first forward: projector -> teacher head,
        # student map -> projector.
        if head.in_features != teacher_channels:
            raise ValueError(f"This teacher does not fit the student checkpoint: its head ({teacher.model_name}) reads "
                             f"{head.in_features} channels, but the projector outputs {teacher_channels}. Pass the "
                             "teacher the student was distilled from.")
        if student.feature_channels != student_channels:
            raise ValueError(f"The student model {student_model} outputs {student.feature_channels} channels, but the "
                             f"projector expects {student_channels}. Pass the student architecture of the checkpoint.")
        size = frozen.feature_size(image_size, teacher.in_channels)
        return cls(student, projector, head, size, teacher.model_name).eval()
def _legacy_simkd_entry(checkpoint: Mapping[str, Any]) -> dict | None:
    """The `simkd` entry rebuilt from a training checkpoint written before it existed (its `extras`
    hold the distiller's teacher head and target size; channels and factor follow from `proj`)."""
    extras, proj = checkpoint.get("extras") or {}, checkpoint.get("proj") or {}
    if "teacher_head.weight" not in extras or "transfer.0.weight" not in proj:
        return None
    mid, student_channels = proj["transfer.0.weight"].shape[:2]
    teacher_channels = proj["transfer.6.weight"].shape[0]
    return {"student_channels": student_channels, "teacher_channels": teacher_channels,
            "factor": teacher_channels // mid, "num_classes": extras["teacher_head.weight"].shape[0],
            "target_size": (extras.get("_extra_state") or {}).get("target_size"),
            "teacher_model": checkpoint.get("teacher_model"),
            "head": {"weight": extras["teacher_head.weight"], "bias": extras["teacher_head.bias"]}}
