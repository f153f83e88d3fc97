"""The jobs behind the CLI and the notebooks: train a teacher, distil a student, evaluate, the demo.

Each job resolves its recipe from a profile (plus explicit overrides), validates everything, then
trains with `fit` (which claims OUT and writes `OUT/config.json`) and returns a small summary dict.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from torch import nn

from simkd_lite.checkpoints import atomic_write_text
from simkd_lite.data import load_dataset
from simkd_lite.data.core import DatasetInfo
from simkd_lite.distillers import create_distiller, get_distiller_class
from simkd_lite.experiments.loading import load_predictor, load_teacher_network
from simkd_lite.experiments.pretrained import shipped_teacher
from simkd_lite.training.device_data import GpuAugment
from simkd_lite.training.distributed import is_main_process
from simkd_lite.training.loop import TrainConfig, fit, predict, top1
from simkd_lite.training.metrics import summarize
from simkd_lite.training.runtime import seed_everything, select_device
from simkd_lite.models import count_parameters, create_model


def write_config(out: Path, **sections) -> None:
    """`OUT/config.json` of a folder that is not one training run (the demo's), atomically (rank 0 only)."""
    if not is_main_process():
        return
    plain = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in sections.items()}
    atomic_write_text(json.dumps(plain, indent=2, default=str) + "\n", out / "config.json")


def on_device_augment(info: DatasetInfo, config: TrainConfig) -> GpuAugment | None:
    """The dataset's own crop + flip recipe as batched tensor ops on the training device (GPU or CPU)."""
    return GpuAugment(info.mean, info.std, padding=info.crop_padding) if config.augment and info.crop_padding else None


def describe(config: TrainConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(config).items())


def train_teacher(dataset: str, model_name: str, config: TrainConfig, out: str | Path, *, data_root: str | Path = "data",
                  train_subset: int | None = None, resume: bool = False, overwrite: bool = False, log=print,
                  progress=None) -> dict:
    """Train a teacher from scratch with cross-entropy; writes OUT/last.pt and OUT/best.pt (official layout).

    `resume` continues (or reuses, when finished) a run in OUT with the same settings; `overwrite`
    replaces whatever run OUT holds; without either, a folder holding a run is refused.
    Returns {'model', 'top1' (last epoch), 'best_top1', 'best_epoch', 'params', 'history', 'checkpoint'}:
    `checkpoint` is OUT/best.pt, the file the official scripts distil students from (`*_best.pth`).
    """
    out = Path(out)
    bundle = load_dataset(dataset, data_root, train_subset=train_subset, seed=config.seed, augment=config.augment)
    seed_everything(config.seed)
    model = create_model(model_name, bundle.info.num_classes, bundle.info.in_channels)
    distiller = create_distiller("vanilla", model)
    if log:
        log(f"train-teacher: {model_name} on {dataset} ({len(bundle.train)} train images) | {describe(config)}")
    meta = {"kind": "teacher", "model_name": model_name, "dataset": asdict(bundle.info)}
    run = {"job": "train-teacher", "dataset": dataset, "model": model_name, "train_subset": train_subset}
    history = fit(distiller, bundle.train, bundle.test, config, out, resume=resume, overwrite=overwrite, meta=meta,
                  run=run, log=log, progress=progress, label="teacher",
                  gpu_augment=on_device_augment(bundle.info, config))
    summary = summarize(history)
    return {"model": model_name, "top1": summary["last_top1"], "best_top1": summary["best_top1"],
            "best_epoch": summary["best_epoch"], "params": count_parameters(model), "history": history,
            "checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt")}

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
    return load_teacher_network(teacher, dataset, teacher_model, trust=trust), str(teacher)


def check_compatible(model: nn.Module, info: DatasetInfo, role: str) -> None:
    if model.num_classes != info.num_classes or model.in_channels != info.in_channels:
        raise ValueError(f"The {role} ({model.model_name}: {model.num_classes} classes, {model.in_channels} input "
                         f"channels) does not fit {info.name} ({info.num_classes} classes, {info.in_channels} channels).")


def distill_student(method: str, student_model: str, teacher_net: nn.Module | None, bundle, config: TrainConfig,
                    out: str | Path, *, options: dict | None = None, resume: bool = False, overwrite: bool = False,
                    log=print, progress=None, shared: dict | None = None, run_info: dict | None = None) -> dict:
    """Train one student with `method`; the method writes its deployable files (SimKD: OUT/student.pt).

    `resume` / `overwrite` as in `train_teacher`; `run_info` adds entries to OUT/config.json
    (e.g. the profile and the teacher's path); the teacher's weights digest is always recorded.
    Returns {'method', 'model', 'top1' (last epoch), 'best_top1', 'best_epoch', 'params',
    'extra_params', 'seconds', 'files', 'history', 'distiller'}.
    """
    out = Path(out)
    info = bundle.info
    seed_everything(config.seed)
    student = create_model(student_model, info.num_classes, info.in_channels)
    options = {**get_distiller_class(method).data_options(info.image_size), **(options or {})}
    distiller = create_distiller(method, student, teacher_net, **options)
    meta = {"kind": "student", "model_name": student_model, "dataset": asdict(info),
            "teacher_model": getattr(teacher_net, "model_name", None) if distiller.needs_teacher else None}
    run = {"job": "distill", "method": method, "dataset": info.name, "student_model": student_model,
           "teacher_model": meta["teacher_model"], "method_options": options, **(run_info or {})}
    started = time.perf_counter()
    history = fit(distiller, bundle.train, bundle.test, config, out, resume=resume, overwrite=overwrite, meta=meta,
                  run=run, log=log, progress=progress, gpu_augment=on_device_augment(info, config), **(shared or {}))
    # This call's wall-clock, or the epochs' own seconds where an earlier call trained them (resume, reuse).
    seconds = max(time.perf_counter() - started, sum(record["seconds"] for record in history))
    files = distiller.write_deployable(out, dataset=asdict(info)) if is_main_process() else []
    deployed = distiller.deployed_parameters()
    summary = summarize(history)
    return {"method": method, "model": student_model, "top1": summary["last_top1"],
            "best_top1": summary["best_top1"], "best_epoch": summary["best_epoch"],
            "params": deployed, "extra_params": deployed - count_parameters(student), "files": [str(f) for f in files],
            "seconds": round(seconds, 2), "history": history, "distiller": distiller}


def evaluate_checkpoint(path: str | Path, dataset: str, data_root: str | Path = "data", model_name: str | None = None,
                        device: str | None = None, *, teacher: str | Path | None = None,
                        teacher_model: str | None = None, trust: bool = False) -> dict:
    """Top-1 on the full test set of `dataset` of what a checkpoint predicts (see `experiments.loading.load_predictor`).

    A SimKD run's last.pt / best.pt is scored through projector + teacher head: the number the run
    reported for that epoch. An official SimKD student needs `teacher`.
    """
    from simkd_lite.training.loop import materialize

    bundle = load_dataset(dataset, data_root, augment=False)
    model, described = load_predictor(path, bundle.info, model_name, teacher=teacher, teacher_model=teacher_model,
                                      trust=trust)
    dev = select_device(device)
    x, y = materialize(bundle.test)
    return {"checkpoint": str(path), **described, "dataset": dataset,
            "top1": top1(predict(model.to(dev), x, dev), y), "test_images": len(y)}


# ------------------------------------------------------------------ several students, one teacher pass
def build_distiller(method: str, student_model: str, teacher_net, info, seed: int, options: dict | None = None):
    """A distiller built exactly as `distill_student` builds it (same seed, same draws, same order)."""
    seed_everything(seed)
    student = create_model(student_model, info.num_classes, info.in_channels)
    options = {**get_distiller_class(method).data_options(info.image_size), **(options or {})}
    return create_distiller(method, student, teacher_net, **options)


def distill_together(methods, student_model: str, teacher_net, bundle, config: TrainConfig, out: str | Path, *,
                     options: dict[str, dict] | None = None, resume: bool = False, overwrite: bool = False,
                     log=print, progress=None, shared: dict | None = None, stack: bool = False,
                     run_info: dict | None = None) -> list[dict]:
    """`experiments.jobs.distill_student` for several methods at once; one summary per method, in `methods` order.

    One `fit` of all students (one teacher forward per batch). `resume` continues each student from
    its own OUT/<method>/last.pt (after a kill, they may be an epoch apart); `overwrite` as in
    `train_teacher`. `stack=True`: the students' encoders run as one batched network (`training/stacked.py`).
    Writes OUT/<method>/{config.json, last.pt, best.pt, metrics.csv, results.json} (+ student.pt for SimKD).
    """

    out, info = Path(out), bundle.info
    options = options or {}
    distillers = {m: build_distiller(m, student_model, teacher_net, info, config.seed, options.get(m)) for m in methods}
    teacher_name = getattr(teacher_net, "model_name", None)
    metas = {m: {"kind": "student", "model_name": student_model, "dataset": asdict(info),
                 "teacher_model": teacher_name if distillers[m].needs_teacher else None} for m in methods}
    runs = {m: {"job": "distill", "method": m, "dataset": info.name, "student_model": student_model,
                "teacher_model": metas[m]["teacher_model"], "method_options": options.get(m, {}),
                "together": list(methods), "stacked": stack, **(run_info or {})} for m in methods}
    started = time.perf_counter()
    histories = fit(distillers, bundle.train, bundle.test, config, {m: out / m for m in methods}, resume=resume,
                    overwrite=overwrite, meta=metas, run=runs, log=log, progress=progress,
                    gpu_augment=on_device_augment(info, config), stack=stack, **(shared or {}))
    seconds = time.perf_counter() - started
    summaries = []
    for m in methods:
        distiller = distillers[m]
        distiller.write_deployable(out / m, dataset=asdict(info))
        best_last = summarize(histories[m])
        # this call's wall-clock, or the epochs' own seconds where an earlier call trained them (resume, reuse)
        took = max(seconds, sum(record["seconds"] for record in histories[m]))
        summary = {"method": m, "model": student_model, "top1": best_last["last_top1"],
                   "best_top1": best_last["best_top1"], "best_epoch": best_last["best_epoch"],
                   "params": distiller.deployed_parameters(),
                   "extra_params": distiller.deployed_parameters() - count_parameters(distiller.student),
                   "seconds": round(took, 2), "together": list(methods), "history": histories[m]}
        atomic_write_text(json.dumps(summary, indent=2) + "\n", out / m / "results.json")
        summaries.append({**summary, "distiller": distiller})
    return summaries
