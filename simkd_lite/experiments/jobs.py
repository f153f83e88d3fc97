"""The plumbing of the experiment API (`runs.py`): build a distiller, fit a teacher or students, score a file.

Callers use `simkd_lite.experiments` (runs.py), which resolves recipes, names run folders and resolves the
device; these functions take plain, resolved arguments. Each training job validates, then trains with
`training.loop.fit` (which claims the run folders and writes `OUT/config.json`) and returns `RunResult`s.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from simkd_lite.checkpoints import atomic_write_text
from simkd_lite.data import load_dataset
from simkd_lite.data.core import DatasetInfo
from simkd_lite.distillers import Distiller, create_distiller, get_distiller_class
from simkd_lite.experiments.loading import implausible, load_predictor, load_teacher_network
from simkd_lite.experiments.pretrained import shipped_teacher
from simkd_lite.experiments.results import RunResult
from simkd_lite.training.device_data import GpuAugment
from simkd_lite.training.distributed import is_main_process
from simkd_lite.training.loop import TrainConfig, fit, materialize, predict, top1
from simkd_lite.training.metrics import summarize
from simkd_lite.training.runtime import seed_everything, select_device
from simkd_lite.models import count_parameters, create_model


def write_config(out: Path, **sections) -> None:
    """`OUT/config.json` of a folder that is not one training run (the demo's), atomically (rank 0 only)."""
    if not is_main_process():
        return
    plain = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in sections.items()}
    atomic_write_text(json.dumps(plain, indent=2, default=str) + "\n", out / "config.json")


def own_data(info: DatasetInfo) -> dict:
    """What config.json records about your own images (their folder, size, channels, classes, statistics);
    nothing for the named data sets, whose description is their name."""
    return {"data": asdict(info)} if info.source else {}


def on_device_augment(info: DatasetInfo, config: TrainConfig) -> GpuAugment | None:
    """The dataset's own crop + flip recipe as batched tensor ops on the training device (GPU or CPU)."""
    return GpuAugment(info.mean, info.std, padding=info.crop_padding) if config.augment and info.crop_padding else None


def build_distiller(method: str, student_model: str, teacher_net: nn.Module | None, info: DatasetInfo, seed: int,
                    options: dict | None = None) -> Distiller:
    """The one way a run's distiller is built: seeded first, so every run (alone or in a joint run) draws
    the same initial weights; the method's data-dependent options (FitNet's map sizes) added."""
    seed_everything(seed)
    student = create_model(student_model, info.num_classes, info.in_channels)
    options = {**get_distiller_class(method).data_options(info.image_size), **(options or {})}
    return create_distiller(method, student, teacher_net, **options)


def fit_teacher(dataset: str, model_name: str, config: TrainConfig, out: str | Path, *,
                data_root: str | Path | None = None, train_subset: int | None = None, resume: bool = False,
                overwrite: bool = False, log=print, progress=None, device: torch.device | None = None) -> RunResult:
    """Train a teacher from scratch with cross-entropy; writes OUT/last.pt and OUT/best.pt (official layout).

    `resume` continues (or reuses, when finished) a run in OUT with the same settings; `overwrite`
    replaces whatever run OUT holds; without either, a folder holding a run is refused. The result's
    `checkpoint` is OUT/best.pt, the file the official scripts distil students from (`*_best.pth`).
    """
    out = Path(out)
    bundle = load_dataset(dataset, data_root, train_subset=train_subset, seed=config.seed, augment=config.augment)
    distiller = build_distiller("vanilla", model_name, None, bundle.info, config.seed)
    if log:
        log(f"train-teacher: {model_name} on {dataset} ({len(bundle.train)} train images) | "
            + ", ".join(f"{k}={v}" for k, v in asdict(config).items()))
    meta = {"kind": "teacher", "model_name": model_name, "dataset": asdict(bundle.info)}
    run = {"job": "train-teacher", "dataset": dataset, "model": model_name, "train_subset": train_subset,
           **own_data(bundle.info)}
    started = time.perf_counter()
    history = fit(distiller, bundle.train, bundle.test, config, out, resume=resume, overwrite=overwrite, meta=meta,
                  run=run, log=log, progress=progress, label="teacher", device=device,
                  gpu_augment=on_device_augment(bundle.info, config))
    summary = summarize(history)
    return RunResult(method=distiller.method, model=model_name, out=out, top1=summary["last_top1"],
                     best_top1=summary["best_top1"], best_epoch=summary["best_epoch"],
                     params=count_parameters(distiller.student), extra_params=0,
                     seconds=round(_seconds(started, history), 2), history=history, distiller=distiller,
                     kind="teacher")


def _seconds(started: float, history: list[dict]) -> float:
    # This call's wall-clock, or the epochs' own seconds where an earlier call trained them (resume, reuse).
    return max(time.perf_counter() - started, sum(record["seconds"] for record in history))


def load_teacher(teacher: str | Path | None, dataset: str, teacher_model: str | None = None, log=print, *,
                 trust: bool = False) -> tuple[nn.Module, str]:
    """A teacher network from a checkpoint path (ours or official), or the shipped one for `dataset`.

    Student checkpoints of any method, deployable SimKD students and teachers of another data set
    are refused with a message that says what to pass (see `experiments.loading`).
    """
    if teacher is None:
        shipped = shipped_teacher(dataset)
        if shipped is None:
            raise ValueError(f"No teacher is shipped for {dataset!r}: pass --teacher PATH "
                             "(train one with `simkd-lite train-teacher`).")
        teacher, record = shipped
        log(f"using the shipped {record['model']} teacher for {dataset} ({record['test_top1']:.2f}% test top-1; "
            f"made by: {record['command']})")
    network = load_teacher_network(teacher, dataset, teacher_model, trust=trust)
    return network, str(getattr(network, "source_file", None) or teacher)  # weights by name: the cached file


def check_compatible(model: nn.Module, info: DatasetInfo, role: str) -> None:
    """The model must predict the data set's classes from its images; a teacher whose checkpoint records
    class names (ours do) must have been trained on the same classes, in the same order."""
    names = getattr(model, "class_names", None)
    if role == "teacher" and names and list(names) != list(info.class_names):
        missing, extra = sorted(set(info.class_names) - set(names)), sorted(set(names) - set(info.class_names))
        differ = (f"only the data: {', '.join(missing) or 'none'}; only the teacher: {', '.join(extra) or 'none'}"
                  if missing or extra else "the same names in another order")
        raise ValueError(f"The teacher {model.model_name} was trained on other classes than {info.name}'s ({differ}): "
                         "pass a teacher of these classes, or --fit-teacher-head (Python: get_teacher(exp, source, "
                         "fit_head=True)) to fit a new classifier on its frozen features first.")
    if role == "teacher" and model.num_classes != info.num_classes:
        raise ValueError(f"The teacher {model.model_name} predicts {model.num_classes} classes, {info.name} has "
                         f"{info.num_classes}: pass --fit-teacher-head (Python: get_teacher(exp, source, "
                         "fit_head=True)) to fit a new classifier on its frozen features first.")
    if model.num_classes != info.num_classes or model.in_channels != info.in_channels:
        raise ValueError(f"The {role} ({model.model_name}: {model.num_classes} classes, {model.in_channels} input "
                         f"channels) does not fit {info.name} ({info.num_classes} classes, {info.in_channels} channels).")


@dataclass(frozen=True)
class StudentsJob:
    """The students of one `fit`: their methods (one, or several trained together), architecture, teacher,
    method options ({method: options}), what else OUT/config.json records, and whether to stack them."""

    methods: tuple[str, ...]
    student_model: str
    teacher: nn.Module | None
    options: Mapping[str, dict] = field(default_factory=dict)
    run_info: Mapping = field(default_factory=dict)
    stack: bool = False


def fit_students(job: StudentsJob, bundle, config: TrainConfig, outs: Mapping[str, Path], *, resume: bool = False,
                 overwrite: bool = False, log=print, progress=None, shared: dict | None = None) -> list[RunResult]:
    """Train `job`'s students in one `fit` (one teacher forward per batch); one result per method, in order.

    Each method writes its deployable files into its folder (SimKD: OUT/student.pt); several students
    also get OUT/<method>/results.json. `resume` continues each student from its own last.pt (after a
    kill they may be an epoch apart); `overwrite` replaces the runs. `shared`: `fit` options prepared
    once (tensors, cached teacher outputs, the resolved device).
    """
    info, joint = bundle.info, len(job.methods) > 1
    distillers, metas, runs = {}, {}, {}
    for m in job.methods:
        needs_teacher = get_distiller_class(m).needs_teacher
        options = {**get_distiller_class(m).data_options(info.image_size), **job.options.get(m, {})}
        distillers[m] = build_distiller(m, job.student_model, job.teacher if needs_teacher else None, info,
                                        config.seed, options)
        teacher_model = getattr(job.teacher, "model_name", None) if needs_teacher else None
        metas[m] = {"kind": "student", "model_name": job.student_model, "dataset": asdict(info),
                    "teacher_model": teacher_model}
        runs[m] = {"job": "distill", "method": m, "dataset": info.name, "student_model": job.student_model,
                   "teacher_model": teacher_model, "method_options": options, **job.run_info, **own_data(info),
                   **({"together": list(job.methods), "stacked": job.stack} if joint else {})}
    started = time.perf_counter()
    histories = fit(distillers, bundle.train, bundle.test, config, outs, resume=resume, overwrite=overwrite,
                    meta=metas, run=runs, log=log, progress=progress, gpu_augment=on_device_augment(info, config),
                    stack=job.stack, **(shared or {}))
    results = []
    for m in job.methods:
        distiller, history, out = distillers[m], histories[m], Path(outs[m])
        files = distiller.write_deployable(out, dataset=asdict(info)) if is_main_process() else []
        summary, deployed = summarize(history), distiller.deployed_parameters()
        result = RunResult(method=m, model=job.student_model, out=out, top1=summary["last_top1"],
                           best_top1=summary["best_top1"], best_epoch=summary["best_epoch"], params=deployed,
                           extra_params=deployed - count_parameters(distiller.student),
                           seconds=round(_seconds(started, history), 2), history=history, distiller=distiller,
                           files=[str(f) for f in files], together=list(job.methods) if joint else None)
        if joint and is_main_process():
            atomic_write_text(json.dumps({**result.summary(), "history": history}, indent=2) + "\n",
                              out / "results.json")
        results.append(result)
    return results


def evaluate_checkpoint(path: str | Path, dataset: str, data_root: str | Path | None = None, model_name: str | None = None,
                        device: str | None = None, *, teacher: str | Path | None = None,
                        teacher_model: str | None = None, trust: bool = False) -> dict:
    """Top-1 on the full test set of `dataset` of what a checkpoint predicts (see `experiments.loading.load_predictor`).

    A SimKD run's last.pt / best.pt is scored through projector + teacher head: the number the run
    reported for that epoch. An official SimKD student needs `teacher`.
    """
    bundle = load_dataset(dataset, data_root, augment=False)
    model, described = load_predictor(path, bundle.info, model_name, teacher=teacher, teacher_model=teacher_model,
                                      trust=trust)
    dev = select_device(device)
    x, y = materialize(bundle.test)
    result = {"checkpoint": str(path), **described, "dataset": dataset,
              "top1": top1(predict(model.to(dev), x, dev), y), "test_images": len(y)}
    warning = implausible(result, bundle.info)  # an official file scored near chance: another data set?
    if warning:
        result["warning"] = warning
    return result
