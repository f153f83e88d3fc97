"""`simkd-lite` (also `python -m simkd_lite`): the command-line face of the package.

Each subcommand parses its flags, resolves a profile, calls the experiment API (`simkd_lite.experiments`) and
prints what it did. Bad input (or a full disk, a read-only folder...) ends with a one-line error, not a
traceback; an unexpected error (a bug) keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # the CLI only writes PNG files; never open windows
DATA_ROOT_HELP = "dataset folder (default: $SIMKD_LITE_DATA, else the clone's data/, else ~/.cache/simkd_lite/data)"

from simkd_lite.experiments.commands import BEST_ON_TEST_NOTE, describe  # noqa: E402  (small, imports no torch)

EXAMPLES = {
    "demo": """examples:
  simkd-lite demo                                  # Fashion-MNIST, quick profile, shipped teacher, runs/demo
  simkd-lite demo --seed 1 --out runs/demo-seed1   # another seed
  simkd-lite demo --train-teacher                  # train the teacher from scratch first (slower)
  simkd-lite demo --dataset digits --out runs/digits""",
    "train-teacher": """examples:
  simkd-lite train-teacher --dataset fashion_mnist --model resnet14x2 --out runs/teacher
  simkd-lite train-teacher --dataset cifar100 --profile paper --model resnet32x4 --out runs/t_r32x4 --device cuda
  simkd-lite train-teacher --out runs/teacher --resume          # continue after an interruption
  simkd-lite train-teacher --out runs/teacher --overwrite       # start again, replacing the run in runs/teacher
  simkd-lite train-teacher --profile paper --dataset cifar100 --amp --out runs/t_bf16   # opt-in bf16: changes results""",
    "distill": """examples:
  simkd-lite distill --method simkd --teacher runs/teacher/best.pt --out runs/simkd
  simkd-lite distill --method kd --dataset cifar100 --profile paper --student resnet8x4 \\
      --teacher save/teachers/models/resnet32x4_vanilla/resnet32x4_best.pth --out runs/kd
  simkd-lite distill --method simkd --factor 4 --teacher ckpt.pth --teacher-model resnet32x4 --out runs/f4""",
    "eval": """examples:
  simkd-lite eval runs/demo/simkd/student.pt --dataset fashion_mnist     # a deployable SimKD student
  simkd-lite eval runs/teacher/best.pt --dataset fashion_mnist
  simkd-lite eval runs/simkd/last.pt --dataset fashion_mnist          # a SimKD run: projector + teacher head
  simkd-lite eval resnet32x4_best.pth --model resnet32x4 --dataset cifar100
  simkd-lite eval resnet8x4_best.pth --model resnet8x4 --teacher resnet32x4_best.pth --dataset cifar100
                                                   # an official SimKD student needs its teacher's head""",
    "data": """examples:
  simkd-lite data list
  simkd-lite data locate fashion_mnist
  simkd-lite data fetch fashion_mnist        # Debian's package files offline, else torchvision's download
  simkd-lite data fetch cifar100             # needs internet""",
    "profiles": """examples:
  simkd-lite profiles""",
    "reproduce": """examples:
  simkd-lite reproduce --dataset cifar100 --teacher save/teachers/models/resnet32x4_vanilla/resnet32x4_best.pth \
      --student resnet8x4 --seeds 0 1 2 --device cuda --out runs/reproduce      # the paper's row, 3 seeds
  simkd-lite reproduce ... --out runs/reproduce      # again: finished runs are reused, interrupted ones continued
  simkd-lite reproduce ... --together                # each seed's four students in one joint run
  simkd-lite reproduce --dataset cifar100 --train-teacher --student resnet8x4 --out runs/reproduce  # hours more""",
    "export": """examples:
  simkd-lite export runs/demo/simkd/student.pt                   # -> runs/demo/simkd/student.onnx
  simkd-lite export runs/simkd/best.pt --format pt2 --out simkd.pt2   # torch.export, loads with torch alone
  simkd-lite export runs/demo/kd/best.pt --opset 18              # a KD / FitNet / vanilla student: its own head
the file's input is the NORMALISED image, float32 (N, C, H, W): (pixel / 255 - mean) / std per channel
(N dynamic; mean, std, class names and image size are in the file's metadata); output: logits (N, classes)""",
    "bench": """examples:
  simkd-lite bench                                             # resnet32x4 -> resnet8x4, batch 64, 32x32
  simkd-lite bench --device cuda --amp --compile-teacher --json runs/bench.json
  simkd-lite bench --teacher runs/teacher/last.pt --student resnet8 --image-size 28 --in-channels 1 --num-classes 10
  simkd-lite bench --no-fold-bn --no-channels-last              # switch speed-ups off one by one
  simkd-lite bench --threads 1 --no-onnxruntime                 # without onnxruntime's CPU images/s""",
}


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def folder(text: str) -> str:
    """argparse type: a non-empty folder name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return text


RUN_FOLDER_HELP = """output folders: a folder holds one run. A fresh run refuses a folder that holds one (last.pt, best.pt,
  student.pt or config.json) unless --resume (continue it) or --overwrite (replace it; nothing is deleted
  before every check passed and the new run wrote its first checkpoint). --resume refuses a folder with
  nothing to resume, and a run without last.pt. A folder is locked
  while its run trains: a second run into it is refused with the first one's PID. --resume continues
  with the saved settings and refuses, listing them, if anything else differs (recipe, seed, models,
  method options, data set, teacher weights); only --epochs may change, and only with the multistep
  schedule (its learning rate does not depend on the total) and not below the epochs already done:
  onecycle and cosine set every step's learning rate from the total number of epochs. --device and the
  speed-ups that keep results to float tolerance may change (not --amp, not --no-device-data)."""


def _run_flags(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--out", type=folder, default=default_out, help="output folder (default: %(default)s)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run in OUT (same settings; see 'output folders' below)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run OUT holds: it is moved aside, deleted once the new run has written "
                            "its first checkpoint, and put back if the call fails before that")
    p.epilog = RUN_FOLDER_HELP + "\n\n" + p.epilog


def _speedups(p: argparse.ArgumentParser) -> None:
    """The switchable speed-ups (see simkd_lite/training/teacher_prep.py): each an on/off pair; unset = the profile's."""
    on_off = argparse.BooleanOptionalAction
    g = p.add_argument_group("speed-ups (each --X / --no-X; default: the profile's, see `simkd-lite profiles`)",
                             "All but --amp and --tf32 change results only within float tolerance. --amp (bf16 "
                             "autocast) and --tf32 change the numbers beyond it (SimKD's regression targets become "
                             "bf16; TF32 rounds convolution inputs to 10 mantissa bits): the official code and the "
                             "paper profile are fp32.")
    g.add_argument("--fold-bn", action=on_off, default=None,
                   help="fold the frozen teacher's BatchNorm layers into its convs (exact up to rounding)")
    g.add_argument("--channels-last", action=on_off, default=None, help="NHWC memory format (exact up to rounding)")
    g.add_argument("--compile-teacher", action=on_off, default=None,
                   help="torch.compile the teacher forward (one-off compile time)")
    g.add_argument("--compile-student", action=on_off, default=None, help="torch.compile the student step")
    g.add_argument("--amp", action=on_off, default=None,
                   help="bf16 autocast on CUDA: faster on some GPUs, but CHANGES RESULTS (not the paper's fp32)")
    g.add_argument("--tf32", action=on_off, default=None,
                   help="CUDA: TF32 matmuls and convolutions (faster on Ampere and newer, but CHANGES RESULTS; "
                        "default off: true fp32, as the official code; recorded as tf32 in OUT/config.json)")
    g.add_argument("--device-data", action=on_off, default=None,
                   help="augment as uint8 tensors on the device in batches (--no-device-data: torchvision, "
                        "image by image, in a DataLoader)")
    g.add_argument("--cuda-graph", action=on_off, default=None,
                   help="CUDA: replay each full-batch training step from a CUDA graph (SGD + per-epoch schedule; "
                        "the same math, loss checked once per epoch); ignored on CPU")


SPEEDUPS = ("fold_bn", "channels_last", "compile_teacher", "compile_student", "amp", "device_data", "cuda_graph",
            "tf32")


def _common(p: argparse.ArgumentParser) -> None:
    _data_flags(p)
    p.add_argument("--profile", default="quick", help="quick (CPU minutes) or paper (official recipe); see `simkd-lite profiles`")
    p.add_argument("--epochs", type=positive_int, help="override the profile's number of epochs")
    p.add_argument("--batch-size", type=positive_int,
                   help="override the profile's batch size; under torchrun the global batch, split among the processes")
    p.add_argument("--lr", type=positive_float, help="override the profile's learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch, at most the core count (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log every epoch to OUT/tensorboard (pip install 'simkd_lite[tensorboard]'); "
                        "OUT/metrics.csv is always written")
    _trust(p)
    _speedups(p)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="fashion_mnist (the default), digits, cifar10 or cifar100")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--data-dir", type=folder,
                   help="your own images instead: a folder with one sub-folder per class (optionally under train/ and "
                        "val/); size, channels, classes and normalisation are computed from its training images")


def data_source(args) -> None:
    """--data-dir DIR is the data set "imagefolder" read from DIR (in `args.dataset` / `args.data_root`)."""
    if getattr(args, "data_dir", None) is None:
        if hasattr(args, "dataset") and args.dataset is None:
            args.dataset = "fashion_mnist"
        return
    if args.dataset not in (None, "imagefolder"):
        raise ValueError(f"--data-dir reads your own images and --dataset {args.dataset} names another data set: "
                         "give one of them.")
    if args.data_root is not None:
        raise ValueError("--data-dir is the folder of your images, --data-root the folder of the named data sets: "
                         "give one of them.")
    args.dataset, args.data_root = "imagefolder", args.data_dir


def _fit_head_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fit-teacher-head", action="store_true",
                   help="a teacher trained on other classes (e.g. --teacher torchvision/resnet18.DEFAULT, 1000 ImageNet "
                        "classes): first fit a new classifier on its frozen features of the training images (saved "
                        "under the runs folder's fitted_teachers/ and reused)")


def _trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle checkpoint files fully (weights_only=False) when a safe load refuses them: "
                        "this can run code from the file, so only for files from a source you trust")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simkd-lite", description="SimKD, taught and reproduced: train teachers, "
                                     "distil students (vanilla, KD, FitNet, SimKD), evaluate, compare.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    demo = add("demo", "Teacher vs. vanilla, KD, FitNet and SimKD students of the same size and budget.")
    _common(demo)
    demo.add_argument("--out", type=folder, default="runs/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace the runs OUT holds; without it, runs made with the same settings are reused "
                           "(or continued, if interrupted) and runs with other settings are refused")
    demo.add_argument("--teacher", help="teacher checkpoint (default: the shipped quick-profile teacher), or torchvision "
                                        "weights in the torch hub cache: torchvision/resnet18.IMAGENET1K_V1")
    demo.add_argument("--teacher-model", help="architecture of an official checkpoint that lacks the name")
    demo.add_argument("--student", help="student architecture (default: the profile's)")
    demo.add_argument("--train-teacher", action="store_true", help="train the teacher from scratch instead")
    _fit_head_flag(demo)
    demo.add_argument("--together", action=argparse.BooleanOptionalAction, default=False,
                      help="train the four students together: one teacher forward per batch, the same batches, "
                           "each student's math unchanged (default: one after another)")
    demo.add_argument("--stack-students", action="store_true",
                      help="with --together: run the students' encoders as one batched network (torch.func.vmap, "
                           "grouped convolutions; the same math to float tolerance). Not yet timed on a GPU "
                           "against the default (one CUDA stream per student): see benchmarks/README.md")

    teacher = add("train-teacher", "Train a teacher with cross-entropy; writes OUT/last.pt and OUT/best.pt.")
    _common(teacher)
    teacher.add_argument("--model", help="architecture (default: the profile's teacher): a zoo name, torchvision/ARCH "
                                         "or timm/ARCH")
    _run_flags(teacher, "runs/teacher")

    distill = add("distill", "Train a student from a teacher checkpoint with one method.")
    _common(distill)
    distill.add_argument("--method", default="simkd", help="vanilla, kd, fitnet or simkd (default: %(default)s)")
    distill.add_argument("--teacher", help="teacher checkpoint, ours or official (default: the shipped one); a state_dict "
                                           "of torchvision's with --teacher-model torchvision/ARCH; or torchvision "
                                           "weights in the torch hub cache (never downloaded): torchvision/ARCH.WEIGHTS")
    distill.add_argument("--teacher-model", help="architecture of an official checkpoint that lacks the name")
    distill.add_argument("--student", help="student architecture (default: the profile's): a zoo name, torchvision/ARCH "
                                           "or timm/ARCH (e.g. torchvision/resnet18:stem=cifar; see models/external.py)")
    distill.add_argument("--factor", type=positive_int, help="SimKD projector bottleneck factor (default: the profile's, 2)")
    distill.add_argument("--train-teacher", action="store_true",
                         help="train the profile's teacher first (paper: 240 epochs, hours; reused once finished)")
    _fit_head_flag(distill)
    _run_flags(distill, "runs/distill")

    evaluate = add("eval", "Test top-1 of a checkpoint (a SimKDStudent file, ours or official) on a full test set.")
    evaluate.add_argument("checkpoint", help="a teacher or student checkpoint (ours or official), or a SimKD student.pt")
    _data_flags(evaluate)
    evaluate.add_argument("--model", help="architecture of an official checkpoint that lacks the name")
    evaluate.add_argument("--teacher", help="for an official SimKD student .pth: its teacher's checkpoint "
                                            "(the student predicts through the teacher's classifier)")
    evaluate.add_argument("--teacher-model", help="architecture of that teacher, if its path does not say")
    evaluate.add_argument("--device")
    _trust(evaluate)

    data = add("data", "List, locate or fetch datasets.")
    data.add_argument("action", choices=["list", "locate", "fetch"])
    data.add_argument("name", nargs="?", help="dataset name (for locate / fetch)")
    data.add_argument("--data-root", help=DATA_ROOT_HELP)
    data.add_argument("--quiet", action="store_true")

    add("profiles", "Print the table of recipes (quick and paper).")
    _reproduce_flags(add("reproduce", "The paper's table: every method x seed with the paper recipe, one resumable "
                                      "run folder each; writes OUT/table.md, table.csv, per_seed.csv and table.png "
                                      "beside the paper's numbers (best_top1 and last_top1, mean ± std)."))

    _export_flags(add("export", "Write a trained student as one ONNX or torch.export (.pt2) file that loads without "
                                "simkd_lite: SimKD's encoder + projector + teacher head, other methods' own network."))

    bench = add("bench", "Images/s of SimKD training (the distill code path) and of the deployed student, "
                         "against the official-style eager loop and evaluation.")
    bench.add_argument("--teacher", default="resnet32x4", help="a model name (random weights) or a checkpoint")
    bench.add_argument("--student", default="resnet8x4")
    bench.add_argument("--batch-size", type=positive_int, default=64)
    bench.add_argument("--steps", type=positive_int, default=20, help="timed steps per measurement (default: %(default)s)")
    bench.add_argument("--repeats", type=positive_int, default=1, help="alternate fast/official measurements, report medians")
    bench.add_argument("--image-size", type=positive_int, default=32)
    bench.add_argument("--in-channels", type=positive_int, default=3)
    bench.add_argument("--num-classes", type=positive_int, default=100)
    bench.add_argument("--device")
    bench.add_argument("--threads", type=positive_int)
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.add_argument("--onnxruntime", action=argparse.BooleanOptionalAction, default=True,
                       help="also time the deployed student in onnxruntime on the CPU, beside PyTorch (same batch, "
                            "same threads; needs pip install 'simkd-lite[export]', else skipped with a note)")
    _trust(bench)
    _speedups(bench)
    return parser


def summary_of(result: dict) -> dict:
    """The last / best / best-epoch part of a job's result, for `training.metrics.describe`."""
    return {"last_top1": result["top1"], "best_top1": result.get("best_top1"), "best_epoch": result.get("best_epoch")}


def _log(args):
    return (lambda message: None) if getattr(args, "quiet", False) else print


def cmd_demo(args) -> None:
    from simkd_lite.experiments.demo import results_table, run_demo

    results = run_demo(args.dataset, args.profile, args.out, data_root=args.data_root, seed=args.seed,
                       device=args.device, epochs=args.epochs, teacher=args.teacher, teacher_model=args.teacher_model,
                       train_new_teacher=args.train_teacher, student_model=args.student, log=_log(args),
                       together=args.together, stack_students=args.stack_students,
                       progress=False if args.quiet else None, overwrite=args.overwrite,
                       trust=args.trust_checkpoint, speedups=_speedup_overrides(args), fit_head=args.fit_teacher_head)
    if args.quiet:  # the table is the result: print it even without the progress lines
        print(results_table(results))
    print(f"results: {Path(args.out) / 'results.json'}; figures: accuracy.png, curves.png, features.png")


def _speedup_overrides(args) -> dict:
    """The speed-up (and --tensorboard) flags given on the command line: TrainConfig fields."""
    return {k: getattr(args, k) for k in (*SPEEDUPS, "tensorboard") if getattr(args, k, None) is not None}


def _experiment(args, runs: Path = Path("runs")):
    """The run description for this call: the profile's recipe plus the flags that override it."""
    from simkd_lite.experiments import Experiment

    overrides = {**_speedup_overrides(args),
                 **{k: getattr(args, k) for k in ("batch_size", "lr") if getattr(args, k, None) is not None}}
    return Experiment.resolve(args.dataset, args.profile, seed=args.seed, epochs=args.epochs,
                              student=getattr(args, "student", None), data_root=args.data_root, device=args.device,
                              runs=runs, **overrides), overrides


def cmd_train_teacher(args) -> None:
    from simkd_lite.experiments import train_teacher
    from simkd_lite.experiments.commands import check_resumable

    if args.resume:  # the CLI's --resume means "continue the run in OUT": refuse a folder without one
        check_resumable(args.out)
    exp, overrides = _experiment(args)
    model = args.model or exp.teacher_model
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    run = train_teacher(exp, args.out, model=model, resume=args.resume, overwrite=args.overwrite,
                        log=_log(args), progress=False if args.quiet else None, **overrides)
    print(f"{model}: test top-1 {describe(summary_of(run.summary()))} after {len(run.history)} epochs -> "
          f"{args.out}/best.pt (distil from it, as the official scripts do), {args.out}/last.pt")
    print(f"note: {BEST_ON_TEST_NOTE}")


def cmd_distill(args) -> None:
    from simkd_lite.experiments import get_teacher, prepare_data, train_student
    from simkd_lite.experiments.commands import check_resumable, needs_teacher

    if args.resume:
        check_resumable(args.out)
    exp, _ = _experiment(args, runs=Path(args.out).parent)  # the teacher-output cache lives next to the run
    options = exp.options_for(args.method, factor=args.factor)  # a misspelt method or option fails here
    if args.train_teacher and args.teacher:
        raise ValueError("--teacher and --train-teacher contradict each other: choose one.")
    source = "train" if args.train_teacher else args.teacher
    teacher = get_teacher(exp, source, teacher_model=args.teacher_model, trust=args.trust_checkpoint,
                          log=_log(args), fit_head=args.fit_teacher_head) if needs_teacher(args.method) else None
    data = prepare_data(exp, teacher)
    _log(args)(f"distill: {args.method} | student {exp.student_model} | teacher {getattr(teacher, 'source', None)} | "
               f"{args.dataset} | {exp.student_train}")
    run = train_student(args.method, data, teacher, out=args.out, options=options, resume=args.resume,
                        overwrite=args.overwrite, log=_log(args), progress=False if args.quiet else None)
    files = "".join(f", {f}" for f in run.files)
    print(f"{args.method} {exp.student_model}: test top-1 {describe(summary_of(run.summary()))} in {run.seconds:.0f}s "
          f"-> {run.out}/last.pt, {run.out}/best.pt{files}")
    print(f"note: {BEST_ON_TEST_NOTE}")


def cmd_eval(args) -> None:
    from simkd_lite.experiments import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, args.model, args.device,
                                 teacher=args.teacher, teacher_model=args.teacher_model, trust=args.trust_checkpoint)
    if result.get("warning"):  # a number the file cannot have been trained for: refuse it (loading.implausible)
        raise ValueError(result["warning"])
    print(json.dumps(result, indent=2))


def cmd_data(args) -> None:
    from simkd_lite.experiments.commands import fetch_dataset, list_datasets, locate_dataset

    if args.action == "list":
        for name in list_datasets():
            found = locate_dataset(name, args.data_root)
            print(f"{name:14} {'present' if found['present'] else 'missing':8} {found['path']}")
        return
    if not args.name:
        raise ValueError(f"`simkd-lite data {args.action}` needs a dataset name, e.g. fashion_mnist.")
    if args.action == "locate":
        print(json.dumps(locate_dataset(args.name, args.data_root), indent=2))
    else:
        path = fetch_dataset(args.name, args.data_root)
        if not args.quiet:
            print(f"{args.name} is ready in {path}")


def cmd_profiles(args) -> None:
    from simkd_lite.experiments.profiles import profile_table

    print(profile_table())


def cmd_export(args) -> None:
    from simkd_lite.experiments import export_student

    path = export_student(args.checkpoint, args.format, args.out, opset=args.opset, image_size=args.image_size,
                          trust=args.trust_checkpoint)
    print(f"wrote {path}: input `input` = the normalised image (N, C, H, W) float32, output `logits`; mean, std and "
          "class names are in its metadata")


def cmd_bench(args) -> None:
    from simkd_lite.experiments.bench import onnxruntime_line, run_bench

    if args.json:  # fail before minutes of measuring, not after
        _check_writable_file(Path(args.json), "--json")
    from simkd_lite.experiments.bench_graphed import graph_table, run_graph_bench
    from simkd_lite.experiments.commands import bench_teacher, set_tf32, write_text

    teacher = bench_teacher(args.teacher, trust=args.trust_checkpoint)  # a checkpoint: its architecture and weights

    set_tf32(bool(args.tf32))  # time what training runs: true fp32 unless --tf32 (as TrainConfig.tf32)

    flags = {k: getattr(args, k) for k in SPEEDUPS if k not in ("device_data", "cuda_graph", "tf32")
             and getattr(args, k) is not None}
    shape = dict(batch_size=args.batch_size, steps=args.steps, device=args.device, image_size=args.image_size,
                 in_channels=args.in_channels, num_classes=args.num_classes)
    result = run_bench(teacher, args.student, repeats=args.repeats, onnxruntime=args.onnxruntime, **shape, **flags)
    result["tf32"] = bool(args.tf32)
    # the new paths, side by side with the official-style loop measured above
    result["graphed"] = run_graph_bench(teacher, args.student, repeats=args.repeats, amp=bool(args.amp),
                                        cuda_graph=args.cuda_graph is not False, **shape)
    text = json.dumps(result, indent=2)
    if args.json:
        write_text(args.json, text + "\n")
    print(text)
    print(graph_table(result))
    print(onnxruntime_line(result))


def _check_writable_file(path: Path, flag: str) -> None:
    """A one-line error now if `path` cannot become a file (a folder there, a file on the way, read-only)."""
    from simkd_lite.errors import SimKDLiteError, first_file_on_the_way, writing

    if path.is_dir():
        raise SimKDLiteError(f"{flag} {path} is a folder, not a file")
    blocker = first_file_on_the_way(path.parent)
    if blocker is not None:
        raise SimKDLiteError(f"{flag} {path}: {blocker} is a file, not a folder")
    with writing(path.parent, "writing to"):
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()


def _export_flags(export: argparse.ArgumentParser) -> None:
    export.add_argument("checkpoint", help="a student checkpoint: a SimKD student.pt, or a distill run's best.pt / last.pt")
    export.add_argument("--format", choices=["onnx", "pt2"], default="onnx",
                        help="onnx (needs pip install 'simkd-lite[export]') or pt2 (torch.export) (default: %(default)s)")
    export.add_argument("--out", help="the file to write (default: CHECKPOINT with the format's suffix)")
    export.add_argument("--opset", type=positive_int, help="ONNX opset (default: 17)")
    export.add_argument("--image-size", type=positive_int,
                        help="input height = width, only for a checkpoint that records no data set")
    _trust(export)


def _reproduce_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="cifar100", help="default: %(default)s")
    p.add_argument("--profile", default="paper", help="the recipe (default: %(default)s; see `simkd-lite profiles`)")
    p.add_argument("--teacher", help="teacher checkpoint, ours or official (e.g. resnet32x4_best.pth)")
    p.add_argument("--teacher-model", help="architecture of an official checkpoint whose path does not name it")
    p.add_argument("--train-teacher", action="store_true",
                   help="no checkpoint: train the profile's teacher first (paper: 240 epochs, hours)")
    p.add_argument("--student", help="student architecture (default: the profile's, resnet8x4)")
    p.add_argument("--methods", nargs="+", default=["vanilla", "kd", "fitnet", "simkd"],
                   help="default: %(default)s")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="default: %(default)s")
    p.add_argument("--epochs", type=positive_int, help="override the profile's epochs (the paper: 240)")
    p.add_argument("--batch-size", type=positive_int, help="the global batch (default: the profile's, 64)")
    p.add_argument("--lr", type=positive_float, help="override the profile's learning rate")
    p.add_argument("--together", action="store_true",
                   help="each seed's students in one joint run (one teacher forward per batch)")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (recorded: it changes the rounding)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--out", type=folder, default="runs/reproduce", help="output folder (default: %(default)s)")
    _trust(p)
    _speedups(p)


def cmd_reproduce(args) -> None:
    from simkd_lite.experiments.reproduction import Plan, reproduce

    train = {k: getattr(args, k) for k in (*SPEEDUPS, "batch_size", "lr") if getattr(args, k, None) is not None}
    plan = Plan(dataset=args.dataset, teacher=args.teacher, teacher_model=args.teacher_model,
                train_teacher=args.train_teacher, student=args.student, methods=args.methods, seeds=args.seeds,
                epochs=args.epochs, profile=args.profile, data_root=args.data_root, device=args.device,
                threads=args.threads, together=args.together, trust=args.trust_checkpoint, train=train)
    result = reproduce(args.out, plan, log=_log(args), progress=False if args.quiet else None)
    if args.quiet:  # the table is the result: print it even without the progress lines
        print(result.markdown)
    print("wrote " + ", ".join(str(f) for f in result.files))


COMMANDS = {"demo": cmd_demo, "reproduce": cmd_reproduce, "train-teacher": cmd_train_teacher, "distill": cmd_distill, "eval": cmd_eval,
            "data": cmd_data, "profiles": cmd_profiles,
            "export": cmd_export, "bench": cmd_bench}


def set_threads(requested: int) -> int:
    """torch's intra-op threads, capped at this machine's cores (with one warning): extra threads only
    wait on each other (measured: 64 threads on 2 cores made a 0.1 s epoch take 44 s)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested > cores:
        print(f"simkd-lite: warning: --threads {requested} is more than the {cores} CPU cores here; using {cores}",
              file=sys.stderr)
        requested = cores
    torch.set_num_threads(requested)
    return requested


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        set_threads(args.threads)
    from simkd_lite.experiments.commands import start_process

    if not start_process(getattr(args, "device", None)):  # torchrun -m simkd_lite ...: one process per rank
        sys.stdout = open(os.devnull, "w")  # rank 0 alone reports
    try:
        data_source(args)
        COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # our errors (SimKDLiteError and others) are written for people
        print(f"simkd-lite {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no (a full disk, permissions...): one line naming the path
        from simkd_lite.errors import describe_os_error

        message = describe_os_error(err, err.filename, "using") if err.filename else (err.strerror or str(err))
        print(f"simkd-lite {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last finished epoch", file=sys.stderr)
        return 130
    return 0
