"""Paper-recipe epoch times on one GPU, in one call: correctness first, then the timings, fp32 without compile.

    PYTHONPATH=$PWD python benchmarks/gpu_epoch_times.py --out $OUT            # on the GPU machine
    PYTHONPATH=$PWD python benchmarks/gpu_epoch_times.py --device cpu --tiny    # a smoke test of this script

1. the CUDA tests of the graphed step and of the joint run (pytest, tests/test_graphed.py, test_together.py);
2. `simkd-lite bench` (official-style loop, fast eager path, CUDA-graph SimKD step, four students together);
3. a full-size fake CIFAR-100 (50,000 / 10,000 images, `write_cifar_fixture`), ResNet-32x4 -> ResNet-8x4,
   the paper recipe (batch 64, SGD, crop + flip), 2 epochs each, test pass every epoch:
   a. the official loop: torchvision transforms, DataLoader (8 workers), full teacher and student forwards,
      CE + KL computed at weight 0 as the official SimKD run does, a loss.item() per step, official test pass;
   b. ours, eager fast path (fold BN, channels_last, on-device augmentation);
   c. ours, CUDA graph;
   d. vanilla + KD + FitNet + SimKD together (CUDA graph), against c.
Writes OUT/gpu_epoch_times.json (and the bench JSON) and prints a table last.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from simkd_lite import cli  # noqa: E402
from simkd_lite.data import load_dataset, write_cifar_fixture  # noqa: E402
from simkd_lite.distillers import SimKD  # noqa: E402
from simkd_lite.experiments.bench import machine_info  # noqa: E402
from simkd_lite.experiments.jobs import StudentsJob, fit_students  # noqa: E402
from simkd_lite.experiments.profiles import PAPER_METHOD_OPTIONS, get_profile  # noqa: E402
from simkd_lite.models import create_model  # noqa: E402

METHODS = ("vanilla", "kd", "fitnet", "simkd")


def official_loop(bundle_aug, bundle_test, teacher_net, student_model, config, device, epochs, workers) -> list[dict]:
    """The official train_distill + validate_distill for SimKD (-c 0 -d 0 -b 1), per epoch wall times."""
    from torch.utils.data import DataLoader

    torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    model_t = teacher_net.to(device).eval()
    model_s = create_model(student_model, 100, 3).to(device)
    proj = SimKD(model_s.feature_channels, model_t.feature_channels, 2).to(device)
    cls_t = model_t.get_classifier()
    optimizer = torch.optim.SGD(list(model_s.parameters()) + list(proj.parameters()), lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    train_loader = DataLoader(bundle_aug.train, batch_size=config.batch_size, shuffle=True, num_workers=workers)
    test_loader = DataLoader(bundle_test.test, batch_size=config.batch_size // 2, shuffle=False,
                             num_workers=max(1, workers // 2))
    out = []
    for epoch in range(epochs):
        started = time.perf_counter()
        model_s.train(); proj.train()
        total = 0.0
        for x, y in train_loader:
            x, y = x.to(device).float(), y.to(device)
            feat_s = model_s.forward_features(x)
            model_s.forward_head(feat_s)
            with torch.no_grad():
                feat_t = model_t.forward_features(x)
                logit_t = model_t.forward_head(feat_t)
            trans_s, trans_t, logit_s = proj(feat_s, feat_t, cls_t)
            loss_cls = F.cross_entropy(logit_s, y)
            loss_div = F.kl_div(F.log_softmax(logit_s / 4, 1), F.softmax(logit_t / 4, 1), reduction="batchmean") * 16
            loss = 0 * loss_cls + 0 * loss_div + 1 * SimKD.loss(trans_s, trans_t)
            (logit_s.argmax(1) == y).float().mean()
            total += loss.item()  # AverageMeter.update(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        train_s = time.perf_counter() - started
        model_s.eval(); proj.eval()
        correct = seen = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device).float(), y.to(device)
                feat_s = model_s.forward_features(x)
                feat_t = model_t.forward_features(x)  # the official evaluation runs the teacher for a shape
                model_t.forward_head(feat_t)
                _, _, logits = proj(feat_s, feat_t, cls_t)
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
        out.append({"epoch": epoch + 1, "train_seconds": round(train_s, 2),
                    "seconds": round(time.perf_counter() - started, 2), "test_top1": 100 * correct / seen,
                    "loss": total / len(train_loader)})
        print(f"official epoch {epoch + 1}: {out[-1]}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="/tmp/gpu_epoch_times")
    p.add_argument("--tiny", action="store_true", help="small fixture, 1 epoch, few steps (smoke test)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-official", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    report: dict = {"machine": machine_info(args.device), "tiny": args.tiny}
    print(report["machine"], flush=True)

    # ---- 1. correctness (the CUDA tests run only where there is a GPU)
    if not args.skip_tests:
        started = time.perf_counter()
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                "tests/test_graphed.py", "tests/test_together.py", "-k", "cuda"],
                               cwd=HERE.parent, capture_output=True, text=True)
        report["tests"] = {"returncode": tests.returncode, "tail": tests.stdout[-1500:] + tests.stderr[-500:],
                           "seconds": round(time.perf_counter() - started, 1)}
        print(report["tests"]["tail"], flush=True)

    # ---- 2. simkd-lite bench (official-style loop, fast path, graphed step, four students together)
    steps = "3" if args.tiny else "50"
    bench_json = out / "bench.json"
    bench_args = ["bench", "--device", args.device, "--steps", steps, "--repeats", "1" if args.tiny else "3",
                  "--json", str(bench_json)]
    if args.tiny:
        bench_args += ["--teacher", "resnet8", "--student", "resnet8_w8", "--batch-size", "16"]
    started = time.perf_counter()
    cli.main(bench_args)
    report["bench"] = json.loads(bench_json.read_text())
    report["bench_seconds"] = round(time.perf_counter() - started, 1)
    # bf16 + graph, a smoke check only (the measurements are fp32)
    from simkd_lite.experiments.bench_graphed import run_graph_bench

    report["graph_amp_smoke"] = run_graph_bench("resnet8" if args.tiny else "resnet32x4",
                                                "resnet8_w8" if args.tiny else "resnet8x4", steps=3, together=False,
                                                amp=True, device=args.device)

    # ---- 3. two-epoch runs on a full-size fake CIFAR-100
    n_train, n_test = (300, 100) if args.tiny else (50_000, 10_000)
    root = Path("/tmp/gpu_epoch_times_cifar")
    started = time.perf_counter()
    write_cifar_fixture(root, "cifar100", n_train=n_train, n_test=n_test)
    report["fixture_seconds"] = round(time.perf_counter() - started, 1)
    recipe = get_profile("paper", "cifar100")
    base = replace(recipe.student, epochs=1 if args.tiny else args.epochs, device=args.device, amp=False,
                   compile_teacher=False, compile_student=False)
    bundle = load_dataset("cifar100", root, augment=True)
    torch.manual_seed(0)
    teacher = create_model("resnet32x4", 100, 3)  # random weights: the speed does not depend on them
    student = "resnet8x4"
    runs = report["runs"] = {}

    if not args.skip_official:
        plain = load_dataset("cifar100", root, augment=False)
        runs["official"] = official_loop(bundle, plain, teacher, student, base, device, base.epochs, args.workers)

    def timed(name, fn):
        torch.cuda.synchronize() if device.type == "cuda" else None
        started = time.perf_counter()
        result = fn()
        runs[name] = {"wall_seconds": round(time.perf_counter() - started, 2), **result}
        print(f"{name}: {json.dumps(runs[name])[:600]}", flush=True)

    def one(config, label):
        job = StudentsJob(("simkd",), student, teacher, {"simkd": PAPER_METHOD_OPTIONS["simkd"]})
        [r] = fit_students(job, bundle, config, {"simkd": out / "runs" / label}, log=print, progress=False)
        return {"epoch_seconds": [round(h["seconds"], 2) for h in r.history],
                "loss": [h["loss_simkd"] for h in r.history], "test_top1": [h["test_top1"] for h in r.history]}

    timed("ours_eager", lambda: one(replace(base, cuda_graph=False), "eager"))
    timed("ours_graph", lambda: one(replace(base, cuda_graph=True), "graph"))

    def row():
        job = StudentsJob(tuple(METHODS), student, teacher, {m: PAPER_METHOD_OPTIONS.get(m, {}) for m in METHODS})
        rs = fit_students(job, bundle, replace(base, cuda_graph=True), {m: out / "runs" / "row" / m for m in METHODS},
                          log=print, progress=False)
        return {r.method: {"epoch_seconds": [round(h["seconds"], 2) for h in r.history],
                           "test_top1": [h["test_top1"] for h in r.history]} for r in rs}

    timed("together_graph", row)
    (out / "gpu_epoch_times.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

    # ---- the table
    b, g = report["bench"], report["bench"]["graphed"]
    print("\n=== paper-recipe epoch times on", report["machine"]["device_name"], "| torch", report["machine"]["torch"])
    if "tests" in report:
        print("CUDA tests rc", report["tests"]["returncode"])
    print(f"bench img/s: official-style {b['baseline_train_images_per_s']}, fast eager {b['train_images_per_s']}, "
          f"graphed SimKD {g['simkd_images_per_s']} (graphed={g['graphed']}); 4 together {g.get('together_step_ms')} "
          f"ms/step = x{g.get('together_ratio')} SimKD alone ({g['simkd_step_ms']} ms)")
    if "official" in runs:
        print("official s/epoch (train+test):", [r["seconds"] for r in runs["official"]])
    for name in ("ours_eager", "ours_graph"):
        print(f"{name} s/epoch:", runs[name]["epoch_seconds"], "wall", runs[name]["wall_seconds"])
    print("together s/epoch (simkd record):", runs["together_graph"]["simkd"]["epoch_seconds"],
          "wall", runs["together_graph"]["wall_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
