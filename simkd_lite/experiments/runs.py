"""The experiment API: one place that turns intent into a run.

    from simkd_lite.experiments import Experiment, get_teacher, prepare_data, train_student, compare, evaluate

    exp = Experiment.resolve("fashion_mnist", profile="quick", seed=0)   # the whole recipe, frozen
    teacher = get_teacher(exp)                  # shipped / a checkpoint / trained once and reused
    data = prepare_data(exp, teacher)           # tensors + cached teacher outputs, shared by every student
    run = train_student("simkd", data, teacher) # one student; the run folder is named by its settings
    runs = compare(["vanilla", "kd", "fitnet", "simkd"], data, teacher)                 # one after another
    runs = compare(["vanilla", "kd", "fitnet", "simkd"], data, teacher, together=True)  # one joint run
    evaluate(run.predictor, data)               # test top-1 in %, the number training reported
    run.export()                                # SimKD: encoder + projector + teacher head, one file

Every training call returns a `RunResult` (results.py). `simkd-lite distill`, `simkd-lite demo` and the
notebooks all go through these functions; nothing else assembles runs (`jobs.py` is their plumbing).
Run folders are named in one place (`Experiment.run_name`, `Experiment.teacher_run_name`). The device
is resolved once, in `prepare_data` (teachers: in `train_teacher`), and passed down to training as a
`torch.device`.
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
from simkd_lite.experiments import paper_table
from simkd_lite.experiments.jobs import StudentsJob, check_compatible, fit_students, fit_teacher, load_teacher
from simkd_lite.experiments.locations import default_data_root, default_runs_root
from simkd_lite.experiments.pretrained import shipped_teacher
from simkd_lite.experiments.profiles import get_profile
from simkd_lite.experiments.results import RunResult, StudentRun  # noqa: F401 (StudentRun: the earlier name)
from simkd_lite.experiments.teacher_cache import cache_path, teacher_outputs
from simkd_lite.experiments.teacher_head import fit_teacher_head
from simkd_lite.models import safe_name  # external names hold '/' and ':' (torchvision/resnet18:layer3)
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
    data_fingerprint: str | None = None  # own images: a hash of the folder's files (see data/image_folder.py)

    @classmethod
    def resolve(cls, dataset: str | None = None, profile: str = "quick", *, seed: int = 0,
                epochs: int | None = None, student: str | None = None, data_root: str | Path | None = None,
                runs: str | Path | None = "runs", device: str | None = None, data_dir: str | Path | None = None,
                **train_overrides) -> "Experiment":
        """The profile's recipe for `dataset` (default "fashion_mnist"), with explicit overrides (`epochs`,
        `student`, `lr=...`, ...).

        `data_dir`: your own images (the ImageFolder layout, `data/image_folder.py`): the data set is then
        "imagefolder" and the folder is checked and read now, so bad input fails before anything is written.
        `data_root=None` / `runs=None` (a notebook's `DATA_ROOT = None`, `RUNS = None`) mean the package's
        defaults, `locations.default_data_root()` and `locations.default_runs_root()`.

        `train_overrides` are fields of `TrainConfig` (batch_size, lr, amp, ...) applied to the students
        (a teacher's recipe is the profile's; `train_teacher(exp, ..., **overrides)` changes it).
        """
        dataset, data_root, fingerprint = _data_source(dataset, data_root, data_dir)
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
                   device=device, data_fingerprint=fingerprint)

    def data_identity(self) -> dict:
        """What names this experiment's data in run folders and caches besides its name: nothing for the
        named data sets (their run names are unchanged), the folder's fingerprint for your own images."""
        return {"data": self.data_fingerprint} if self.data_fingerprint else {}

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
        """A student's folder name: what defines the run, plus a short hash of everything else."""
        digest = _digest({"method": method, "options": options, "train": _recipe(self.student_train),
                          "subset": self.train_subset, "dataset": self.dataset, "student": self.student_model,
                          "teacher": teacher_name, **self.data_identity()})
        pair = f"{teacher_name}-{self.student_model}" if teacher_name else self.student_model
        return safe_name(f"{method}_{self.dataset}_{pair}_e{self.student_train.epochs}_s{self.seed}_{digest}")

    def teacher_run_name(self, model: str, config: TrainConfig) -> str:
        """A teacher's folder name: data set, model, epochs, seed and a short hash of its recipe."""
        key = {**_recipe(config), **self.data_identity()}
        return safe_name(f"teacher_{self.dataset}_{model}_e{config.epochs}_s{self.seed}_{_digest(key)}")


def _data_source(dataset: str | None, data_root: str | Path | None,
                 data_dir: str | Path | None) -> tuple[str, str | Path | None, str | None]:
    """(dataset, data_root, fingerprint): `data_dir` means the "imagefolder" data set read from it, checked now."""
    if data_dir is not None:
        if dataset not in (None, "imagefolder"):
            raise ValueError(f"--data-dir reads your own images; --dataset {dataset} names another data set: "
                             "give one of them.")
        dataset, data_root = "imagefolder", data_dir
    dataset = dataset or "fashion_mnist"
    if dataset != "imagefolder":
        return dataset, data_root, None
    if data_root is None:
        raise ValueError("The imagefolder data set is your own images: pass --data-dir DIR "
                         "(Python: Experiment.resolve(data_dir=DIR)).")
    return dataset, data_root, load_dataset(dataset, data_root, augment=False).info.fingerprint


def _recipe(config: TrainConfig) -> dict:
    """A training recipe without its device (where a run executes does not name it)."""
    train = asdict(config)
    train.pop("device", None)
    return train


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------ the teacher
def train_teacher(exp: Experiment, out: str | Path | None = None, *, model: str | None = None, resume: bool = True,
                  overwrite: bool = False, log: Log = None, progress: bool | None = False, **overrides) -> RunResult:
    """Train (or reuse) a teacher of `exp.dataset` with the profile's teacher recipe (+ `overrides`).

    out: the run folder; None = `exp.runs_root / exp.teacher_run_name(...)`, so a finished teacher with
    the same settings is reused. The result's `checkpoint` is OUT/best.pt (what students distil from).
    """
    model = model or exp.teacher_model
    if log and exp.profile == "paper":  # hours, not minutes: say so before starting
        log(paper_table.teacher_time_note(model, overrides.get("epochs") or exp.teacher_train.epochs))
    # exp.teacher_train is the profile's teacher recipe (plus any edit of it); another model gets its own
    recipe = exp.teacher_train if model == exp.teacher_model else get_profile(exp.profile, exp.dataset).teacher_config(model)
    config = replace(recipe, seed=exp.seed, device=exp.device, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(out) if out is not None else exp.runs_root / exp.teacher_run_name(model, config)
    return fit_teacher(exp.dataset, model, config, out, data_root=exp.data_root, resume=resume, overwrite=overwrite,
                       log=log or (lambda message: None), progress=progress, device=select_device(config.device))


def get_teacher(exp: Experiment, source: str | Path | None = None, *, teacher_model: str | None = None,
                trust: bool = False, log: Log = None, progress: bool | None = False,
                fit_head: bool = False) -> nn.Module:
    """The teacher network (eval mode, on the CPU) for `exp`; `teacher.source` says where it came from.

    source: a checkpoint path (ours or official `{'model': ...}`; `teacher_model` names the
    architecture of an official file that lacks it, `trust` unpickles a file a safe load refuses);
    None = the teacher shipped for the data set, else the profile's teacher trained once and reused (not
    with the `paper` profile: its 240-epoch teacher is never trained unasked, pass "train" to do it);
    "train" = always the profile's teacher, trained once (folder named by its settings) and reused.
    A source may also be another library's architecture with weights from the torch hub cache,
    e.g. "torchvision/resnet18.IMAGENET1K_V1" (never downloaded), or a file of a torchvision state_dict
    with `teacher_model="torchvision/resnet18"`.
    fit_head: a teacher of other classes (ImageNet's 1000) first gets a new classifier fitted on its frozen
    features of `exp`'s training images (`experiments.teacher_head`; saved under RUNS/fitted_teachers and
    reused); without it such a teacher is refused (by `prepare_data`).
    Students are distilled from the teacher's best.pt, as the official scripts do.
    """
    say = log or (lambda message: None)
    if fit_head:
        return _fitted(get_teacher(exp, source, teacher_model=teacher_model, trust=trust, log=log,
                                   progress=progress), exp, say)
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
    run = train_teacher(exp, log=log, progress=progress)
    model, where = load_teacher(run.checkpoint, exp.dataset, log=say)
    model.source = where
    return model


def _fitted(teacher: nn.Module, exp: Experiment, say) -> nn.Module:
    """`teacher` with a head for `exp.dataset` (fitted once, then loaded from its file like any teacher)."""
    info = load_dataset(exp.dataset, exp.data_root, train_subset=exp.train_subset, seed=exp.seed,
                        augment=False).info
    names = getattr(teacher, "class_names", None)
    if teacher.num_classes == info.num_classes and (not names or list(names) == list(info.class_names)):
        say(f"the teacher already predicts {info.num_classes} classes: --fit-teacher-head has nothing to fit")
        return teacher
    path = fit_teacher_head(teacher, exp, log=say)
    model, where = load_teacher(path, exp.dataset, log=say)
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
            where = cache_path(exp.runs_root, teacher, {"dataset": exp.dataset, **exp.data_identity(),
                                                        "subset": exp.train_subset,
                                                        "seed": exp.seed, "images": len(data.train_x),
                                                        "device": device.type, "fold_bn": config.fold_bn,
                                                        "channels_last": config.channels_last})
            data.teacher_cache = teacher_outputs(teacher, data.train_x, device, where, fold_bn=config.fold_bn,
                                                 channels_last=config.channels_last,
                                                 batch_size=config.eval_batch_size)
    return data


# ------------------------------------------------------------------------------ students
def train_student(method: str, data: PreparedData, teacher: nn.Module | None = None, *, out: str | Path | None = None,
                  options: dict | None = None, resume: bool = True, overwrite: bool = False, log: Log = print,
                  progress: bool | None = False) -> RunResult:
    """Train (or reuse) one student of `data.exp` with `method`.

    out: the run folder; None = `exp.runs_root / exp.run_name(...)`, so a finished run with the same
    settings is reused instead of trained again (`resume=True` continues an unfinished one;
    `overwrite=True` replaces whatever run the folder holds; neither: a folder holding a run is refused).
    options: method options on top of the profile's (e.g. {"factor": 4}).
    log: by default one line per epoch, or one line saying a finished run was reused (`log=None`: silent).
    """
    outs = {method: Path(out)} if out is not None else None
    return _train([method], data, teacher, outs, {method: options or {}}, resume=resume, overwrite=overwrite,
                  log=log, progress=progress)[method]


def compare(methods: Iterable[str], data: PreparedData, teacher: nn.Module | None = None, *,
            out: str | Path | None = None, together: bool = False, stack: bool = False,
            **kwargs) -> dict[str, RunResult]:
    """Every method on the same data, teacher and budget: {method: RunResult}.

    out: a folder holding one run folder per method (`OUT/<method>`); None = folders named by settings.
    together: one joint run (the same batches, one teacher forward per batch; each student's math
    unchanged), else one run after another; stack: the joint run's encoders as one batched network.
    Other keywords: `train_student`'s (resume, overwrite, log, progress).
    """
    methods = list(methods)
    outs = {m: Path(out) / m for m in methods} if out is not None else None
    if together:
        return _train(methods, data, teacher, outs, {}, stack=stack, **kwargs)
    if stack:
        raise ValueError("stack=True batches the students of a joint run: add together=True.")
    return {m: train_student(m, data, teacher, out=outs[m] if outs else None, **kwargs) for m in methods}


def _train(methods: list[str], data: PreparedData, teacher: nn.Module | None, outs: dict[str, Path] | None,
           options: dict[str, dict], *, stack: bool = False, resume: bool = True, overwrite: bool = False,
           log: Log = None, progress: bool | None = False) -> dict[str, RunResult]:
    """One `fit` of `methods`' students (the case of one: `train_student`), folders named here if not given."""
    exp = data.exp
    options = {m: exp.options_for(m, **options.get(m, {})) for m in methods}
    needs_teacher = [get_distiller_class(m).needs_teacher for m in methods]
    for method, needs in zip(methods, needs_teacher):
        if needs and teacher is None:
            raise ValueError(f"Method {method!r} distils from a teacher: pass teacher=get_teacher(exp).")
    teacher_name = getattr(teacher, "model_name", None)
    outs = outs or {m: exp.runs_root / exp.run_name(m, options[m], teacher_name if needs else None)
                    for m, needs in zip(methods, needs_teacher)}
    run_info = {"profile": exp.profile, "teacher": getattr(teacher, "source", None) if any(needs_teacher) else None,
                "train_subset": exp.train_subset}
    job = StudentsJob(tuple(methods), exp.student_model, teacher if any(needs_teacher) else None, options,
                      run_info, stack=stack)
    config = replace(exp.student_train, device=str(data.device))
    results = fit_students(job, data.bundle, config, outs, resume=resume, overwrite=overwrite, log=log,
                           progress=progress, shared={**data.shared(any(needs_teacher)), "device": data.device})
    return {result.method: result for result in results}


# ------------------------------------------------------------------------------ evaluation
def evaluate(model: nn.Module, data: PreparedData) -> float:
    """Test top-1 (%) of any network that maps images to logits, on `data`'s whole test set."""
    return top1(predict(model.to(data.device), data.test_x, data.device), data.test_y)


def test_logits(model: nn.Module, data: PreparedData) -> Tensor:
    """(N, num_classes) logits on `data`'s test set, on the CPU."""
    return predict(model.to(data.device), data.test_x, data.device)
