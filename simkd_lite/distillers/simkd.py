"""SimKD (Chen et al., CVPR 2022): align the last feature maps, then reuse the teacher's classifier.

    student map --align--> projector ("transfer") --MSE--> teacher map
                                     |
                          global avg pool -> teacher's frozen Linear -> logits

The only loss is the L2 distance between the projected student map and the teacher map.
If the two were equal, the student would inherit the teacher's accuracy exactly.
"""
from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from simkd_lite.distillers.base import Distiller, register_distiller
from simkd_lite.distillers.projector import SimKDProjector, predict_with_teacher_head, projected_pooled
from simkd_lite.distillers.student import SimKDStudent


@register_distiller("simkd")
class SimKDDistiller(Distiller):
    """Trains student encoder + projector with the L2 loss; predicts with the teacher's head."""

    paper_options = {"factor": 2}  # the default; the paper's table also has rows for factors 4 and 8

    @classmethod
    def paper_label(cls, options) -> str | None:
        """The paper's SimKD rows are one per projector factor: "simkd f=2" (f=4, f=8)."""
        return f"simkd f={options.get('factor', 2)}"

    def __init__(self, student: nn.Module, teacher: nn.Module, factor: int = 2):
        super().__init__(student, teacher)
        # The student's own classifier is never used (prediction goes through the teacher's head):
        # freeze it so that it is not optimised, decayed, or waited for by DDP's gradient sync.
        student.get_classifier().requires_grad_(False)
        self.projector = SimKDProjector(student.feature_channels, teacher.feature_channels, factor)
        # A frozen *copy* of the teacher's last Linear: part of the student's prediction head.
        self.teacher_head = self.teacher.classifier_copy()

    def forward_train(self, x: Tensor, y: Tensor, teacher_out=None):
        teacher_features = self.teacher_outputs(x, teacher_out).features
        self.target_size = teacher_features.shape[-1]
        projected, target, logits = self.projector(self.student.forward_features(x), teacher_features, self.teacher_head)
        return logits, {"simkd": SimKDProjector.loss(projected, target)}

    def forward(self, x: Tensor) -> Tensor:
        # Evaluation never runs the teacher network: the alignment only needs the teacher
        # map's size, which training recorded in `target_size`.
        return predict_with_teacher_head(self.student, self.projector, self.teacher_head, x, self.target_size)

    # H_t of the teacher map, recorded by the first training step and saved in state_dict.
    target_size: int | None = None

    def get_extra_state(self):
        return {"target_size": self.target_size}

    def set_extra_state(self, state) -> None:
        self.target_size = state["target_size"]

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"projector": self.projector}

    def pooled_features(self, x: Tensor) -> Tensor:
        """(N, C_t): the projected, pooled map the reused teacher head classifies."""
        return projected_pooled(self.student, self.projector, x, self.target_size)

    def checkpoint_entries(self) -> dict:
        """The official `proj` entry, and `simkd`: what rebuilds the prediction head from a training
        checkpoint without the teacher file (`SimKDStudent.from_training_checkpoint`)."""
        return {"proj": self.projector.state_dict(),
                "simkd": {"student_channels": self.projector.student_channels,
                          "teacher_channels": self.projector.teacher_channels, "factor": self.projector.factor,
                          "target_size": self.target_size, "num_classes": self.teacher_head.out_features,
                          "teacher_model": getattr(self.teacher.model, "model_name", None),
                          "head": self.teacher_head.state_dict()}}

    @classmethod
    def predictor_from_checkpoint(cls, checkpoint: dict) -> SimKDStudent:
        """A SimKD run's last.pt / best.pt predicts through projector + teacher head (what it reported)."""
        return SimKDStudent.from_training_checkpoint(checkpoint)

    def export(self) -> SimKDStudent:
        """The deployable student: student encoder + projector + teacher head, no teacher network."""
        return SimKDStudent(self.student, self.projector, self.teacher_head, teacher_feature_size=self.target_size,
                            teacher_model=getattr(self.teacher.model, "model_name", None))

    def deployed_parameters(self) -> int:
        return self.export().num_parameters()

    def write_deployable(self, out_dir: Path, dataset: dict | None = None) -> list[Path]:
        """`OUT/student.pt`: the self-contained `SimKDStudent` file (it records the data set)."""
        deployable = self.export()
        deployable.dataset = dataset
        return [deployable.save(Path(out_dir) / "student.pt")]
