"""`simkd-lite reproduce`: the paper's comparison row as a table with seeds, beside the paper's numbers.

    from simkd_lite.experiments import reproduce
    result = reproduce("runs/reproduce", teacher="resnet32x4_best.pth", student="resnet8x4", seeds=(0, 1, 2))
    print(result.markdown)          # also DIR/table.md, DIR/table.csv, DIR/per_seed.csv, DIR/table.png

Every method x seed is one ordinary run folder under DIR, named by its settings by the experiment API
(`Experiment.run_name`, the same as `train_student`'s), so calling it again reuses every finished run and
continues an interrupted one from its last epoch (`training/run_folder.py`); a run with other settings
(another --epochs, seed, teacher file...) gets its own folder. With `together=True` each seed's students
train in one joint run (`training.loop.fit` with several students: one teacher forward per batch), which
resumes and is reused the same way.

Both numbers of every run are reported: `best_top1` (the best of the per-epoch test evaluations: what the
official scripts and the paper report, selected on the test set) and `last_top1` (after the last epoch).
The paper's numbers come from `experiments.paper_table`, never typed in here.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import statistics
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping

import torch

from simkd_lite.checkpoints import atomic_write_text
from simkd_lite.distillers import get_distiller_class
from simkd_lite.experiments import paper_table
from simkd_lite.experiments.runs import (Experiment, PreparedData, compare, evaluate, get_teacher, prepare_data,
                                         train_student)
from simkd_lite.training import distributed as ddp
from simkd_lite.training.loop import TrainConfig
from simkd_lite.training.metrics import BEST_ON_TEST_NOTE, summarize

PAPER_METHODS = ("vanilla", "kd", "fitnet", "simkd")
PER_SEED_COLUMNS = ("method", "seed", "best_top1", "best_epoch", "last_top1", "epochs", "seconds", "run")
TABLE_COLUMNS = ("method", "seeds", "n", "best_top1_mean", "best_top1_std", "last_top1_mean", "last_top1_std",
                 "paper_best_top1", "seconds_mean")


@dataclass(frozen=True)
class Plan:
    """What `reproduce` runs. Unset values are the profile's (`paper`: ResNet-32x4 -> ResNet-8x4, 240 epochs).

    `train` holds `TrainConfig` overrides for the students (e.g. tf32, batch_size, lr, cuda_graph).
    """

    dataset: str = "cifar100"
    teacher: str | None = None  # a checkpoint path (ours or official); None = refused on CIFAR
    teacher_model: str | None = None  # the architecture of an official file whose path does not say
    train_teacher: bool = False  # train the profile's teacher first (hours for the paper's)
    student: str | None = None
    methods: tuple[str, ...] = PAPER_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None
    profile: str = "paper"
    data_root: str = "data"
    device: str | None = None
    threads: int | None = None
    together: bool = False
    trust: bool = False
    train: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.methods or not self.seeds:
            raise ValueError("reproduce needs at least one method and one seed.")
        for name, values in (("method", self.methods), ("seed", self.seeds)):
            if len(set(values)) != len(values):
                raise ValueError(f"reproduce: a {name} is given twice ({', '.join(map(str, values))}).")
        for method in self.methods:
            get_distiller_class(method)  # a misspelt method fails here, with close names
        if self.teacher is not None and self.train_teacher:
            raise ValueError("--teacher and --train-teacher contradict each other: choose one.")


@dataclass
class Reproduction:
    """What `reproduce` wrote: one row per run, one per method, and the paths of the files."""

    out: Path
    per_seed: list[dict]
    table: list[dict]
    markdown: str
    files: list[Path]


def reproduce(out: str | Path = "runs/reproduce", plan: Plan | None = None, *,
              log: Callable[[str], None] | None = print, progress: bool | None = None, **settings) -> Reproduction:
    """Run (or reuse) every method x seed of `plan`, then write the table, the per-seed rows and the figure.

    settings: fields of `Plan` (teacher=..., student=..., seeds=..., epochs=..., together=...) or of
    `TrainConfig` (tf32=True, batch_size=..., ...), applied on top of `plan`.
    """
    plan = _with_settings(plan or Plan(), settings)
    say = log or (lambda message: None)
    out = Path(out)
    if plan.threads:
        torch.set_num_threads(min(plan.threads, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else plan.threads))
    first = _experiment(plan, plan.seeds[0], out)
    source = "train" if plan.train_teacher else plan.teacher
    teacher = get_teacher(first, source, teacher_model=plan.teacher_model, trust=plan.trust, log=say, progress=progress)
    rows: list[dict] = []
    teacher_top1 = None
    for seed in plan.seeds:
        exp = _experiment(plan, seed, out)
        data = prepare_data(exp, teacher)
        if teacher_top1 is None:
            teacher_top1 = evaluate(teacher, data)
            say(f"reproduce: teacher {teacher.model_name} ({teacher.source}) test top-1 {teacher_top1:.2f}%; "
                f"student {exp.student_model}; methods {' '.join(plan.methods)}; seeds "
                f"{' '.join(map(str, plan.seeds))}; {exp.student_train.epochs} epochs")
        runner = _seed_together if plan.together else _seed_separately
        rows += runner(plan, exp, data, teacher, say, progress)
    context = {"dataset": plan.dataset, "profile": plan.profile, "teacher": teacher.model_name,
               "teacher_source": str(teacher.source), "teacher_top1": teacher_top1, "student": first.student_model,
               "epochs": first.student_train.epochs, "threads": torch.get_num_threads(), "device": str(data.device),
               "tf32": first.student_train.tf32, "batch_size": first.student_train.batch_size,
               "world_size": ddp.planned_world_size(), "together": plan.together,
               "options": {m: first.options_for(m) for m in plan.methods}}
    table = summary_table(rows, context)
    markdown = table_markdown(table, context)
    files = write_outputs(out, rows, table, markdown, context) if ddp.is_main_process() else []
    say(markdown)
    return Reproduction(out, rows, table, markdown, files)


def _with_settings(plan: Plan, settings: dict) -> Plan:
    """`plan` with `settings` applied: Plan fields directly, TrainConfig fields into `plan.train`."""
    plan_fields = {f.name for f in fields(Plan)}
    train_fields = set(TrainConfig.__dataclass_fields__) - {"seed", "epochs", "device"}
    unknown = sorted(set(settings) - plan_fields - train_fields)
    if unknown:
        raise TypeError(f"reproduce() got unknown setting(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(sorted(plan_fields - {'train'}))} or a training setting "
                        f"({', '.join(sorted(train_fields))}).")
    train = {**plan.train, **{k: v for k, v in settings.items() if k in train_fields}}
    return replace(plan, train=train, **{k: v for k, v in settings.items() if k in plan_fields})


def _experiment(plan: Plan, seed: int, out: Path) -> Experiment:
    """The recipe of one seed: the profile's, with the plan's overrides; run folders go under `out`."""
    return Experiment.resolve(plan.dataset, plan.profile, seed=seed, epochs=plan.epochs, student=plan.student,
                              data_root=plan.data_root, runs=out, device=plan.device, **plan.train)


# ------------------------------------------------------------------------------ running one seed
def _row(method: str, seed: int, summary: dict, seconds: float, run: str) -> dict:
    """One line of per_seed.csv; `run` is the run folder relative to DIR."""
    return {"method": method, "seed": seed, "best_top1": summary["best_top1"], "best_epoch": summary["best_epoch"],
            "last_top1": summary["last_top1"], "epochs": summary["epochs"], "seconds": round(seconds, 1), "run": run}


def _seed_separately(plan: Plan, exp: Experiment, data: PreparedData, teacher, say, progress) -> list[dict]:
    """Each method in its own run folder (DIR/<run name>): reused when finished, continued when not."""
    rows = []
    for method in plan.methods:
        run = train_student(method, data, teacher, log=say, progress=progress)  # resume=True: reuse / continue
        rows.append(_row(method, exp.seed, summarize(run.history), run.seconds, run.out.name))
        say(f"reproduce: {method} seed {exp.seed}: best_top1 {run.best_top1:.2f}% (epoch {run.best_epoch}), "
            f"last_top1 {run.top1:.2f}% -> {run.out}")
    return rows


def _seed_together(plan: Plan, exp: Experiment, data: PreparedData, teacher, say, progress) -> list[dict]:
    """Every method of one seed in one joint run, in DIR/<joint name>/<method>: reused when finished, each
    student continued from its own last epoch when interrupted (`training.loop.fit`, several students).

    The joint name holds every member's run name (hence all settings) in its digest."""
    options = {m: exp.options_for(m) for m in plan.methods}
    names = sorted(exp.run_name(m, options[m], teacher.model_name) for m in plan.methods)
    digest = hashlib.sha256(json.dumps(names).encode()).hexdigest()[:8]
    folder = exp.runs_root / f"joint_{exp.dataset}_{teacher.model_name}-{exp.student_model}_" \
                             f"e{exp.student_train.epochs}_s{exp.seed}_{digest}"
    runs = compare(plan.methods, data, teacher, out=folder, together=True, log=say, progress=progress)
    return [_row(m, exp.seed, summarize(runs[m].history), runs[m].seconds, f"{folder.name}/{m}")
            for m in plan.methods]


# ------------------------------------------------------------------------------ the table
def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single seed: no spread can be estimated)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summary_table(rows: list[dict], context: Mapping) -> list[dict]:
    """One row per method: its seeds, mean and std of best_top1 and of last_top1, and the paper's number."""
    table = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        best_mean, best_std = _mean_std([r["best_top1"] for r in mine])
        last_mean, last_std = _mean_std([r["last_top1"] for r in mine])
        options = context["options"][method]
        paper = paper_table.paper_top1(context["dataset"], context["teacher"], context["student"], method, options)
        table.append({"method": method, "seeds": " ".join(str(r["seed"]) for r in mine), "n": len(mine),
                      "best_top1_mean": best_mean, "best_top1_std": best_std, "last_top1_mean": last_mean,
                      "last_top1_std": last_std, "paper_best_top1": paper,
                      "seconds_mean": statistics.fmean(r["seconds"] for r in mine)})
    return table


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f} (one seed)"


def table_markdown(table: list[dict], context: Mapping) -> str:
    """DIR/table.md: ours (best_top1 and last_top1, mean ± std over seeds) beside the paper's best_top1."""
    column = paper_table.paper_column(context["dataset"], context["teacher"], context["student"])
    paper_teacher = f"{column.teacher_top1:.2f}" if column else "not in the paper"
    n = max(row["n"] for row in table)
    lines = [f"# {context['teacher']} -> {context['student']} on {context['dataset']} "
             f"({context['profile']} profile, {context['epochs']} epochs, {n} seed(s))", "",
             f"Teacher {context['teacher']}: {context['teacher_top1']:.2f}% test top-1 of the file given "
             f"(paper: {paper_teacher}).", "",
             "| method | ours best_top1 (mean ± std) | ours last_top1 (mean ± std) | paper best_top1 | "
             "ours best − paper | seeds | seconds per run |", "|---|---|---|---|---|---|---|"]
    comparable = context["epochs"] == 240  # the paper's budget; a shorter run's gap would mean nothing
    for row in table:
        paper = row["paper_best_top1"]
        gap = f"{row['best_top1_mean'] - paper:+.2f}" if paper is not None and comparable else ""
        lines.append(f"| {row['method']} | {_pm(row['best_top1_mean'], row['best_top1_std'])} | "
                     f"{_pm(row['last_top1_mean'], row['last_top1_std'])} | "
                     f"{f'{paper:.2f}' if paper is not None else 'not in the paper'} | {gap} | {row['seeds']} | "
                     f"{row['seconds_mean']:.0f} |")
    lines += [""]
    if context["together"]:
        lines.append("Joint runs (--together): a method's seconds are the whole joint run's, shared by all methods.")
    lines += ["The paper reports best_top1, the best of 240 per-epoch test evaluations: compare that column. "
              + BEST_ON_TEST_NOTE, "std is the sample standard deviation over seeds."]
    if context["epochs"] != 240 and context["profile"] == "paper":
        lines.append(f"These runs trained {context['epochs']} epochs, not the paper's 240: they are not comparable "
                     "with the paper's numbers.")
    lines.append(f"Ran on {context['device']} with {context['threads']} CPU thread(s), tf32 "
                 f"{str(context['tf32']).lower()}, global batch {context['batch_size']} over "
                 f"{context['world_size']} process(es); the thread count and the device change the rounding, "
                 "hence the numbers, beyond the seed's spread on small budgets.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the files
def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_outputs(out: Path, rows: list[dict], table: list[dict], markdown: str, context: Mapping) -> list[Path]:
    """DIR/per_seed.csv, DIR/table.csv, DIR/table.md, DIR/table.png and DIR/reproduce.json (the context)."""
    files = {"per_seed.csv": _csv(rows, PER_SEED_COLUMNS), "table.csv": _csv(table, TABLE_COLUMNS),
             "table.md": markdown,
             "reproduce.json": json.dumps({**context, "per_seed": rows, "table": table}, indent=2) + "\n"}
    for name, text in files.items():
        atomic_write_text(text, out / name)
    figure = dot_plot(rows, table, context)
    figure.savefig(out / "table.png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return [out / name for name in (*files, "table.png")]


def dot_plot(rows: list[dict], table: list[dict], context: Mapping):
    """One line per method: each seed's best_top1 (filled) and last_top1 (open), their means ± std, the paper's ×.

    The x axis spans at least 10 points, so a spread of a few tenths is not drawn as a chasm.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.7 * len(table) + 1.6))
    values = []
    for i, row in enumerate(table):
        mine = [r for r in rows if r["method"] == row["method"]]
        for kind, offset, style in (("best_top1", 0.12, dict(color="C0")), ("last_top1", -0.12,
                                                                           dict(color="C1", fillstyle="none"))):
            points = [r[kind] for r in mine]
            values += points
            ax.plot(points, [i + offset] * len(points), "o", alpha=0.6, label=kind if i == 0 else None, **style)
            mean, std = row[f"{kind}_mean"], row[f"{kind}_std"]
            ax.errorbar([mean], [i + offset], xerr=[[std or 0.0], [std or 0.0]], fmt="|", color=style["color"],
                        markersize=14, capsize=4)
        if row["paper_best_top1"] is not None:
            values.append(row["paper_best_top1"])
            ax.plot([row["paper_best_top1"]], [i + 0.12], "x", color="k", markersize=9,
                    label="paper (best_top1)" if "paper (best_top1)" not in ax.get_legend_handles_labels()[1] else None)
    low, high = min(values), max(values)
    pad = max(1.0, (10.0 - (high - low)) / 2)
    ax.set_xlim(max(0.0, low - pad), min(100.0, high + pad))
    ax.set_yticks(range(len(table)), [row["method"] for row in table])
    ax.invert_yaxis()
    ax.set_xlabel("test top-1 (%): dots = seeds, bars = mean ± std")
    ax.set_title(f"{context['teacher']} -> {context['student']}, {context['dataset']}, {context['epochs']} epochs")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig
