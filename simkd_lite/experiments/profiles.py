"""Profiles: every recipe in one visible table.

- `quick` runs on a 2-core laptop CPU in minutes: small models, a seeded subset, no augmentation (so
  the training set and the teacher's outputs are computed once and cached), a short schedule.
- `paper` is the official CIFAR-100 recipe (GUIDE §2): SGD momentum 0.9, weight decay 5e-4, batch 64,
  240 epochs, lr 0.05 (0.01 for MobileNetV2 / ShuffleNet students) x0.1 at epochs 150, 180, 210,
  RandomCrop(32, 4) + flip; KD -r 0.1 -a 0.9 T=4; FitNet weight 100; SimKD factor 2.

`simkd-lite profiles` prints the table; CLI flags (--epochs, --lr, ...) override single values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from simkd_lite.training.loop import TrainConfig

# Official student learning rates that differ from 0.05 (GUIDE §2).
LOW_LR_STUDENTS = ("MobileNetV2", "MobileNetV2_1_0", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5")

PAPER_METHOD_OPTIONS = {"kd": {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9},
                        "fitnet": {"hint_weight": 100.0, "ce_weight": 1.0},
                        "simkd": {"factor": 2}}


@dataclass(frozen=True)
class Profile:
    """A complete recipe for one (profile, dataset): models, data budget, teacher and student training."""

    name: str
    dataset: str
    teacher_model: str
    student_model: str
    teacher: TrainConfig
    student: TrainConfig
    train_subset: int | None = None  # students' seeded subset (None: the full train set)
    method_options: dict = field(default_factory=lambda: dict(PAPER_METHOD_OPTIONS))

    def student_config(self, student_model: str | None = None) -> TrainConfig:
        model = student_model or self.student_model
        if self.name == "paper" and model in LOW_LR_STUDENTS:
            return replace(self.student, lr=0.01)
        return self.student


def _paper(dataset: str, teacher: str = "resnet32x4", student: str = "resnet8x4") -> Profile:
    # On a GPU the fast path pays off over 240 epochs: bf16 autocast and a compiled frozen teacher
    # (both are no-ops / optional on CPU; see simkd_lite/training/teacher_prep.py and benchmarks/README.md).
    recipe = TrainConfig(epochs=240, batch_size=64, lr=0.05, schedule="multistep", milestones=(150, 180, 210),
                         augment=True, cache_teacher=False, amp=True, compile_teacher=True,
                         cuda_graph=True)  # CUDA only; see training/graphed.py and benchmarks/README.md
    return Profile("paper", dataset, teacher, student, teacher=recipe, student=recipe)


# The quick profile's values were chosen by measurement on a 2-core CPU (see benchmarks/README.md):
# a teacher worth distilling (shipped, trained by `simkd-lite train-teacher`), and students whose
# budget fits the demo's three minutes.
_QUICK_FASHION = Profile(
    "quick", "fashion_mnist", teacher_model="resnet14", student_model="resnet8",
    teacher=TrainConfig(epochs=7, batch_size=128, lr=0.1, nesterov=True, schedule="onecycle", augment=True),
    # The test set is scored once, after the last epoch: per-epoch scoring cost a third of the budget.
    student=TrainConfig(epochs=8, batch_size=128, optimizer="adam", lr=5e-3, weight_decay=1e-4, schedule="onecycle",
                        augment=False, cache_teacher=True, eval_every=0),
    train_subset=10_000,
    # Hinton's CE + KD at equal weights did better than the paper's 0.1 / 0.9 in this short budget.
    method_options={"kd": {"temperature": 4.0, "ce_weight": 1.0, "kd_weight": 1.0},
                    "fitnet": {"hint_weight": 100.0, "ce_weight": 1.0},
                    "simkd": {"factor": 2}},
)

_QUICK_DIGITS = Profile(
    "quick", "digits", teacher_model="resnet8x2", student_model="resnet8_w8",
    teacher=TrainConfig(epochs=30, batch_size=64, lr=0.05, schedule="onecycle", augment=False),
    student=TrainConfig(epochs=20, batch_size=64, lr=0.05, schedule="onecycle", augment=False, cache_teacher=True),
)

PROFILES: dict[tuple[str, str], Profile] = {
    ("quick", "fashion_mnist"): _QUICK_FASHION,
    ("quick", "digits"): _QUICK_DIGITS,
    ("paper", "cifar100"): _paper("cifar100"),
    ("paper", "cifar10"): _paper("cifar10"),
    ("paper", "fashion_mnist"): _paper("fashion_mnist"),
}


def list_profiles() -> list[str]:
    return sorted({name for name, _ in PROFILES})


def get_profile(profile: str, dataset: str) -> Profile:
    """The recipe for (profile, dataset), with an error that lists what exists."""
    if (profile, dataset) not in PROFILES:
        available = ", ".join(f"{p}/{d}" for p, d in sorted(PROFILES))
        raise ValueError(f"No {profile!r} profile for dataset {dataset!r}. Available: {available}.")
    return PROFILES[(profile, dataset)]


def profile_table() -> str:
    """The table `simkd-lite profiles` prints: one row per recipe."""
    header = f"{'profile':8} {'dataset':14} {'teacher':11} {'student':11} {'subset':>7} {'T ep':>5} {'S ep':>5} " \
             f"{'batch':>5} {'lr':>6} {'schedule':10} {'augment':8} {'cache T':7}"
    rows = [header, "-" * len(header)]
    for (name, dataset), p in sorted(PROFILES.items()):
        s = p.student
        rows.append(f"{name:8} {dataset:14} {p.teacher_model:11} {p.student_model:11} {str(p.train_subset or 'all'):>7} "
                    f"{p.teacher.epochs:>5} {s.epochs:>5} {s.batch_size:>5} {s.lr:>6g} {s.schedule:10} "
                    f"{str(s.augment):8} {str(s.cache_teacher):7}")
    return "\n".join(rows)
