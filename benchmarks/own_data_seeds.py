"""Notebook 06's comparison over seeds x CPU thread counts: the noise table its verdict is judged against.

    python benchmarks/own_data_seeds.py                      # seeds 0-4 x threads 1 2 (10 runs)
    python benchmarks/own_data_seeds.py --seeds 0 --threads 1 --json /tmp/t.json --md /tmp/t.md

Each record is one separate process that does exactly what notebook 06 does with the same recipe (`RECIPE`):
write the Fashion-MNIST image folder (PNG files), train the profile's torchvision ResNet-18 teacher on it
with the run's seed, then a vanilla and a SimKD ResNet-8 student, through the public API. Unlike
`demo_seeds.py` (a fixed shipped teacher) the teacher is retrained in every record, because the notebook
retrains it: the table's spread includes the teacher's own seed and thread noise.

Writes `simkd_lite/results/own_data_seeds.json` (package data: `analysis.seed_table_for("imagefolder", ...,
recipe=RECIPE)` reads it) and the readable `benchmarks/own_data_seeds.md`. Records already in the JSON are kept
(an interrupted measurement resumes) unless --redo.
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_JSON = REPO / "simkd_lite" / "results" / "own_data_seeds.json"
DEFAULT_MD = HERE / "own_data_seeds.md"
METHODS = ("teacher", "vanilla", "simkd")
DIFFERENCES = {"simkd_minus_vanilla": ("simkd", "vanilla"), "teacher_minus_simkd": ("teacher", "simkd")}
# Notebook 06's recipe; the notebook passes the same dict to `seed_table_for`, which refuses a table of another one.
RECIPE = {"source": "fashion_mnist", "per_class": 300, "test_per_class": 100, "profile": "quick",
          "teacher": "torchvision/resnet18", "student": "resnet8", "epochs": None}
COVERS = ("notebook 06's recipe (a 3,000 / 1,000-image Fashion-MNIST folder of PNG files, the quick profile: "
          "a torchvision ResNet-18 teacher trained on it, then vanilla and SimKD ResNet-8 students), on this "
          "machine's CPU and this torch build: training randomness of teacher and students (the seed) and "
          "floating-point rounding (1 vs 2 CPU threads), for the same fixed 1,000 test images")
NOT_COVERED = ("other CPUs, BLAS libraries or torch versions; GPUs; other folders, image counts, profiles or "
               "epochs; and the sampling error of the test set itself (with 1,000 images and ~85% accuracy a "
               "score has a binomial standard error of about 1.1 points as an estimate of accuracy on new images)")


def _demo_seeds():
    """benchmarks/demo_seeds.py, for its `spread` and `machine_load` (one definition of the statistics)."""
    spec = importlib.util.spec_from_file_location("demo_seeds", HERE / "demo_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pipeline(seed: int, runs: Path, folder: Path) -> dict:
    """Notebook 06's training, in this process: {method: top-1, "<method>_seconds", "test_images"}."""
    from simkd_lite.data import write_image_folder
    from simkd_lite.experiments import Experiment, evaluate, get_teacher, prepare_data, train_student

    write_image_folder(folder, RECIPE["source"], RECIPE["per_class"], RECIPE["test_per_class"])
    exp = Experiment.resolve(profile=RECIPE["profile"], data_dir=folder, seed=seed, runs=runs,
                             student=RECIPE["student"], epochs=RECIPE["epochs"])
    started = time.perf_counter()
    teacher = get_teacher(exp, "train", log=None)  # the profile's teacher (RECIPE["teacher"]), this seed
    record = {"teacher_seconds": round(time.perf_counter() - started, 1)}
    data = prepare_data(exp, teacher)
    record["teacher"] = round(evaluate(teacher, data), 2)
    for method in ("vanilla", "simkd"):
        run = train_student(method, data, teacher, log=None)
        record |= {method: round(run.top1, 2), f"{method}_seconds": run.seconds, f"{method}_params": run.params}
    return record | {"test_images": len(data.test_y)}


def run_one(seed: int, threads: int, runs: Path, folder: Path, demo_seeds) -> dict:
    """One record: a fresh process (its own thread count), timed from the outside."""
    load_before = demo_seeds.machine_load()
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--one", str(seed), "--threads", str(threads), "--runs", str(runs),
                          "--folder", str(folder)], check=True, capture_output=True, text=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    busy = any(load is not None and load > demo_seeds.BUSY_LOAD_PER_CORE
               for load in (load_before, demo_seeds.machine_load()))
    return {"seed": seed, "threads": threads, **record, "wall_seconds": round(time.perf_counter() - started, 1),
            "wall_busy_machine": busy}


def build(rows: list[dict], note: str, command: str, demo_seeds) -> dict:
    rows = sorted(rows, key=lambda r: (r["seed"], r["threads"]))
    summary = {"top1": {m: demo_seeds.spread([r[m] for r in rows]) for m in METHODS},
               **{name: demo_seeds.spread([r[a] - r[b] for r in rows]) for name, (a, b) in DIFFERENCES.items()},
               "wall_seconds": demo_seeds.spread([r["wall_seconds"] for r in rows]),
               "wall_busy_machine": any(r["wall_busy_machine"] for r in rows)}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return {"dataset": "imagefolder", "profile": RECIPE["profile"], "recipe": RECIPE, "machine": machine,
            "command": command, "note": note, "covers": COVERS, "not_covered": NOT_COVERED,
            "seeds": sorted({r["seed"] for r in rows}), "threads": sorted({r["threads"] for r in rows}),
            "test_images": rows[0]["test_images"] if rows else None, "rows": rows, "summary": summary}


def markdown(data: dict) -> str:
    rows, summary = data["rows"], data["summary"]
    names = {"teacher": "teacher (torchvision ResNet-18)", "vanilla": "vanilla ResNet-8", "simkd": "SimKD ResNet-8"}
    header = ["", *[f"s{r['seed']}/t{r['threads']}" for r in rows], f"mean ± std (n={len(rows)})", "range"]
    lines = ["# Notebook 06 over seeds and CPU thread counts (own image folder, quick profile)", "",
             "Generated by `python benchmarks/own_data_seeds.py` (do not edit by hand); the numbers are in "
             "`simkd_lite/results/own_data_seeds.json`, which notebook 06 judges against.", "",
             f"Machine: {data['machine']}. Recipe: `{json.dumps(data['recipe'])}`. Top-1 in % on the "
             f"{data['test_images']:,} test images of the folder's val/ split.", "",
             f"**What this covers:** {data['covers']}.", "", f"**What it does not cover:** {data['not_covered']}.", ""]
    if data.get("note"):
        lines += [f"**Conditions:** {data['note']}", ""]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def line(label, values, s, fmt):
        plain = fmt.lstrip("+")
        return (f"| {label} | " + " | ".join(format(v, fmt) for v in values)
                + f" | {format(s['mean'], fmt)} ± {format(s['std'], plain)} | {format(s['min'], fmt)} … "
                  f"{format(s['max'], fmt)} |")

    lines += [line(names[m], [r[m] for r in rows], summary["top1"][m], ".2f") for m in METHODS]
    lines += [line("SimKD − vanilla", [r["simkd"] - r["vanilla"] for r in rows], summary["simkd_minus_vanilla"], "+.2f"),
              line("teacher − SimKD", [r["teacher"] - r["simkd"] for r in rows], summary["teacher_minus_simkd"], ".2f"),
              line("wall s", [r["wall_seconds"] for r in rows], summary["wall_seconds"], ".0f")]
    lines += ["", "Wall seconds (one process: folder, teacher, two students): " +
              ("measured on a BUSY machine (other jobs ran), not a timing result." if summary["wall_busy_machine"]
               else "measured on an otherwise idle machine.")]
    return "\n".join(lines) + "\n"


def write(data: dict, json_path: Path, md_path: Path) -> None:
    for path, text in ((json_path, json.dumps(data, indent=2) + "\n"), (md_path, markdown(data))):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".writing")
        tmp.write_text(text)
        tmp.replace(path)  # never half a table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--md", type=Path, default=DEFAULT_MD)
    p.add_argument("--runs", type=Path, default=Path("runs/own_data_seeds"))
    p.add_argument("--folder", type=Path, default=Path("runs/own_data_seeds/images"), help="where the PNGs are written")
    p.add_argument("--note", default="")
    p.add_argument("--redo", action="store_true")
    p.add_argument("--one", type=int, metavar="SEED", help=argparse.SUPPRESS)  # the child process of one record
    args = p.parse_args(argv)
    if args.one is not None:
        import torch

        torch.set_num_threads(args.threads[0])
        print(json.dumps(run_pipeline(args.one, args.runs / f"seed{args.one}_threads{args.threads[0]}", args.folder)))
        return
    demo_seeds = _demo_seeds()
    rows = {}
    if args.json.exists():
        rows = {(r["seed"], r["threads"]): r for r in json.loads(args.json.read_text())["rows"]}
    command = ("python benchmarks/own_data_seeds.py --seeds " + " ".join(map(str, args.seeds)) + " --threads "
               + " ".join(map(str, args.threads)))
    for seed, threads in itertools.product(args.seeds, args.threads):
        if (seed, threads) in rows and not args.redo:
            continue
        print(f"seed {seed} threads {threads}: running", flush=True)
        rows[(seed, threads)] = run_one(seed, threads, args.runs, args.folder, demo_seeds)
        write(build(list(rows.values()), args.note, command, demo_seeds), args.json, args.md)
    data = build(list(rows.values()), args.note, command, demo_seeds)
    write(data, args.json, args.md)
    print(markdown(data))


if __name__ == "__main__":
    main()
