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

from simkd_lite.checkpoints import atomic_write_text, load_model
from simkd_lite.data import load_dataset
from simkd_lite.data.core import DatasetInfo
from simkd_lite.distillers import SimKDStudent, create_distiller
from simkd_lite.experiments.pretrained import shipped_teacher
from simkd_lite.training.distributed import is_main_process
from simkd_lite.training.device_data import GpuAugment
from simkd_lite.training.runtime import seed_everything, select_device
from simkd_lite.training.loop import TrainConfig, fit, predict, top1
from simkd_lite.training.together import fit_together
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
    """
    out = Path(out)
    bundle = load_dataset(dataset, data_root, train_subset=train_subset, seed=config.seed, augment=config.augment)
    seed_everything(config.seed)
    model = create_model(model_name, bundle.info.num_classes, bundle.info.in_channels)
    distiller = create_distiller("vanilla", model)
    log(f"train-teacher: {model_name} on {dataset} ({len(bundle.train)} train images) | {describe(config)}")
    meta = {"model_name": model_name, "dataset": asdict(bundle.info)}
    run = {"job": "train-teacher", "dataset": dataset, "model": model_name, "train_subset": train_subset}
    history = fit(distiller, bundle.train, bundle.test, config, out, resume=resume, overwrite=overwrite, meta=meta,
                  run=run, log=log, progress=progress, label="teacher",
                  gpu_augment=on_device_augment(bundle.info, config))
    return {"model": model_name, "top1": history[-1]["test_top1"] if history else None,
            "params": count_parameters(model), "history": history, "checkpoint": str(out / "last.pt")}


def load_teacher(teacher: str | Path | None, dataset: str, teacher_model: str | None = None, log=print) -> tuple[nn.Module, str]:
    """A teacher network from a checkpoint path (ours or official), or the shipped one for `dataset`."""
    if teacher is None:
        shipped = shipped_teacher(dataset)
        if shipped is None:
            raise ValueError(f"No teacher is shipped for {dataset!r}: pass --teacher PATH "
                             "(train one with `simkd-lite train-teacher`).")
        teacher, record = shipped
        log(f"using the shipped {record['model']} teacher for {dataset} ({record['test_top1']:.2f}% test top-1; "
            f"made by: {record['command']})")
    model, _ = load_model(teacher, teacher_model)
    return model, str(teacher)


def check_compatible(model: nn.Module, info: DatasetInfo, role: str) -> None:
    if model.num_classes != info.num_classes or model.in_channels != info.in_channels:
        raise ValueError(f"The {role} ({model.model_name}: {model.num_classes} classes, {model.in_channels} input "
                         f"channels) does not fit {info.name} ({info.num_classes} classes, {info.in_channels} channels).")


def distill_student(method: str, student_model: str, teacher_net: nn.Module | None, bundle, config: TrainConfig,
                    out: str | Path, *, options: dict | None = None, resume: bool = False, overwrite: bool = False,
                    log=print, progress=None, shared: dict | None = None, run_info: dict | None = None) -> dict:
    """Train one student with `method`; for SimKD also write the deployable OUT/student.pt.

    `resume` / `overwrite` as in `train_teacher`; `run_info` adds entries to OUT/config.json
    (e.g. the profile and the teacher's path); the teacher's weights digest is always recorded.
    """
    out = Path(out)
    info = bundle.info
    seed_everything(config.seed)
    student = create_model(student_model, info.num_classes, info.in_channels)
    distiller = create_distiller(method, student, teacher_net, **(options or {}))
    meta = {"model_name": student_model, "dataset": asdict(info),
            "teacher_model": getattr(teacher_net, "model_name", None) if distiller.needs_teacher else None}
    run = {"job": "distill", "method": method, "dataset": info.name, "student_model": student_model,
           "teacher_model": meta["teacher_model"], "method_options": options or {}, **(run_info or {})}
    started = time.perf_counter()
    history = fit(distiller, bundle.train, bundle.test, config, out, resume=resume, overwrite=overwrite, meta=meta,
                  run=run, log=log, progress=progress, gpu_augment=on_device_augment(info, config), **(shared or {}))
    # This call's wall-clock, or the epochs' own seconds where an earlier call trained them (resume, reuse).
    seconds = max(time.perf_counter() - started, sum(record["seconds"] for record in history))
    files = distiller.write_deployable(out) if is_main_process() else []
    deployed = distiller.deployed_parameters()
    return {"method": method, "model": student_model, "top1": history[-1]["test_top1"],
            "params": deployed, "extra_params": deployed - count_parameters(student), "files": [str(f) for f in files],
            "seconds": round(seconds, 2), "history": history, "distiller": distiller}


def evaluate_checkpoint(path: str | Path, dataset: str, data_root: str | Path = "data", model_name: str | None = None,
                        device: str | None = None) -> dict:
    """Top-1 of a SimKDStudent file or a model checkpoint on the full test set of `dataset`."""
    try:
        model = SimKDStudent.load(path)
        kind = "SimKDStudent"
    except ValueError:
        model, _ = load_model(path, model_name)
        kind = model.model_name
    bundle = load_dataset(dataset, data_root, augment=False)
    dev = select_device(device)
    from simkd_lite.training.loop import materialize
    x, y = materialize(bundle.test)
    return {"checkpoint": str(path), "model": kind, "dataset": dataset, "top1": top1(predict(model.to(dev), x, dev), y),
            "test_images": len(y)}


# ------------------------------------------------------------------ several students, one teacher pass
def build_distiller(method: str, student_model: str, teacher_net, info, seed: int, options: dict | None = None):
    """A distiller built exactly as `distill_student` builds it (same seed, same draws, same order)."""
    seed_everything(seed)
    student = create_model(student_model, info.num_classes, info.in_channels)
    return create_distiller(method, student, teacher_net, **(options or {}))


def distill_together(methods, student_model: str, teacher_net, bundle, config: TrainConfig, out: str | Path, *,
                     options: dict[str, dict] | None = None, log=print, progress=None,
                     shared: dict | None = None) -> list[dict]:
    """`jobs.distill_student` for several methods at once; one summary per method, in `methods` order.

    Writes OUT/<method>/{config.json, last.pt, best.pt, results.json} (+ student.pt for SimKD).
    """

    out, info = Path(out), bundle.info
    options = options or {}
    distillers = {m: build_distiller(m, student_model, teacher_net, info, config.seed, options.get(m)) for m in methods}
    teacher_name = getattr(teacher_net, "model_name", None)
    metas = {m: {"model_name": student_model, "dataset": asdict(info),
                 "teacher_model": teacher_name if distillers[m].needs_teacher else None} for m in methods}
    for m in methods:
        write_config(out / m, job="distill", method=m, dataset=info.name, student_model=student_model,
                     teacher_model=metas[m]["teacher_model"], method_options=options.get(m, {}), train=config,
                     together=list(methods))
    started = time.perf_counter()
    histories = fit_together(distillers, bundle.train, bundle.test, config, {m: out / m for m in methods},
                             metas=metas, log=log, progress=progress, gpu_augment=on_device_augment(info, config),
                             **(shared or {}))
    seconds = time.perf_counter() - started
    summaries = []
    for m in methods:
        distiller = distillers[m]
        distiller.write_deployable(out / m)
        summary = {"method": m, "model": student_model, "top1": histories[m][-1]["test_top1"],
                   "params": distiller.deployed_parameters(),
                   "extra_params": distiller.deployed_parameters() - count_parameters(distiller.student),
                   "seconds": round(seconds, 2), "together": list(methods), "history": histories[m]}
        (out / m / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        summaries.append({**summary, "distiller": distiller})
    return summaries
