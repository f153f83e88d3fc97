"""`simkd-lite demo`: the paper's central claim on a laptop, in a few minutes.

One teacher (shipped, or trained with --train-teacher), then four students of the same architecture
and budget: vanilla, KD, FitNet and SimKD. The training set and the teacher's outputs are prepared
once and shared, so the three teacher-driven students cost only student compute.
Writes OUT/results.json, OUT/<method>/ checkpoints and PNG figures. Running it again reuses the
finished runs made with the same settings (and continues interrupted ones); `overwrite=True`
replaces them; runs with other settings are refused, listing the differences.

Every student reports its last-epoch and its best-epoch test top-1 (and which epoch was best);
`top1` is the last one. Best-on-test is what the official scripts (and the paper's table) report,
but it selects the epoch on the test set, so it reads optimistically (`training.metrics.BEST_ON_TEST_NOTE`).
The method options are the profile's (`paper`: the SimKD repository's protocol).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt

from simkd_lite import analysis, viz
from simkd_lite.checkpoints import atomic_write_text
from simkd_lite.data import load_dataset
from simkd_lite.distillers import FrozenTeacher
from simkd_lite.experiments.jobs import (check_compatible, distill_student, distill_together, load_teacher, train_teacher,
                                         write_config)
from simkd_lite.experiments.profiles import get_profile
from simkd_lite.training.metrics import BEST_ON_TEST_NOTE
from simkd_lite.training.run_folder import FolderLock, prepare_folder
from simkd_lite.training.runtime import select_device
from simkd_lite.training.loop import cache_teacher_outputs, materialize, predict, top1
from simkd_lite.models import count_parameters

DEMO_METHODS = ("vanilla", "kd", "fitnet", "simkd")


def run_demo(dataset: str = "fashion_mnist", profile: str = "quick", out: str | Path = "runs/demo", *,
             data_root: str | Path = "data", seed: int = 0, device: str | None = None, epochs: int | None = None,
             teacher: str | Path | None = None, teacher_model: str | None = None, train_new_teacher: bool = False,
             student_model: str | None = None, methods=DEMO_METHODS, figures: bool = True, log=print,
             progress=None, speedups: dict | None = None, together: bool = False,
             overwrite: bool = False, trust: bool = False) -> dict:
    """Run the whole comparison; returns (and writes) the results dict of `OUT/results.json`."""
    started = time.perf_counter()
    recipe = get_profile(profile, dataset)
    student_model = student_model or recipe.student_model
    config = replace(recipe.student_config(student_model), seed=seed, device=device,
                     **({"epochs": epochs} if epochs is not None else {}), **(speedups or {}))
    with FolderLock(prepare_folder(out)):  # one demo at a time in OUT
        return _run_demo(dataset, profile, Path(out), recipe, config, started, data_root=data_root, seed=seed,
                         device=device, teacher=teacher, teacher_model=teacher_model,
                         train_new_teacher=train_new_teacher, student_model=student_model, methods=methods,
                         figures=figures, log=log, progress=progress, overwrite=overwrite, together=together,
                         trust=trust)


def _run_demo(dataset, profile, out: Path, recipe, config, started, *, data_root, seed, device, teacher, teacher_model,
              train_new_teacher, student_model, methods, figures, log, progress, overwrite, together,
              trust) -> dict:
    runs = {"resume": not overwrite, "overwrite": overwrite}  # reuse our own finished runs, or replace them
    log(f"demo: {profile} profile on {dataset} | student {student_model} x {len(methods)} methods | "
        f"subset {recipe.train_subset or 'all'} | epochs {config.epochs} | seed {seed}")

    if train_new_teacher:
        summary = train_teacher(dataset, recipe.teacher_model,
                                replace(recipe.teacher_config(), seed=seed, device=device),
                                out / "teacher", data_root=data_root, log=log, progress=progress, **runs)
        teacher = out / "teacher" / "best.pt"  # as the official scripts: students learn from the best epoch
        log(f"trained a new {recipe.teacher_model} teacher: last {summary['top1']:.2f}%, best "
            f"{summary['best_top1']:.2f}% (epoch {summary['best_epoch']}), distilling from {teacher}")
    teacher_net, teacher_source = load_teacher(teacher, dataset, teacher_model, log=log, trust=trust)

    bundle = load_dataset(dataset, data_root, train_subset=recipe.train_subset, seed=seed, augment=config.augment)
    check_compatible(teacher_net, bundle.info, "teacher")
    dev = select_device(device)
    t0 = time.perf_counter()
    test_x, test_y = materialize(bundle.test)
    shared = {"test_tensors": (test_x, test_y)}
    if not config.augment:
        train_x, train_y = materialize(bundle.train)
        shared["train_tensors"] = (train_x, train_y)
        if config.cache_teacher:
            shared["teacher_cache"] = cache_teacher_outputs(FrozenTeacher(teacher_net.to(dev)), train_x, dev)
    teacher_top1 = top1(predict(teacher_net.to(dev), test_x, dev), test_y)
    log(f"data prepared and teacher evaluated in {time.perf_counter() - t0:.1f}s: teacher {teacher_top1:.2f}%")

    students, distillers = [], {}
    if together:  # one joint run: the same batches, one teacher forward per batch (training/together.py)
        results = distill_together(methods, student_model, teacher_net, bundle, config, out,
                                   options={m: recipe.method_options.get(m, {}) for m in methods}, log=log,
                                   progress=progress, shared=shared)
    else:
        results = (distill_student(method, student_model, teacher_net, bundle, config, out / method,
                                   options=recipe.method_options.get(method, {}), log=log, progress=progress,
                                   shared=shared, run_info={"profile": profile, "teacher": teacher_source}, **runs)
                   for method in methods)
    for result in results:
        distillers[result["method"]] = result.pop("distiller")
        students.append(result)

    results = {
        "dataset": dataset, "profile": profile,
        "teacher": {"model": teacher_net.model_name, "top1": round(teacher_top1, 2),
                    "params": count_parameters(teacher_net), "checkpoint": teacher_source},
        "students": [{k: (round(v, 2) if k in ("top1", "best_top1") and v is not None else v)
                      for k, v in s.items() if k != "history"} for s in students],
        "seed": seed, "device": str(dev),
        "method_options": {m: recipe.method_options.get(m, {}) for m in methods},
        "note": "top1 is the last epoch's test top-1; best_top1 / best_epoch the best epoch's. " + BEST_ON_TEST_NOTE,
    }
    if figures:
        _write_figures(out, results, {s["method"]: s["history"] for s in students}, teacher_net, distillers,
                       test_x, test_y, bundle.info.class_names)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_config(out, job="demo", dataset=dataset, profile=profile, teacher_model=recipe.teacher_model,
                 student_model=student_model, train_subset=recipe.train_subset, student_train=config,
                 method_options=recipe.method_options)
    atomic_write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
    atomic_write_text(json.dumps({s["method"]: s["history"] for s in students}, indent=2) + "\n",
                      out / "histories.json")
    log(results_table(results))
    return results


def results_table(results: dict) -> str:
    """The demo's printed table: last and best top-1 (with its epoch), deployed and extra parameters, seconds."""
    rows = [f"{'method':8} {'model':12} {'last %':>7} {'best %':>7} {'@ep':>4} {'params':>10} {'extra':>9} {'seconds':>8}"]
    t = results["teacher"]
    rows.append(f"{'teacher':8} {t['model']:12} {t['top1']:>7.2f} {'':>7} {'':>4} {t['params']:>10,} {'':>9} {'':>8}")
    for s in results["students"]:
        best = s.get("best_top1")
        best_text = f"{best:>7.2f} {s['best_epoch']:>4}" if best is not None else f"{'':>7} {'':>4}"
        rows.append(f"{s['method']:8} {s['model']:12} {s['top1']:>7.2f} {best_text} {s['params']:>10,} "
                    f"{s['extra_params']:>+9,} {s['seconds']:>8.1f}")
    total = f"total {results['seconds']:.0f}s" if "seconds" in results else ""
    return "\n".join(rows + [total, f"note: {BEST_ON_TEST_NOTE}"])


def _write_figures(out: Path, results: dict, histories: dict, teacher_net, distillers: dict, test_x, test_y,
                   class_names) -> None:
    viz.accuracy_bars(results).savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    viz.training_curves(histories, "train_top1").savefig(out / "curves.png", dpi=120, bbox_inches="tight")
    x, y = test_x[:1000].cpu(), test_y[:1000].numpy()
    embeddings = {f"teacher ({teacher_net.model_name})": analysis.pooled_features(teacher_net.cpu(), x)}
    if "simkd" in distillers:
        embeddings["SimKD student (projected)"] = analysis.simkd_pooled_features(distillers["simkd"].cpu(), x)
    if "vanilla" in distillers:
        embeddings["vanilla student"] = analysis.pooled_features(distillers["vanilla"].student.cpu(), x)
    projected = {name: analysis.project_2d(f) for name, f in embeddings.items()}
    viz.feature_scatter(projected, y, class_names, f"PCA of pooled features ({len(y):,} test images)").savefig(
        out / "features.png", dpi=120, bbox_inches="tight")
    plt.close("all")
