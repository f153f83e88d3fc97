"""`simkd-lite demo`: the paper's central claim on a laptop, in a few minutes.

One teacher (shipped, or trained with --train-teacher), then four students of the same architecture
and budget: vanilla, KD, FitNet and SimKD. The training set and the teacher's outputs are prepared
once and shared, so the three teacher-driven students cost only student compute. Built on the
experiment API (`experiments.runs`), like the CLI and the notebooks.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt

import torch

from simkd_lite import analysis, viz
from simkd_lite.checkpoints import atomic_write_text
from simkd_lite.experiments.jobs import write_config
from simkd_lite.experiments.runs import Experiment, compare, evaluate, get_teacher, prepare_data, train_teacher
from simkd_lite.models import count_parameters
from simkd_lite.training.metrics import BEST_ON_TEST_NOTE
from simkd_lite.training.preflight import check_folder_accepts
from simkd_lite.training.run_folder import FolderLock, prepare_folder

DEMO_METHODS = ("vanilla", "kd", "fitnet", "simkd")


@dataclass(frozen=True)
class DemoSettings:
    """The demo's recipe and teacher, besides data set and profile (`run_demo`'s keyword settings)."""

    data_root: str | Path | None = None  # None: `data.default_data_root()`
    seed: int = 0
    device: str | None = None
    epochs: int | None = None
    teacher: str | Path | None = None  # a checkpoint (default: the shipped teacher)
    teacher_model: str | None = None  # the architecture of an official checkpoint that lacks the name
    train_new_teacher: bool = False  # train the teacher from scratch instead
    student_model: str | None = None
    speedups: dict | None = None  # TrainConfig fields (fold_bn, amp, tensorboard, ...)
    trust: bool = False  # unpickle a checkpoint fully when a safe load refuses it
    fit_head: bool = False  # a teacher of other classes: fit a new head on its frozen features first


def run_demo(dataset: str = "fashion_mnist", profile: str = "quick", out: str | Path = "runs/demo", *,
             methods=DEMO_METHODS, figures: bool = True, log=print, progress=None, together: bool = False,
             stack_students: bool = False, overwrite: bool = False, **settings) -> dict:
    """Run the whole comparison; returns (and writes) the results dict of `OUT/results.json`.

    together: one joint run (`training.loop.fit` with several students); stack_students: its encoders as
    one batched network. `settings`: the fields of `DemoSettings` (seed, epochs, teacher, ...).
    """
    if stack_students and not together:
        raise ValueError("--stack-students batches the students of a joint run: add --together.")
    demo = DemoSettings(**settings)
    if demo.train_new_teacher and demo.teacher is not None:
        raise ValueError(f"--train-teacher trains a new teacher, --teacher {demo.teacher} names one: choose one of them.")
    started = time.perf_counter()
    log = log or (lambda message: None)
    exp = Experiment.resolve(dataset, profile, seed=demo.seed, epochs=demo.epochs, student=demo.student_model,
                             data_root=demo.data_root, runs=out, device=demo.device, **(demo.speedups or {}))
    out = Path(out)
    for method in methods:  # before any teacher trains: would a student's folder refuse these settings?
        check_folder_accepts(out / method, {"method": method, "dataset": dataset, "student_model": exp.student_model,
                                            "train": asdict(exp.student_train)}, resume=not overwrite,
                             overwrite=overwrite)
    with FolderLock(prepare_folder(out)):  # one demo at a time in OUT
        config = exp.student_train
        log(f"demo: {profile} profile on {dataset} | student {exp.student_model} x {len(methods)} methods | "
            f"subset {exp.train_subset or 'all'} | epochs {config.epochs} | seed {demo.seed}")
        teacher = demo.teacher
        if demo.train_new_teacher:
            trained = train_teacher(exp, out / "teacher", resume=not overwrite, overwrite=overwrite, log=log,
                                    progress=progress)
            teacher = str(trained.checkpoint)  # best.pt, as the official scripts: students learn from the best epoch
            log(f"trained a new {exp.teacher_model} teacher: last {trained.top1:.2f}%, best "
                f"{trained.best_top1:.2f}% (epoch {trained.best_epoch}), distilling from {teacher}")
        teacher_net = get_teacher(exp, teacher, teacher_model=demo.teacher_model, trust=demo.trust, log=log,
                                  fit_head=demo.fit_head)

        t0 = time.perf_counter()
        data = prepare_data(exp, teacher_net)
        teacher_top1 = evaluate(teacher_net, data)
        log(f"data prepared and teacher evaluated in {time.perf_counter() - t0:.1f}s: teacher {teacher_top1:.2f}%")
        options = {m: exp.options_for(m) for m in methods}
        # together: one joint run (the same batches, one teacher forward per batch); else one after another
        runs = compare(methods, data, teacher_net, out=out, together=together, stack=stack_students,
                       resume=not overwrite, overwrite=overwrite, log=log, progress=progress)
        students = {m: {**run.summary(), "history": run.history, "distiller": run.distiller}
                    for m, run in runs.items()}
        distillers = {m: s.pop("distiller") for m, s in students.items()}

        results = {
            "dataset": dataset, "profile": profile,
            "teacher": {"model": teacher_net.model_name, "top1": round(teacher_top1, 2),
                        "params": count_parameters(teacher_net), "checkpoint": teacher_net.source},
            "students": [{k: (round(v, 2) if k in ("top1", "last_top1", "best_top1") and v is not None else v)
                          for k, v in s.items() if k != "history"} for s in students.values()],
            "seed": demo.seed, "device": str(data.device), "method_options": options,
            "note": "top1 = last_top1, the last epoch's test top-1; best_top1 / best_epoch the best epoch's. "
                    + BEST_ON_TEST_NOTE,
        }
        histories = {m: s["history"] for m, s in students.items()}
        if figures:
            _write_figures(out, results, histories, teacher_net, distillers, data)
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_config(out, job="demo", dataset=dataset, profile=profile, teacher_model=exp.teacher_model,
                     student_model=exp.student_model, train_subset=exp.train_subset, student_train=config,
                     method_options=options)
        atomic_write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
        atomic_write_text(json.dumps(histories, indent=2) + "\n", out / "histories.json")
        log(results_table(results))
        return results


def results_table(results: dict) -> str:
    """The demo's printed table: last and best top-1 (with its epoch), deployed and extra parameters, seconds."""
    t = results["teacher"]
    w = max(12, len(t["model"]), *(len(s["model"]) for s in results["students"]))  # torchvision/resnet18
    rows = [f"{'method':8} {'model':{w}} {'last_top1':>9} {'best_top1':>9} {'@ep':>4} {'params':>10} {'extra':>9} {'seconds':>8}"]
    rows.append(f"{'teacher':8} {t['model']:{w}} {t['top1']:>9.2f} {'':>9} {'':>4} {t['params']:>10,} {'':>9} {'':>8}")
    for s in results["students"]:
        best = s.get("best_top1")
        best_text = f"{best:>9.2f} {s['best_epoch']:>4}" if best is not None else f"{'':>9} {'':>4}"
        rows.append(f"{s['method']:8} {s['model']:{w}} {s['top1']:>9.2f} {best_text} {s['params']:>10,} "
                    f"{s['extra_params']:>+9,} {s['seconds']:>8.1f}")
    total = f"total {results['seconds']:.0f}s" if "seconds" in results else ""
    return "\n".join(rows + [total, f"note: {BEST_ON_TEST_NOTE}"])


# The students whose feature spaces the demo's figure shows next to the teacher's.
FEATURE_METHODS = ("vanilla", "simkd")


def _write_figures(out: Path, results: dict, histories: dict, teacher_net, distillers: dict, data) -> None:
    viz.accuracy_bars(results).savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    viz.training_curves(histories, "test_top1", teacher_top1=results["teacher"]["top1"]).savefig(
        out / "curves.png", dpi=120, bbox_inches="tight")
    x, y = data.test_x[:1000].cpu(), data.test_y[:1000].numpy()
    embeddings = {f"teacher ({teacher_net.model_name})": analysis.pooled_features(teacher_net.cpu(), x)}
    for method in FEATURE_METHODS:  # each method says which pooled features its classifier reads
        if method in distillers:
            with torch.no_grad():
                embeddings[f"{method} student"] = distillers[method].cpu().eval().pooled_features(x)
    projected = {name: analysis.project_2d(f) for name, f in embeddings.items()}
    viz.feature_scatter(projected, y, data.info.class_names, f"PCA of pooled features ({len(y):,} test images)").savefig(
        out / "features.png", dpi=120, bbox_inches="tight")
    plt.close("all")
