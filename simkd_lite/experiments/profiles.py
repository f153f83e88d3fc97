"""Profiles: every recipe in one visible table.

- `quick` runs on a 2-core laptop CPU in minutes: small models, a seeded subset, no augmentation (so
  the training set and the teacher's outputs are computed once and cached), a short schedule.
- `paper` is the official CIFAR-100 recipe (the SimKD repository's train_student.py defaults), in fp32 without torch.compile: SGD momentum 0.9,
  weight decay 5e-4, batch 64, 240 epochs, lr 0.05 (0.01 for MobileNetV2 / ShuffleNet, teachers and
  students alike, as the official train_teacher.py and train_student.py set it) x0.1 at epochs 150,
  180, 210, RandomCrop(32, 4) + flip, the test set scored after every epoch. Its method options are
  the SimKD repository's protocol behind the paper's table (its README: `--cls 1 --div 1` for all
  baselines; scripts/run_distill.sh): KD 1*CE + 1*KD (T=4); FitNet
  1*CE + 1*KD + 100*hint at hint layer 1; SimKD only the L2 loss (factor 2).
- `REPDISTILLER_METHOD_OPTIONS` is the older RepDistiller protocol (KD 0.1*CE + 0.9*KD; FitNet CE +
  100*hint at layer 2, no KD), kept under its own name for comparisons with RepDistiller's numbers;
  it is never what `paper` means.

`simkd-lite profiles` prints the table; CLI flags (--epochs, --lr, ...) override single values.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from simkd_lite.distillers import get_distiller_class, list_methods
from simkd_lite.training.loop import TrainConfig

# Models that the official scripts train with lr 0.01 instead of 0.05, as teachers (train_teacher.py)
# and as students (train_student.py).
LOW_LR_MODELS = ("MobileNetV2", "MobileNetV2_1_0", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5")

# The SimKD repository's protocol (`--cls 1 --div 1` for every baseline; scripts/run_distill.sh):
# the one behind the paper's KD 74.42 / FitNet 74.32 / SimKD 78.08 (ResNet-32x4 -> ResNet-8x4).
# Each method states its own (`Distiller.paper_options`): a new method is still one file.
PAPER_METHOD_OPTIONS = {m: dict(get_distiller_class(m).paper_options) for m in list_methods()
                        if get_distiller_class(m).paper_options}

# RepDistiller's protocol (its published ResNet-32x4 -> 8x4: KD 73.33, FitNet 73.50). Not `paper`.
REPDISTILLER_METHOD_OPTIONS = {"kd": {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9},
                               "fitnet": {"hint_weight": 100.0, "ce_weight": 1.0, "kd_weight": 0.0,
                                          "temperature": 4.0, "hint_layer": 2},
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
    method_options: dict = field(default_factory=lambda: copy.deepcopy(PAPER_METHOD_OPTIONS))

    def student_config(self, student_model: str | None = None) -> TrainConfig:
        """The student recipe; `paper` gives MobileNetV2 / ShuffleNet students lr 0.01 (official)."""
        model = student_model or self.student_model
        if self.name == "paper" and model in LOW_LR_MODELS:
            return replace(self.student, lr=0.01)
        return self.student

    def teacher_config(self, teacher_model: str | None = None) -> TrainConfig:
        """The teacher recipe; `paper` gives MobileNetV2 / ShuffleNet teachers lr 0.01 (official)."""
        model = teacher_model or self.teacher_model
        if self.name == "paper" and model in LOW_LR_MODELS:
            return replace(self.teacher, lr=0.01)
        return self.teacher


def _paper(dataset: str, teacher: str = "resnet32x4", student: str = "resnet8x4") -> Profile:
    # fp32 and eager, like the official code: bf16 autocast changes the numbers (SimKD's regression
    # targets become bf16) and torch.compile is a one-off cost; both are opt-in flags (--amp,
    # --compile-teacher). The exact speed-ups (BN folding, channels_last, on-device augmentation)
    # stay on: they change results only within float tolerance (tests/test_fast.py).
    recipe = TrainConfig(epochs=240, batch_size=64, lr=0.05, schedule="multistep", milestones=(150, 180, 210),
                         augment=True, cache_teacher=False, amp=False, compile_teacher=False,
                         compile_student=False, eval_every=1,
                         cuda_graph=True)  # CUDA only, exact math: see training/graphed.py, benchmarks/README.md
    return Profile("paper", dataset, teacher, student, teacher=recipe, student=recipe,
                   method_options=copy.deepcopy(PAPER_METHOD_OPTIONS))


# The quick profile's values were chosen by measurement on a 2-core CPU (see benchmarks/README.md):
# a teacher worth distilling (shipped, trained by `simkd-lite train-teacher`), and students whose
# budget fits the demo's minutes. Its method options are the paper's protocol (PAPER_METHOD_OPTIONS):
# KD 1*CE + 1*KD, FitNet 1*CE + 1*KD + 100*hint at hint layer 1 (the engine caches that teacher map
# too), SimKD factor 2. The test set is scored after every epoch (last and best are reported): in
# batches of 128 that cost about as much as one scoring in batches of 1000 (benchmarks/README.md).
_QUICK_FASHION = Profile(
    "quick", "fashion_mnist", teacher_model="resnet14", student_model="resnet8",
    teacher=TrainConfig(epochs=7, batch_size=128, lr=0.1, nesterov=True, schedule="onecycle", augment=True),
    # 23,000 images x 3 epochs at lr 2e-2: the demo's four students fit 180 s on 2 idle cores (how these
    # values were chosen, with the measurements: benchmarks/README.md, "How the quick profile was chosen").
    # After every epoch the first 2,000 test images are scored for the curves; the last epoch scores all.
    student=TrainConfig(epochs=3, batch_size=128, optimizer="adam", lr=2e-2, weight_decay=1e-4, schedule="onecycle",
                        augment=False, cache_teacher=True, eval_every=1, eval_subset=2000, eval_batch_size=256),
    train_subset=23_000,
)

_QUICK_DIGITS = Profile(
    "quick", "digits", teacher_model="resnet8x2", student_model="resnet8_w8",
    teacher=TrainConfig(epochs=30, batch_size=64, lr=0.05, schedule="onecycle", augment=False),
    student=TrainConfig(epochs=20, batch_size=64, lr=0.05, schedule="onecycle", augment=False, cache_teacher=True),
)

# Your own images (--data-dir, notebook 06): a torchvision ResNet-18 teacher (ImageNet's architecture, trained
# here from scratch: loading never downloads weights) and the zoo's ResNet-8 student. An own folder is small
# (hundreds to a few thousand images), so every image is used and the epochs are more than Fashion-MNIST's.
_QUICK_FOLDER = Profile(
    "quick", "imagefolder", teacher_model="torchvision/resnet18", student_model="resnet8",
    teacher=TrainConfig(epochs=8, batch_size=64, lr=0.05, nesterov=True, schedule="onecycle", augment=False),
    student=TrainConfig(epochs=8, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=1e-4, schedule="onecycle",
                        augment=False, cache_teacher=True, eval_every=1, eval_batch_size=256),
)

PROFILES: dict[tuple[str, str], Profile] = {
    ("quick", "fashion_mnist"): _QUICK_FASHION,
    ("quick", "digits"): _QUICK_DIGITS,
    ("quick", "imagefolder"): _QUICK_FOLDER,
    ("paper", "imagefolder"): _paper("imagefolder"),
    ("paper", "cifar100"): _paper("cifar100"),
    ("paper", "cifar10"): _paper("cifar10"),
    ("paper", "fashion_mnist"): _paper("fashion_mnist"),
}


def get_profile(profile: str, dataset: str) -> Profile:
    """The recipe for (profile, dataset), with an error that lists what exists."""
    if (profile, dataset) not in PROFILES:
        available = ", ".join(f"{p}/{d}" for p, d in sorted(PROFILES))
        raise ValueError(f"No {profile!r} profile for dataset {dataset!r}. Available: {available}.")
    return PROFILES[(profile, dataset)]


def profile_table() -> str:
    """The table `simkd-lite profiles` prints: one row per recipe."""
    header = f"{'profile':8} {'dataset':14} {'teacher':20} {'student':11} {'subset':>7} {'T ep':>5} {'S ep':>5} " \
             f"{'batch':>5} {'lr':>6} {'schedule':10} {'augment':8} {'cache T':7}"
    rows = [header, "-" * len(header)]
    for (name, dataset), p in sorted(PROFILES.items()):
        s = p.student
        rows.append(f"{name:8} {dataset:14} {p.teacher_model:20} {p.student_model:11} {str(p.train_subset or 'all'):>7} "
                    f"{p.teacher.epochs:>5} {s.epochs:>5} {s.batch_size:>5} {s.lr:>6g} {s.schedule:10} "
                    f"{str(s.augment):8} {str(s.cache_teacher):7}")
    return "\n".join(rows)
