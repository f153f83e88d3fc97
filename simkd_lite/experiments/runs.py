"""The experiment API: one place that turns intent into a run.

    from simkd_lite.experiments import Experiment, get_teacher, prepare_data, train_student, compare, evaluate

    exp = Experiment.resolve("fashion_mnist", profile="quick", seed=0)   # the whole recipe, frozen
    teacher = get_teacher(exp)                  # shipped / a checkpoint / trained once and reused
    data = prepare_data(exp, teacher)           # tensors + cached teacher outputs, shared by every student
    run = train_student("simkd", data, teacher) # one student; the run folder is named by its settings
    runs = compare(["vanilla", "kd", "fitnet", "simkd"], data, teacher)
    evaluate(run.predictor, data)               # test top-1 in %, the number training reported
    run.export()                                # SimKD: encoder + projector + teacher head, one file

`simkd-lite distill`, `simkd-lite demo` and the notebooks all go through these functions; nothing else
assembles runs. The device is resolved once, in `prepare_data`, and passed down to training.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

import inspect

from simkd_lite.data import DatasetBundle, load_dataset
from simkd_lite.distillers import TeacherOutputs, get_distiller_class
from simkd_lite.experiments import jobs
from simkd_lite.experiments.jobs import check_compatible, distill_student, load_teacher
from simkd_lite.experiments import paper_table
from simkd_lite.experiments.locations import default_data_root, default_runs_root
from simkd_lite.experiments.pretrained import shipped_teacher
from simkd_lite.experiments.profiles import get_profile
from simkd_lite.experiments.teacher_cache import cache_path, teacher_outputs
from simkd_lite.training.loop import TrainConfig, materialize, predict, top1
from simkd_lite.training.runtime import select_device

Log = Callable[[str], None] | None


# ------------------------------------------------------------------------------ the recipe
@dataclass(frozen=True)
class Experiment:
    """Everything that defines a comparison, resolved once from (dataset, profile, overrides).

    `student_train` / `teacher_train` are the training recipes (no device in them); `device` is the
    *requested* device ("cuda", "cpu", None = best available), resolved once by `prepare_data`.
    """

    dataset: str
    profile: str
    teacher_model: str
    student_model: str
    teacher_train: TrainConfig
    student_train: TrainConfig
    method_options: Mapping[str, dict]
    train_subset: int | None
    seed: int = 0
    data_root: Path = Path("data")
    runs_root: Path = Path("runs")
    device: str | None = None

    @classmethod
    def resolve(cls, dataset: str = "fashion_mnist", profile: str = "quick", *, seed: int = 0,
                epochs: int | None = None, student: str | None = None, data_root: str | Path | None = None,
                runs: str | Path | None = "runs", device: str | None = None, **train_overrides) -> "Experiment":
        """The profile's recipe for `dataset`, with explicit overrides (`epochs`, `student`, `lr=...`, ...).

        `data_root=None` / `runs=None` (a notebook's `DATA_ROOT = None`, `RUNS = None`) mean the package's
        defaults, `locations.default_data_root()` and `locations.default_runs_root()`.

        `train_overrides` are fields of `TrainConfig` (batch_size, lr, amp, ...) applied to the students
        (a teacher's recipe is the profile's; `train_teacher(exp, ..., **overrides)` changes it).
        """
        recipe = get_profile(profile, dataset)
        student_model = student or recipe.student_model
        overrides = {k: v for k, v in train_overrides.items() if v is not None}
        unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Unknown training setting(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(TrainConfig.__dataclass_fields__)}.")
        if epochs is not None:
            overrides["epochs"] = epochs
        student_train = replace(recipe.student_config(student_model), seed=seed, **overrides)
        teacher_train = replace(recipe.teacher_config(), seed=seed)
        return cls(dataset=dataset, profile=profile, teacher_model=recipe.teacher_model, student_model=student_model,
                   teacher_train=teacher_train, student_train=student_train,
                   method_options={k: dict(v) for k, v in recipe.method_options.items()},
                   train_subset=recipe.train_subset, seed=seed, data_root=Path(data_root or default_data_root()),
                   runs_root=Path(runs or default_runs_root()),
                   device=device)

    def options_for(self, method: str, **overrides) -> dict:
        """The profile's options for `method` (e.g. SimKD's factor), with `overrides` on top.

        A misspelt method fails with close names; an option the method does not take fails with the
        options it does take (e.g. `factor` for "kd").
        """
        cls = get_distiller_class(method)
        given = {k: v for k, v in overrides.items() if v is not None}
        accepted = [name for name in inspect.signature(cls.__init__).parameters
                    if name not in ("self", "student", "teacher")]
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise ValueError(f"Method {method!r} has no option {', '.join(unknown)}; its options: "
                             f"{', '.join(accepted) or 'none'}.")
        return {**self.method_options.get(method, {}), **given}

    def run_name(self, method: str, options: dict, teacher_name: str | None) -> str:
        """A folder name that says what defines the run, plus a short hash of everything else."""
        train = asdict(self.student_train)
        train.pop("device", None)
        key = json.dumps({"method": method, "options": options, "train": train, "subset": self.train_subset,
                          "dataset": self.dataset, "student": self.student_model, "teacher": teacher_name},
                         sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        pair = f"{teacher_name}-{self.student_model}" if teacher_name else self.student_model
        return f"{method}_{self.dataset}_{pair}_e{self.student_train.epochs}_s{self.seed}_{digest}"


# ------------------------------------------------------------------------------ the teacher
def train_teacher(exp: Experiment, out: str | Path | None = None, *, model: str | None = None, resume: bool = True,
                  overwrite: bool = False, log: Log = None, progress: bool | None = False, **overrides) -> dict:
    """Train (or reuse) a teacher of `exp.dataset` with the profile's teacher recipe (+ `overrides`).

    out: the run folder; None = `exp.runs_root / teacher_<dataset>_<model>_e<epochs>_s<seed>_<hash>`,
    so a finished teacher with the same settings is reused. Returns the job's summary
    (`top1` last, `best_top1`, `best_epoch`, `checkpoint` = OUT/best.pt, ...).
    """
    model = model or exp.teacher_model
    if log and exp.profile == "paper":  # hours, not minutes: say so before starting
        log(paper_table.teacher_time_note(model, overrides.get("epochs") or exp.teacher_train.epochs))
    # exp.teacher_train is the profile's teacher recipe (plus any edit of it); another model gets its own
    recipe = exp.teacher_train if model == exp.teacher_model else get_profile(exp.profile, exp.dataset).teacher_config(model)
    config = replace(recipe, seed=exp.seed, device=exp.device, **{k: v for k, v in overrides.items() if v is not None})
    if out is None:
        train = asdict(config)
        train.pop("device", None)
        digest = hashlib.sha256(json.dumps(train, sort_keys=True, default=str).encode()).hexdigest()[:8]
        out = exp.runs_root / f"teacher_{exp.dataset}_{model}_e{config.epochs}_s{exp.seed}_{digest}"
    return jobs.train_teacher(exp.dataset, model, config, out, data_root=exp.data_root, resume=resume,
                              overwrite=overwrite, log=log or (lambda message: None), progress=progress)


def get_teacher(exp: Experiment, source: str | Path | None = None, *, teacher_model: str | None = None,
                trust: bool = False, log: Log = None, progress: bool | None = False) -> nn.Module:
    """The teacher network (eval mode, on the CPU) for `exp`; `teacher.source` says where it came from.

    source: a checkpoint path (ours or official `{'model': ...}`; `teacher_model` names the
    architecture of an official file that lacks it, `trust` unpickles a file a safe load refuses);
    None = the teacher shipped for the data set, else the profile's teacher trained once and reused (not
    with the `paper` profile: its 240-epoch teacher is never trained unasked, pass "train" to do it);
    "train" = always the profile's teacher, trained once (folder named by its settings) and reused.
    Students are distilled from the teacher's best.pt, as the official scripts do.
    """
    say = log or (lambda message: None)
    if source is None and exp.profile == "paper" and shipped_teacher(exp.dataset) is None:  # never a silent 240 epochs
        raise ValueError(paper_table.missing_teacher_message(exp.dataset, exp.teacher_model, exp.teacher_train.epochs))
    if source != "train":
        try:
            model, where = load_teacher(source, exp.dataset, teacher_model, log=say, trust=trust)
            model.source = where
            return model
        except ValueError:
            if source is not None:
                raise
    summary = train_teacher(exp, log=log, progress=progress)
    model, where = load_teacher(summary["checkpoint"], exp.dataset, log=say)
    model.source = where
    return model


# ------------------------------------------------------------------------------ the data
@dataclass
class PreparedData:
    """A data set ready for training, shared by every student of a comparison.

    test_x (N, C, H, W) float, test_y (N,); without augmentation also train_x / train_y and the
    teacher's outputs on them (`teacher_cache`), computed once.
    """

    exp: Experiment
    bundle: DatasetBundle
    device: torch.device
    test_x: Tensor
    test_y: Tensor
    train_x: Tensor | None = None
    train_y: Tensor | None = None
    teacher_cache: TeacherOutputs | None = None
    teacher_name: str | None = None
    cache: dict = field(default_factory=dict)

    @property
    def info(self):
        return self.bundle.info

    def shared(self, needs_teacher: bool) -> dict:
        """What `fit` may reuse instead of recomputing it."""
        shared = {"test_tensors": (self.test_x, self.test_y)}
        if self.train_x is not None:
            shared["train_tensors"] = (self.train_x, self.train_y)
            if needs_teacher and self.teacher_cache is not None:
                shared["teacher_cache"] = self.teacher_cache
        return shared


def prepare_data(exp: Experiment, teacher: nn.Module | None = None) -> PreparedData:
    """Load the data set once, resolve the device once, and cache the teacher's outputs when the
    training images are fixed (no augmentation): every student then costs only student compute."""
    config = exp.student_train
    device = select_device(exp.device)
    bundle = load_dataset(exp.dataset, exp.data_root, train_subset=exp.train_subset, seed=exp.seed,
                          augment=config.augment)
    if teacher is not None:
        check_compatible(teacher, bundle.info, "teacher")
    test_x, test_y = materialize(bundle.test)
    data = PreparedData(exp, bundle, device, test_x, test_y,
                        teacher_name=getattr(teacher, "model_name", None))
    if not config.augment:
        data.train_x, data.train_y = materialize(bundle.train)
        if teacher is not None and config.cache_teacher:
            where = cache_path(exp.runs_root, teacher, {"dataset": exp.dataset, "subset": exp.train_subset,
                                                        "seed": exp.seed, "images": len(data.train_x),
                                                        "device": device.type, "fold_bn": config.fold_bn,
                                                        "channels_last": config.channels_last})
            data.teacher_cache = teacher_outputs(teacher, data.train_x, device, where, fold_bn=config.fold_bn,
                                                 channels_last=config.channels_last,
                                                 batch_size=config.eval_batch_size)
    return data


# ------------------------------------------------------------------------------ students
@dataclass
class StudentRun:
    """One trained student: its numbers, its folder, and the trained distiller."""

    method: str
    model: str
    out: Path
    top1: float  # test top-1 (%) after the last epoch
    best_top1: float | None  # the best epoch's test top-1 (selected on the test set: optimistic)
    best_epoch: int | None
    params: int  # parameters the deployed student runs (SimKD: encoder + projector + teacher head)
    extra_params: int  # params - the plain student's
    seconds: float
    history: list[dict]
    distiller: nn.Module
    files: list[str] = field(default_factory=list)  # deployable files the method wrote (SimKD: student.pt)

    @property
    def predictor(self) -> nn.Module:
        """The network that makes this student's predictions (SimKD: through the teacher's head)."""
        return self.distiller

    def export(self) -> nn.Module:
        """The deployable student (SimKD: a `SimKDStudent`; other methods: the student network)."""
        export = getattr(self.distiller, "export", None)
        return export() if export is not None else self.distiller.student

    @property
    def last_top1(self) -> float:
        """The last epoch's test top-1 (%): `top1` under its explicit name."""
        return self.top1

    def summary(self) -> dict:
        """`top1` is `last_top1` (kept for older callers); the paper reports `best_top1`."""
        return {"method": self.method, "model": self.model, "top1": self.top1, "last_top1": self.top1,
                "best_top1": self.best_top1,
                "best_epoch": self.best_epoch, "params": self.params,
                "extra_params": self.extra_params, "seconds": self.seconds, "out": str(self.out)}


def train_student(method: str, data: PreparedData, teacher: nn.Module | None = None, *, out: str | Path | None = None,
                  options: dict | None = None, resume: bool = True, overwrite: bool = False, log: Log = print,
                  progress: bool | None = False) -> StudentRun:
    """Train (or reuse) one student of `data.exp` with `method`.

    out: the run folder; None = `exp.runs_root / exp.run_name(...)`, so a finished run with the same
    settings is reused instead of trained again (`resume=True` continues an unfinished one;
    `overwrite=True` replaces whatever run the folder holds; neither: a folder holding a run is refused).
    options: method options on top of the profile's (e.g. {"factor": 4}).
    log: by default one line per epoch, or one line saying a finished run was reused (`log=None`: silent).
    """
    exp = data.exp
    options = exp.options_for(method, **(options or {}))
    needs_teacher = get_distiller_class(method).needs_teacher
    if needs_teacher and teacher is None:
        raise ValueError(f"Method {method!r} distils from a teacher: pass teacher=get_teacher(exp).")
    teacher_name = getattr(teacher, "model_name", None) if needs_teacher else None
    out = Path(out) if out is not None else exp.runs_root / exp.run_name(method, options, teacher_name)
    config = replace(exp.student_train, device=str(data.device))
    run_info = {"profile": exp.profile, "teacher": getattr(teacher, "source", None) if needs_teacher else None,
                "train_subset": exp.train_subset}
    result = distill_student(method, exp.student_model, teacher if needs_teacher else None, data.bundle, config, out,
                             options=options, resume=resume, overwrite=overwrite, log=log, progress=progress,
                             shared=data.shared(needs_teacher), run_info=run_info)
    return StudentRun(method=method, model=exp.student_model, out=out, top1=result["top1"],
                      best_top1=result.get("best_top1"), best_epoch=result.get("best_epoch"), params=result["params"],
                      extra_params=result["extra_params"], seconds=result["seconds"], history=result["history"],
                      distiller=result["distiller"], files=result.get("files", []))


def compare(methods: Iterable[str], data: PreparedData, teacher: nn.Module | None = None, *,
            out: str | Path | None = None, **kwargs) -> dict[str, StudentRun]:
    """`train_student` for each method on the same data, teacher and budget: {method: StudentRun}.

    out: a folder holding one run folder per method (`OUT/<method>`); None = folders named by settings.
    """
    return {method: train_student(method, data, teacher, out=Path(out) / method if out is not None else None, **kwargs)
            for method in methods}


# ------------------------------------------------------------------------------ evaluation
def evaluate(model: nn.Module, data: PreparedData) -> float:
    """Test top-1 (%) of any network that maps images to logits, on `data`'s whole test set."""
    return top1(predict(model.to(data.device), data.test_x, data.device), data.test_y)


def test_logits(model: nn.Module, data: PreparedData) -> Tensor:
    """(N, num_classes) logits on `data`'s test set, on the CPU."""
    return predict(model.to(data.device), data.test_x, data.device)
