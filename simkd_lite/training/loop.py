"""The one training loop: teachers, every distiller, one student or several together; checkpoints that
never lose work.

    fit(distiller, train_set, test_set, config, out_dir)  ->  history (one dict per epoch)
    fit({"simkd": simkd, "kd": kd}, train_set, test_set, config, {"simkd": out_a, "kd": out_b})
        ->  {name: history}: the same batches and ONE teacher forward per batch for all of them

- Every step goes through one step object (`graphed.SharedStep`: eager, replayed from a CUDA graph,
  or the students stacked into one batched network), whose body is `step.StepMember.step`.

- The loop only knows the `Distiller` interface: `forward_train` for the losses, `forward` for the
  prediction head it evaluates (SimKD: projector + teacher head, never the teacher network).
- `OUT/last.pt` is written atomically after every epoch with everything a resume needs (weights,
  optimizer, scheduler, RNG states, epoch, history); `OUT/best.pt` when the test top-1 improves,
  just before last.pt, so best.pt never lags the record in last.pt.
  Both use the official layout: `model` is the network's state_dict, `epoch` the completed epochs;
  both say what they are: `kind` (teacher / student), `method`, `model_name`, `dataset`, and what
  the method needs to predict (SimKD: projector, teacher head, target size; `Distiller.checkpoint_entries`).
- The output folder is claimed first (run_folder.py): locked, refused if it holds another run,
  resumed only with the same settings; `OUT/config.json` describes the run.
- `OUT/metrics.csv` (one row per epoch) is rewritten from the history after every epoch, so a resumed
  run continues it without duplicates; `tensorboard=True` also logs to OUT/tensorboard.
- Without augmentation the training set is turned into tensors once, and teacher outputs can be
  cached once, so teacher-driven students then cost only student compute (`batches.py`).
- Several students: each has its own optimizer, schedule, BatchNorm statistics, folder and checkpoints,
  and is built after `seed_everything(seed)` as its own run would be; a run's batches depend only on
  (seed, epoch). So each ends bitwise as its separate run on CPU (`tests/test_together.py`), and a
  killed joint run resumes each student from its own last.pt. DDP trains one student only.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.distillers import Distiller, FrozenTeacher, TeacherOutputs
from simkd_lite.training import distributed as ddp
from simkd_lite.training.batches import make_batches, materialize
from simkd_lite.training.device_data import GpuAugment
from simkd_lite.training.graphed import SharedStep, graph_unsupported, to_device
from simkd_lite.training.metrics import TensorBoardLog, summarize, write_metrics_csv
from simkd_lite.training.preflight import check_before_claim
from simkd_lite.training.run_folder import claim_run_folder, plain
from simkd_lite.training.runtime import (execution_record, restore_rng_state, rng_state, seed_everything,
                                       select_device, set_tf32)
from simkd_lite.training.step import NonFiniteLoss
from simkd_lite.training.teacher_prep import maybe_compile, prepare_teacher
from simkd_lite.errors import SimKDLiteError


class TrainingDivergedError(SimKDLiteError, RuntimeError):
    """The loss became NaN or infinite; the message names where and the last good checkpoint."""


MAX_EPOCHS = 100_000


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as `OUT/config.json` and inside each checkpoint.

    Checked when built (also by `dataclasses.replace`): a bad value raises a ValueError naming it.
    """

    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # "sgd" (momentum) or "adam"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"  # "multistep" (per epoch), "cosine" or "onecycle" (per step)
    milestones: tuple[int, ...] = (150, 180, 210)
    gamma: float = 0.1
    augment: bool = True  # False: the train set is fixed, so it (and teacher outputs) can be cached
    cache_teacher: bool = False
    seed: int = 0
    device: str | None = None
    eval_batch_size: int = 128  # on CPU, batches of 128 scored 2x faster than 1000 (cache-friendly)
    eval_every: int = 1  # test every k epochs (and always after the last one); 0: only after the last
    # Score only the first `eval_subset` test images at the intermediate evaluations (cheap per-epoch
    # curves); the last epoch is always scored on the full test set. None: the full set every time.
    eval_subset: int | None = None
    num_workers: int = 0
    tensorboard: bool = False  # also log every epoch to OUT/tensorboard (optional `tensorboard` package)
    # Speed-ups, each switchable. All but `amp` change results only within float tolerance
    # (tests/test_fast.py); `amp` (bf16) changes them beyond it, so no recipe turns it on by default.
    fold_bn: bool = True  # the frozen teacher with BatchNorm folded into its convs
    channels_last: bool = True  # NHWC memory format for teacher, student and inputs
    compile_teacher: bool = False  # torch.compile the teacher forward (one-off cost, logged)
    compile_student: bool = False  # torch.compile the student's training step
    amp: bool = False  # bf16 autocast on CUDA only: changes the numbers (on this project's CPUs also ~9x slower)
    tf32: bool = False  # CUDA: TF32 matmuls and convolutions (faster, changes the numbers); False = true fp32
    device_data: bool = True  # augmentation: uint8 data on the device (GPU or CPU), crop/flip/normalise in batches
    cuda_graph: bool = False  # CUDA only: replay each full-batch step from a CUDA graph (training/graphed.py)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.epochs > MAX_EPOCHS:  # (a typo such as 10**23 would otherwise "train" until killed)
            raise ValueError(f"epochs must be at most {MAX_EPOCHS:,} (the paper's recipe is 240), got {self.epochs}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.eval_every < 0 or self.num_workers < 0:
            raise ValueError(f"eval_every and num_workers must be >= 0, got {self.eval_every}, {self.num_workers}")


# ---------------------------------------------------------------------------- optimisation
def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"Unknown optimizer {config.optimizer!r}: use 'sgd' or 'adam'.")


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Returns (scheduler, steps_per_call): 'epoch' schedulers step once an epoch, others every batch."""
    if config.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma), "epoch"
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total), "step"
    if config.schedule == "onecycle":
        if total < 5:  # its warm-up (a quarter of the steps) must span at least one step
            raise ValueError(f"The onecycle schedule needs at least 5 training steps; this run has {total} "
                             f"({config.epochs} epoch(s) of {steps_per_epoch} batch(es)): train longer, use a "
                             f"smaller batch size, or another schedule.")
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total, pct_start=0.25), "step"
    raise ValueError(f"Unknown schedule {config.schedule!r}: use 'multistep', 'cosine' or 'onecycle'.")


# ------------------------------------------------------------------------------ evaluation
@torch.inference_mode()
def predict(model: Callable[[Tensor], Tensor], images: Tensor, device: torch.device, batch_size: int = 128) -> Tensor:
    """Logits (N, num_classes) for in-memory images, in eval mode, batch by batch."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    logits = torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(images), batch_size)])
    if was_training:
        model.train()
    return logits


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


# ------------------------------------------------------------------------------ checkpoints
def _checkpoint(distiller: Distiller, optimizer, scheduler, epoch: int, best_acc: float, best_epoch: int | None,
                history: list, config: TrainConfig, meta: dict) -> dict:
    """Official layout (`model`, `epoch`, `best_acc`; `proj` for SimKD) plus identity and what a resume needs.

    Identity: `kind` ("teacher" / "student"), `method`, `model_name`, `dataset` (name, classes,
    channels, image size, ...), and the method's own entries for prediction (SimKD: `proj`, `simkd`).
    """
    extras = _own_storage({k: v for k, v in distiller.state_dict().items() if not k.startswith("student.")})
    state = {"model": _own_storage(distiller.student.state_dict()), "epoch": epoch, "best_acc": best_acc, "best_epoch": best_epoch,
             "kind": "student" if distiller.needs_teacher else "teacher", **meta,
             "method": distiller.method, "extras": extras, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "history": history, "config": asdict(config)}
    state.update(distiller.checkpoint_entries())
    return state


def _own_storage(state: dict) -> dict:
    """`state` with every tensor that is a view into a larger storage copied out: torch.save writes a
    view's whole storage (students trained stacked, `training/stacked.py`, are slices of one tensor)."""
    return {k: v.clone() if isinstance(v, Tensor) and v.untyped_storage().nbytes() > v.numel() * v.element_size()
            else v for k, v in state.items()}


def _restore(distiller: Distiller, optimizer, scheduler, checkpoint: dict) -> None:
    """Weights, optimizer and schedule from a checkpoint (the RNG states: `fit` restores them once)."""
    weights = {f"student.{k}": v for k, v in checkpoint["model"].items()} | checkpoint["extras"]
    distiller.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])


# -------------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class FitOptions:
    """`fit`'s keyword options besides the run folder's.

    progress: tqdm bars (None: only on a terminal or in a notebook).
    test_tensors, train_tensors, teacher_cache: data several runs prepared once and share.
    label: names a single student in bars and logs (default: its method; joint runs use their names).
    gpu_augment: the batched on-device augmentation used when `config.device_data` (device_data.py);
        datasets without uint8 arrays (or --no-device-data) go through a DataLoader, pinned on CUDA.
    stack: several students of one architecture run as one batched network (`training/stacked.py`).
    device: the device, resolved once by the caller (None: `select_device(config.device)` here).
    """

    progress: bool | None = None
    test_tensors: tuple[Tensor, Tensor] | None = None
    train_tensors: tuple[Tensor, Tensor] | None = None
    teacher_cache: TeacherOutputs | None = None
    label: str | None = None
    gpu_augment: GpuAugment | None = None
    stack: bool = False
    device: torch.device | None = None


@dataclass
class _Student:
    """One student of a run while it trains: its folder, optimizer, schedule and record so far."""

    name: str
    distiller: Distiller
    out: Path | None  # as given until `_claim` makes it a Path (an empty string is refused there)
    meta: dict
    forward: Callable | None = None  # what computes its losses: forward_train, compiled or DDP-wrapped
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    unit: str = "epoch"  # the scheduler steps once an "epoch" or every "step"
    start_epoch: int = 0
    best_acc: float = 0.0
    best_epoch: int | None = None
    history: list = field(default_factory=list)
    board: TensorBoardLog | None = None

    @property
    def last_path(self) -> Path | None:
        return self.out / "last.pt" if self.out is not None else None

    def last_good(self, epoch: int) -> str:
        """Where the last finished epoch is saved, for error messages."""
        path = self.last_path
        return f"{path} (after epoch {epoch})" if path is not None and path.exists() else "none yet"


@dataclass(frozen=True)
class _Context:
    """What every epoch of a run reads: the recipe, the device, the test set, the log."""

    config: TrainConfig
    device: torch.device
    memory_format: torch.memory_format
    test_x: Tensor
    test_y: Tensor
    say: Callable[[str], None]
    main_process: bool
    progress: bool | None
    joint: bool


def fit(distiller: Distiller | Mapping[str, Distiller], train_set: Dataset, test_set: Dataset, config: TrainConfig,
        out_dir: str | Path | Mapping[str, str | Path] | None = None, *, resume: bool = False,
        overwrite: bool = False, meta: dict | None = None, run: dict | None = None,
        log: Callable[[str], None] | None = print, **options) -> list[dict] | dict[str, list[dict]]:
    """Train `distiller` for `config.epochs` epochs; returns the per-epoch history.

    Several students at once: `distiller` = {name: Distiller} (one teacher network shared by all),
    and `out_dir`, `meta`, `run` = {name: ...}; returns {name: history}. They see the same batches and
    one teacher forward per batch, and each has its own optimizer, schedule, folder and checkpoints,
    so each ends as its own run would (`tests/test_together.py`). A single student is the case of one.

    `meta` is stored in every checkpoint (e.g. `model_name`, `dataset`). `out_dir` must not hold
    another run: with `resume=True` an existing `OUT/last.pt` with the same settings is continued
    exactly (a finished one is reused: nothing trains; in a joint run each student continues from
    its own last.pt); `overwrite=True` replaces it; without either it is refused. `run` describes the
    run in `OUT/config.json` (job, models, method options...); the teacher's weights digest and the
    training recipe are added to it. Other keyword options: `FitOptions`.
    Every record holds the epoch's `test_top1` (None on epochs that `eval_every` skips); the best
    one is saved as OUT/best.pt and `training.metrics.summarize(history)` reports last and best.
    """
    opts = FitOptions(**options)
    single = not isinstance(distiller, Mapping)
    distillers = {opts.label or distiller.method: distiller} if single else dict(distiller)
    if not distillers:
        raise ValueError("fit needs at least one distiller")
    if len(distillers) > 1 and ddp.launched_by_torchrun():  # refused before any folder is claimed
        raise ValueError("Training several students together runs on one device; launch it without torchrun "
                         "(or train them one after another).")

    def per_student(value) -> dict:
        return {name: value for name in distillers} if single else dict(value or {})

    outs, metas, runs = per_student(out_dir), per_student(meta), per_student(run)
    students = [_Student(name, d, outs.get(name), dict(metas.get(name) or {})) for name, d in distillers.items()]
    for student in students:  # check everything, then touch anything (preflight.py)
        check_before_claim(config, len(train_set), student.out)
    with contextlib.ExitStack() as claims:
        resuming = [_claim(claims, s, runs.get(s.name), (len(train_set), len(test_set)), config,
                           resume=resume, overwrite=overwrite, say=_say(log)) for s in students]
        histories = _train(students, resuming, train_set, test_set, config, opts, log)
    return histories[students[0].name] if single else histories


def _claim(claims: contextlib.ExitStack, student: _Student, run: dict | None, sizes: tuple[int, int],
           config: TrainConfig, *, resume: bool, overwrite: bool, say) -> bool:
    """Claim the student's folder (`run_folder.claim_run_folder`, held until `claims` closes); True: resume."""
    given, student.out = student.out, Path(student.out) if student.out is not None else None  # "" is refused below
    if given is None or os.environ.get("RANK", "0") != "0":  # rank 0 alone owns the folder (DDP)
        return resume
    distiller = student.distiller
    run = dict(run if run is not None else {"method": distiller.method, **student.meta})
    if distiller.teacher is not None:  # the digest of the weights as given (not of a BN-folded copy)
        teacher = distiller.teacher
        teacher.sha256 = getattr(teacher, "sha256", None) or ddp.parameters_digest(teacher.model)
        run["teacher_sha256"] = teacher.sha256
    run = plain({**run, **execution_record(config), "train_images": sizes[0], "test_images": sizes[1],
                 "train": asdict(config)})
    student.meta["run"] = run
    return claims.enter_context(claim_run_folder(given, run, resume=resume, overwrite=overwrite, log=say))


def _train(students: list[_Student], resuming: list[bool], train_set: Dataset, test_set: Dataset,
           config: TrainConfig, opts: FitOptions, log) -> dict[str, list[dict]]:
    """The loop of `fit`, once the folders are claimed: set up, then epoch after epoch."""
    joint = len(students) > 1
    device = opts.device if opts.device is not None else select_device(config.device)
    if ddp.launched_by_torchrun():
        device = ddp.init_distributed(device)
    set_tf32(config.tf32)  # the paper's fp32 unless the config opts in
    main_process = ddp.is_main_process()  # rank 0 alone logs, shows progress and writes checkpoints
    say = _say(log if main_process else None)
    seed_everything(config.seed)
    for student in students:
        student.distiller.to(device)
    teacher = _share_teacher([s.distiller for s in students], config)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    for student in students:
        student.distiller.to(memory_format=memory_format)
    test_x, test_y = opts.test_tensors if opts.test_tensors is not None else materialize(test_set)
    ctx = _Context(config, device, memory_format, test_x, test_y, say, main_process,
                   opts.progress if main_process else False, joint)
    shard = replace(config, batch_size=ddp.batch_size_per_process(config.batch_size))  # config.batch_size is global
    batches = make_batches(_feeder([s.distiller for s in students]), train_set, shard, device, opts.gpu_augment,
                           opts.train_tensors, opts.teacher_cache, say)
    if ddp.is_distributed():
        say(f"DDP: world size {ddp.world_size()} ({torch.distributed.get_backend()}), global batch size "
            f"{config.batch_size}, {shard.batch_size} per process, {len(batches)} steps per epoch")
    for student, resumes in zip(students, resuming):
        _prepare(student, ctx, len(batches), resume=resumes)
    first = min(s.start_epoch for s in students)
    if first > 0:  # every RNG as after that epoch of the uninterrupted run (the students that stopped there)
        restore_rng_state(read_checkpoint(next(s for s in students if s.start_epoch == first).last_path)["rng"])
    step = _make_step(students, teacher, ctx, stack=opts.stack)

    label = "+".join(s.name for s in students)
    for epoch in tqdm(range(first, config.epochs), desc=label, disable=_quiet(ctx.progress), initial=first,
                      total=config.epochs, unit="epoch"):
        started = time.perf_counter()
        active = [s for s in students if s.start_epoch <= epoch]  # a resumed joint run: the lagging ones first
        epoch_step = step if len(active) == len(students) else _make_step(active, teacher, ctx, lagging=True)
        lrs = [s.optimizer.param_groups[0]["lr"] for s in active]  # what this epoch trains with (its first step's)
        metrics = _train_epoch(epoch_step, active, batches.epoch(epoch), len(batches), epoch, ctx)
        train_seconds = time.perf_counter() - started
        compiled = getattr(teacher.model, "compile_seconds", None) if teacher is not None else None
        if compiled is not None and epoch == first:
            say(f"teacher compiled in {compiled:.1f}s (one-off cost, included in epoch {epoch + 1})")
        for student, sums, lr in zip(active, metrics, lrs):
            _end_epoch(student, epoch, sums, lr, train_seconds, ctx)
        ddp.barrier()
    _finish(students, step, ctx)
    return {s.name: s.history for s in students}


def _share_teacher(distillers: list[Distiller], config: TrainConfig) -> FrozenTeacher | None:
    """One frozen teacher (prepared as `config` says: BN folding, channels_last, compile) for every
    distiller that has one; they must all have the same network. None: no distiller has a teacher."""
    with_teacher = [d for d in distillers if d.teacher is not None]
    if not with_teacher:
        return None
    if len({id(d.teacher.model) for d in with_teacher}) > 1:
        raise ValueError("fit: the distillers of a joint run must share one teacher network (pass the same "
                         "model to each).")
    given = with_teacher[0].teacher
    teacher = given
    if config.fold_bn or config.channels_last or config.compile_teacher:
        teacher = FrozenTeacher(prepare_teacher(given.model, fold_bn=config.fold_bn,
                                                channels_last=config.channels_last, compile=config.compile_teacher))
        teacher.sha256 = getattr(given, "sha256", None)  # a later fit still names the given weights
    for distiller in with_teacher:
        distiller.teacher = teacher
    return teacher


def _feeder(distillers: list[Distiller]) -> Distiller:
    """The distiller whose needs decide what the batches carry: a teacher hint map too when one asks."""
    return next((d for d in distillers if d.teacher_hint_layer is not None),
                next((d for d in distillers if d.teacher is not None), distillers[0]))


def _prepare(student: _Student, ctx: _Context, steps_per_epoch: int, *, resume: bool) -> None:
    """The student's forward, optimizer and schedule; with `resume`, its state from OUT/last.pt."""
    distiller, config = student.distiller, ctx.config
    student.forward = maybe_compile(distiller.forward_train, config.compile_student)
    if ddp.is_distributed():
        student.forward = DistributedDataParallel(ddp.TrainStep(distiller), device_ids=[ctx.device.index]
                                                  if ctx.device.type == "cuda" else None)
    student.optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], config)
    student.scheduler, student.unit = make_scheduler(student.optimizer, config, steps_per_epoch)
    if resume and student.last_path is not None and student.last_path.exists():
        checkpoint = read_checkpoint(student.last_path)
        _restore(distiller, student.optimizer, student.scheduler, checkpoint)
        student.start_epoch, student.best_acc = checkpoint["epoch"], checkpoint["best_acc"]
        student.history = checkpoint["history"]
        student.best_epoch = checkpoint.get("best_epoch", summarize(student.history)["best_epoch"])  # older files
        if student.start_epoch < config.epochs:  # (a finished run is reused: run_folder said so)
            ctx.say(f"{_who(student, ctx)}resuming from {student.last_path} after epoch {student.start_epoch}")
    if config.tensorboard and student.out is not None and ctx.main_process:
        student.board = TensorBoardLog(student.out / "tensorboard", student.start_epoch)


def _make_step(students: list[_Student], teacher, ctx: _Context, *, stack: bool = False,
               lagging: bool = False) -> SharedStep:
    """The step object: CUDA graph where `config.cuda_graph` and the run allow it, else eager.

    `lagging`: the students a resumed joint run replays an epoch for, alone (eager, unstacked).
    """
    config, device = ctx.config, ctx.device
    use_graph = config.cuda_graph and device.type == "cuda" and not lagging
    if use_graph:
        reason = graph_unsupported(config, device, distributed=ddp.is_distributed())
        if reason is not None:
            ctx.say(f"--cuda-graph: off for this run ({reason}); training eagerly")
            use_graph = False
        else:  # as the official code: cuDNN's algorithms picked once, in the warm-up
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic
    return SharedStep([s.distiller for s in students], [s.optimizer for s in students], teacher=teacher,
                      device=device, cuda_graph=use_graph, amp=config.amp, stack=stack and not lagging,
                      forwards=[s.forward for s in students])


def _train_epoch(step: SharedStep, students: list[_Student], batches, steps: int, epoch: int,
                 ctx: _Context) -> list[tuple[dict[str, float], int, int]]:
    """One epoch of steps; per student (loss sums over samples, correct predictions, samples seen)."""
    for student in students:
        student.distiller.train()
    bar = tqdm(batches, total=steps, leave=False, disable=_quiet(ctx.progress), unit="batch")
    for index, batch in enumerate(bar):
        try:
            step(*to_device(batch, ctx.device, ctx.memory_format))
        except NonFiniteLoss as err:
            student = students[err.member]
            raise TrainingDivergedError(
                f"{_who(student, ctx)}The loss became {err.value} at epoch {epoch + 1}, step {index + 1}; training "
                f"stopped. Last good checkpoint: {student.last_good(epoch)}. Try a lower --lr.") from None
        for student in students:
            if student.unit == "step":
                student.scheduler.step()
    metrics = step.take_metrics()
    for student, (sums, _, _) in zip(students, metrics):
        if not all(math.isfinite(v) for v in sums.values()):  # a replayed graph checks once per epoch
            raise TrainingDivergedError(f"{_who(student, ctx)}The loss became non-finite during epoch {epoch + 1} "
                                        f"(checked once per epoch with --cuda-graph); training stopped. Last good "
                                        f"checkpoint: {student.last_good(epoch)}. Try a lower --lr.")
        if student.unit == "epoch":
            student.scheduler.step()
        ddp.sync_buffers(student.distiller)  # every rank evaluates and saves rank 0's BN statistics
    return metrics


def _end_epoch(student: _Student, epoch: int, metrics: tuple[dict[str, float], int, int], lr: float,
               train_seconds: float, ctx: _Context) -> None:
    """The end of a student's epoch, written once: evaluate, record, save best/last, metrics.csv, log."""
    config, (test_x, test_y) = ctx.config, (ctx.test_x, ctx.test_y)
    sums, correct, seen = metrics
    evaluated = time.perf_counter()
    last_epoch = epoch + 1 == config.epochs
    evaluate_now = last_epoch or (config.eval_every > 0 and (epoch + 1) % config.eval_every == 0)
    # intermediate scores may use the first `eval_subset` test images; the last always uses all of them
    scored = len(test_y) if last_epoch or not config.eval_subset else min(config.eval_subset, len(test_y))
    test_acc = top1(predict(student.distiller, test_x[:scored], ctx.device, config.eval_batch_size),
                    test_y[:scored]) if evaluate_now else None
    record = {"epoch": epoch + 1, "lr": lr,
              **{f"loss_{k}": v / seen for k, v in sums.items()},
              "train_top1": 100.0 * correct / seen, "test_top1": test_acc,
              "test_images": scored if evaluate_now else 0,
              # the epoch's training time (shared by the students of a joint run) + this student's test pass
              "seconds": train_seconds + time.perf_counter() - evaluated}
    student.history.append(record)
    # only whole-test-set scores compete for best (an `eval_subset` score is another test set)
    improved = test_acc is not None and scored == len(test_y) and (student.best_epoch is None
                                                                   or test_acc > student.best_acc)
    if improved:
        student.best_acc, student.best_epoch = test_acc, epoch + 1
    if student.out is not None and ctx.main_process:
        _save(student, epoch, improved, config)
        if student.board is not None:
            student.board.log(record)
    losses_text = " ".join(f"{k[5:]} {v:.4f}" for k, v in record.items() if k.startswith("loss_"))
    ctx.say(f"[{student.name}] epoch {epoch + 1}/{config.epochs}  {losses_text}  train {record['train_top1']:.2f}%  "
            + (f"test {test_acc:.2f}% ({scored} images)  " if test_acc is not None else "")
            + f"{record['seconds']:.1f}s")


def _save(student: _Student, epoch: int, improved: bool, config: TrainConfig) -> None:
    """OUT/best.pt (when improved) then OUT/last.pt, then OUT/metrics.csv from the history."""
    state = _checkpoint(student.distiller, student.optimizer, student.scheduler, epoch + 1, student.best_acc,
                        student.best_epoch, student.history, config, student.meta)
    try:
        if improved:  # best.pt first: a crash in between leaves it ahead of last.pt, never behind
            atomic_save(state, student.out / "best.pt")
        atomic_save(state, student.last_path)
        write_metrics_csv(student.history, student.out / "metrics.csv")  # after last.pt: a resume rewrites it
    except SimKDLiteError as err:  # e.g. a full disk: the previous files are intact
        kept = (f"{student.last_path} (after epoch {epoch}) is intact" if student.last_path.exists()
                else "none was written yet")
        raise SimKDLiteError(f"{err}; the last good checkpoint {kept}: fix that, then rerun with --resume") from err


def _finish(students: list[_Student], step: SharedStep, ctx: _Context) -> None:
    """After the last epoch: close the logs, give stacked students their own storage back, check DDP."""
    for student in students:
        if student.board is not None:
            student.board.close()
    if ctx.joint:
        ctx.say(f"together: {len(students)} students, {step.replays} graph replays, {step.eager_steps} eager steps, "
                f"{step.captures} captures")
    step.unstack()  # with stack=True: the students own their weights again
    if ddp.is_distributed():
        [student] = students
        _record_replica_agreement(student.distiller, student.last_path if ctx.main_process else None, ctx.say)


def _record_replica_agreement(distiller: Distiller, last_path: Path | None, say) -> None:
    """Check (and store in last.pt) that every DDP rank ends with bitwise the same weights."""
    digests = ddp.gather_digests(distiller)
    say(f"DDP: {len(digests)} replicas, identical weights: {len(set(digests)) == 1}")
    if last_path is not None and last_path.exists():
        state = read_checkpoint(last_path)
        state["replica_digests"] = digests
        atomic_save(state, last_path)
    ddp.barrier()


def _who(student: _Student, ctx: _Context) -> str:
    """'[name] ' in a joint run's messages (which student), nothing for a single one."""
    return f"[{student.name}] " if ctx.joint else ""


def _say(log: Callable[[str], None] | None) -> Callable[[str], None]:
    """`log`, printed with tqdm.write when it is print (bars stay intact), or nothing."""
    return (lambda msg: tqdm.write(msg)) if log is print else (log or (lambda msg: None))


def _quiet(progress: bool | None) -> bool | None:
    # tqdm's disable=None means: show bars on a terminal (or notebook), stay quiet in logs and CI.
    return None if progress is None else not progress
