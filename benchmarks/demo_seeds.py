"""Run `simkd-lite demo` for several seeds and write the table: benchmarks/demo_seeds.{json,md}.

    python benchmarks/demo_seeds.py                 # seeds 0 1 2, quick profile, Fashion-MNIST
    python benchmarks/demo_seeds.py --seeds 0 --out /tmp/check

Each seed is a separate `simkd-lite demo` process, timed from the outside (wall seconds, start-up
included), exactly what a user who types the command waits for.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--runs", default="runs/demo_seeds")
    args = p.parse_args(argv)

    rows = []
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"seed{seed}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simkd_lite", "demo", "--dataset", args.dataset, "--seed", str(seed),
                        "--out", str(run_dir), "--quiet", "--overwrite"], check=True)  # timed: never reuse
        wall = time.perf_counter() - started
        results = json.loads((run_dir / "results.json").read_text())
        rows.append({"seed": seed, "wall_seconds": round(wall, 1), "teacher": results["teacher"]["top1"],
                     **{s["method"]: s["top1"] for s in results["students"]},
                     **{f"{s['method']}_seconds": s["seconds"] for s in results["students"]}})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}"
    (out / "demo_seeds.json").write_text(json.dumps({"dataset": args.dataset, "machine": machine, "rows": rows}, indent=2) + "\n")
    methods = ["teacher", "vanilla", "kd", "fitnet", "simkd"]
    lines = [f"# `simkd-lite demo` over seeds ({args.dataset}, quick profile)", "",
             f"Machine: {machine}. Command: `python benchmarks/demo_seeds.py --seeds {' '.join(map(str, args.seeds))}`.",
             "Top-1 in % on the full test set; wall seconds of the whole `simkd-lite demo` process.", "",
             "| seed | " + " | ".join(methods) + " | SimKD − vanilla | teacher − SimKD | wall s |",
             "|---" * (len(methods) + 4) + "|"]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[m]:.2f}" for m in methods)
                     + f" | {r['simkd'] - r['vanilla']:+.2f} | {r['teacher'] - r['simkd']:.2f} | {r['wall_seconds']:.0f} |")
    if len(rows) > 1:
        mean = {m: statistics.mean(r[m] for r in rows) for m in methods}
        wall = statistics.mean(r["wall_seconds"] for r in rows)
        lines.append("| mean | " + " | ".join(f"{mean[m]:.2f}" for m in methods)
                     + f" | {mean['simkd'] - mean['vanilla']:+.2f} | {mean['teacher'] - mean['simkd']:.2f} | {wall:.0f} |")
    lines += ["", "Targets (issue: demo): teacher ≥ 92%, SimKD ≥ vanilla + 1, SimKD within 2 points of the teacher, "
              "demo ≤ 180 s wall on a 2-core CPU."]
    (out / "demo_seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
