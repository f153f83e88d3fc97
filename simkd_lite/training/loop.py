"""One training loop for teachers and every distiller, with checkpoints that never lose work.

    fit(distiller, train_set, test_set, config, out_dir)  ->  history (one dict per epoch)

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
  cached once, so teacher-driven students then cost only student compute.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import transforms
from tqdm.auto import tqdm

from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.distillers import Distiller, FrozenTeacher, TeacherOutputs
from simkd_lite.training import distributed as ddp
from simkd_lite.training.device_data import DeviceTensorBatches, GpuAugment, to_uint8_tensors
from simkd_lite.training.step import distill_step
from simkd_lite.training.teacher_prep import maybe_compile, prepare_teacher
from simkd_lite.training.metrics import TensorBoardLog, summarize, write_metrics_csv
from simkd_lite.training.graphed import SharedStep, graph_unsupported, run_epoch
from simkd_lite.training.preflight import check_before_claim
from simkd_lite.training.run_folder import claim_run_folder, plain
from simkd_lite.training.runtime import (epoch_generator, epoch_order, execution_record, restore_rng_state,
                                       rng_state, seed_everything, select_device, set_tf32)
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


# ------------------------------------------------------------------------------------ data
def materialize(dataset: Dataset, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """All (image, label) pairs of a deterministic dataset as two tensors (N, C, H, W), (N,).

    A torchvision dataset whose transform is just ToTensor + Normalize is converted in one vectorised
    step from its uint8 array (the same float operations, so the same bits, ~50x faster than going
    image by image through PIL); anything else goes through its own transform.
    """
    fast = _normalized_uint8(dataset)
    if fast is not None:
        return fast
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def cache_teacher_outputs(teacher: FrozenTeacher, images: Tensor, device: torch.device,
                          batch_size: int = 1000, hint_layer: int | None = None) -> TeacherOutputs:
    """One frozen-teacher pass over fixed images; the result is reused every epoch.

    With `hint_layer` (FitNet's) the map at that index of the official feature list is cached too.
    """
    outs = [teacher(images[i:i + batch_size].to(device), hint_layer) for i in range(0, len(images), batch_size)]
    hint = torch.cat([o.hint for o in outs]).cpu() if hint_layer is not None else None
    return TeacherOutputs(torch.cat([o.features for o in outs]).cpu(), torch.cat([o.logits for o in outs]).cpu(), hint)


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, optionally with cached teacher outputs."""

    def __init__(self, images: Tensor, labels: Tensor, teacher: TeacherOutputs | None, batch_size: int, seed: int):
        self.images, self.labels, self.teacher = images, labels, teacher
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.labels) / ddp.world_size()) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, TeacherOutputs | None]]:
        order = epoch_order(len(self.labels), self.seed, epoch)
        for idx in order.split(self.batch_size):
            cached = self.teacher.select(idx) if self.teacher else None
            yield self.images[idx], self.labels[idx], cached


class LoaderBatches:
    """Shuffled mini-batches from a Dataset whose transforms augment every time."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, num_workers: int, pin_memory: bool):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.dataset) / ddp.world_size()) / self.batch_size)

    def epoch(self, epoch: int):
        if ddp.is_distributed():
            sampler = DistributedSampler(self.dataset, ddp.world_size(), ddp.rank(), shuffle=True, seed=self.seed)
            sampler.set_epoch(epoch)
            options = {"sampler": sampler}
        else:
            options = {"shuffle": True, "generator": epoch_generator(self.seed, epoch)}
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            pin_memory=self.pin_memory, **options)
        for x, y in loader:
            yield x, y, None


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
    weights = {f"student.{k}": v for k, v in checkpoint["model"].items()} | checkpoint["extras"]
    distiller.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"])


def make_batches(distiller: Distiller, train_set: Dataset, config: TrainConfig, device: torch.device,
                 gpu_augment: GpuAugment | None = None, train_tensors: tuple[Tensor, Tensor] | None = None,
                 teacher_cache: TeacherOutputs | None = None, say: Callable[[str], None] = lambda msg: None):
    """The batch stream of a run: (x, y, cached teacher outputs or None) per step, by `.epoch(e)`.

    On-device augmentation for uint8 datasets (`config.device_data`), a DataLoader for the others,
    fixed tensors (and optionally cached teacher outputs) without augmentation. The order and the
    augmentation depend only on (seed, epoch), so runs with the same seed see the same batches.
    """
    uint8_data = _uint8_tensors(train_set) if config.augment and config.device_data and gpu_augment else None
    if uint8_data is not None:
        return DeviceTensorBatches(*uint8_data, gpu_augment, config.batch_size, config.seed, device)
    if config.augment:
        return LoaderBatches(train_set, config.batch_size, config.seed, config.num_workers,
                             pin_memory=device.type == "cuda")
    train_x, train_y = train_tensors if train_tensors is not None else materialize(train_set)
    cached = teacher_cache if distiller.teacher is not None else None
    hint_layer = distiller.teacher_hint_layer
    if cached is not None and hint_layer is not None and cached.hint is None:
        cached = None  # a shared cache without this method's hint map: cache again, with it
    if cached is None and (config.cache_teacher or teacher_cache is not None) and distiller.teacher is not None:
        start = time.perf_counter()
        cached = cache_teacher_outputs(distiller.teacher, train_x, device, config.eval_batch_size, hint_layer)
        hint = f" (+ hint layer {hint_layer})" if hint_layer is not None else ""
        say(f"cached teacher outputs{hint} for {len(train_x)} images in {time.perf_counter() - start:.1f}s")
    return TensorBatches(train_x, train_y, cached, config.batch_size, config.seed)


# -------------------------------------------------------------------------------- the loop
def fit(distiller: Distiller, train_set: Dataset, test_set: Dataset, config: TrainConfig,
        out_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
        meta: dict | None = None, run: dict | None = None, log: Callable[[str], None] | None = print,
        **options) -> list[dict]:
    """Train `distiller` for `config.epochs` epochs; returns the per-epoch history.

    `meta` is stored in every checkpoint (e.g. `model_name`, `dataset`). `out_dir` must not hold
    another run: with `resume=True` an existing `OUT/last.pt` with the same settings is continued
    exactly (a finished one is reused: nothing trains); `overwrite=True` replaces it; without
    either it is refused. `run` describes the run in `OUT/config.json` (job, models, method
    options...); the teacher's weights digest and the training recipe are added to it.
    Other keyword options: see `_fit`.
    """
    if out_dir is None or os.environ.get("RANK", "0") != "0":  # rank 0 alone owns the folder (DDP)
        return _fit(distiller, train_set, test_set, config, out_dir, resume=resume, meta=meta, log=log, **options)
    say = (lambda msg: tqdm.write(msg)) if log is print else (log or (lambda msg: None))
    run = dict(run if run is not None else {"method": distiller.method, **(meta or {})})
    if distiller.teacher is not None:  # the digest of the weights as given (not of a BN-folded copy)
        teacher = distiller.teacher
        teacher.sha256 = getattr(teacher, "sha256", None) or ddp.parameters_digest(teacher.model)
        run["teacher_sha256"] = teacher.sha256
    run = plain({**run, **execution_record(config), "train_images": len(train_set), "test_images": len(test_set),
                 "train": asdict(config)})
    check_before_claim(config, len(train_set), out_dir)  # check everything, then touch anything (preflight.py)
    with claim_run_folder(out_dir, run, resume=resume, overwrite=overwrite, log=say) as resuming:
        return _fit(distiller, train_set, test_set, config, out_dir, resume=resuming,
                    meta={**(meta or {}), "run": run}, log=log, **options)


def _fit(distiller: Distiller, train_set: Dataset, test_set: Dataset, config: TrainConfig,
         out_dir: str | Path | None = None, *, resume: bool = False, meta: dict | None = None,
         progress: bool | None = None, log: Callable[[str], None] | None = print,
         test_tensors: tuple[Tensor, Tensor] | None = None, train_tensors: tuple[Tensor, Tensor] | None = None,
         teacher_cache: TeacherOutputs | None = None, label: str | None = None,
         gpu_augment: GpuAugment | None = None) -> list[dict]:
    """The training loop of `fit`, once the folder is claimed.

    With `resume=True` and an existing `OUT/last.pt`, training continues from it exactly.
    `progress=None` shows tqdm bars only on a terminal or in a notebook.
    `test_tensors`, `train_tensors` and `teacher_cache` let several runs share data prepared once.
    `label` names the run in progress bars and logs (default: the method).
    `gpu_augment` is the batched on-device augmentation used when `config.device_data` (see fast.py);
    datasets without uint8 arrays (or --no-device-data) go through a DataLoader, pinned on CUDA.
    Every record holds the epoch's `test_top1` (None on epochs that `eval_every` skips); the best
    one is saved as OUT/best.pt and `training.metrics.summarize(history)` reports last and best.
    """
    label = label or distiller.method
    device = select_device(config.device)
    if ddp.launched_by_torchrun():
        device = ddp.init_distributed(device)
    set_tf32(config.tf32)  # the paper's fp32 unless the config opts in
    main_process = ddp.is_main_process()
    if not main_process:  # rank 0 alone logs, shows progress and writes checkpoints
        log, progress = None, False
    out = Path(out_dir) if out_dir is not None else None
    seed_everything(config.seed)
    distiller.to(device)
    say = (lambda msg: tqdm.write(msg)) if log is print else (log or (lambda msg: None))

    if distiller.teacher is not None and (config.fold_bn or config.channels_last or config.compile_teacher):
        given = distiller.teacher
        distiller.teacher = FrozenTeacher(prepare_teacher(given.model, fold_bn=config.fold_bn,
                                                          channels_last=config.channels_last,
                                                          compile=config.compile_teacher))
        distiller.teacher.sha256 = getattr(given, "sha256", None)  # a later fit still names the given weights
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    distiller.to(memory_format=memory_format)

    test_x, test_y = test_tensors if test_tensors is not None else materialize(test_set)
    shard = replace(config, batch_size=ddp.batch_size_per_process(config.batch_size))  # config.batch_size is global
    batches = make_batches(distiller, train_set, shard, device, gpu_augment, train_tensors, teacher_cache, say)
    if ddp.is_distributed():
        say(f"DDP: world size {ddp.world_size()} ({torch.distributed.get_backend()}), global batch size "
            f"{config.batch_size}, {shard.batch_size} per process, {len(batches)} steps per epoch")
    train_step = maybe_compile(distiller.forward_train, config.compile_student)
    if ddp.is_distributed():
        train_step = DistributedDataParallel(ddp.TrainStep(distiller),
                                             device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], config)
    scheduler, schedule_unit = make_scheduler(optimizer, config, len(batches))
    graphed = _graphed_step(distiller, optimizer, config, device, say)
    start_epoch, best_acc, best_epoch, history = 0, 0.0, None, []
    last_path = out / "last.pt" if out else None
    if resume and last_path is not None and last_path.exists():
        checkpoint = read_checkpoint(last_path)
        _restore(distiller, optimizer, scheduler, checkpoint)
        start_epoch, best_acc, history = checkpoint["epoch"], checkpoint["best_acc"], checkpoint["history"]
        best_epoch = checkpoint.get("best_epoch", summarize(history)["best_epoch"])  # older files lack it
        say(f"resuming from {last_path} after epoch {start_epoch}")
    board = TensorBoardLog(out / "tensorboard", start_epoch) if config.tensorboard and out and main_process else None

    for epoch in tqdm(range(start_epoch, config.epochs), desc=label, disable=_quiet(progress),
                      initial=start_epoch, total=config.epochs, unit="epoch"):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the lr this epoch trains with (its first step's, per-step schedules)
        distiller.train()
        sums: dict[str, float] = {}
        correct = seen = 0
        bar = tqdm(batches.epoch(epoch), total=len(batches), leave=False, disable=_quiet(progress), unit="batch")
        if graphed is not None:  # the same step, replayed from a CUDA graph; sums read once per epoch
            run_epoch(graphed, bar, device, memory_format)
            [(sums, correct, seen)] = graphed.take_metrics()
            if not all(math.isfinite(v) for v in sums.values()):
                where = f"{last_path} (after epoch {epoch})" if last_path and last_path.exists() else "none yet"
                raise TrainingDivergedError(f"The loss became non-finite during epoch {epoch + 1} (checked once per "
                                            f"epoch with --cuda-graph); training stopped. Last good checkpoint: "
                                            f"{where}. Try a lower --lr.")
            bar = ()
        for step, (x, y, teacher_out) in enumerate(bar):
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            if teacher_out is not None:
                teacher_out = teacher_out.to(device)

            def stop_on_nan(loss: Tensor) -> None:
                if not torch.isfinite(loss):
                    where = f"{last_path} (after epoch {epoch})" if last_path and last_path.exists() else "none yet"
                    raise TrainingDivergedError(
                        f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; training stopped. "
                        f"Last good checkpoint: {where}. Try a lower --lr.")

            logits, losses, loss = distill_step(train_step, x, y, optimizer, teacher_out=teacher_out, amp=config.amp,
                                                guard=stop_on_nan)
            if schedule_unit == "step":
                scheduler.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        if schedule_unit == "epoch":
            scheduler.step()
        ddp.sync_buffers(distiller)  # every rank evaluates and saves rank 0's BN statistics

        last_epoch = epoch + 1 == config.epochs
        evaluate_now = last_epoch or (config.eval_every > 0 and (epoch + 1) % config.eval_every == 0)
        scored = len(test_y) if last_epoch or not config.eval_subset else min(config.eval_subset, len(test_y))
        test_acc = top1(predict(distiller, test_x[:scored], device, config.eval_batch_size),
                        test_y[:scored]) if evaluate_now else None
        compiled = getattr(distiller.teacher.model, "compile_seconds", None) if distiller.teacher else None
        if compiled is not None and epoch == start_epoch:
            say(f"teacher compiled in {compiled:.1f}s (one-off cost, included in epoch {epoch + 1})")
        record = {"epoch": epoch + 1, "lr": lr,
                  **{f"loss_{k}": v / seen for k, v in sums.items()},
                  "train_top1": 100.0 * correct / seen, "test_top1": test_acc,
                  "test_images": scored if evaluate_now else 0,
                  "seconds": time.perf_counter() - started}
        history.append(record)
        # only whole-test-set scores compete for best (an `eval_subset` score is another test set)
        improved = test_acc is not None and scored == len(test_y) and (best_epoch is None or test_acc > best_acc)
        if improved:
            best_acc, best_epoch = test_acc, epoch + 1
        if out is not None and main_process:
            state = _checkpoint(distiller, optimizer, scheduler, epoch + 1, best_acc, best_epoch, history, config,
                                meta or {})
            try:
                if improved:  # best.pt first: a crash in between leaves it ahead of last.pt, never behind
                    atomic_save(state, out / "best.pt")
                atomic_save(state, last_path)
                write_metrics_csv(history, out / "metrics.csv")  # after last.pt: a resume rewrites it from there
            except SimKDLiteError as err:  # e.g. a full disk: the previous files are intact
                kept = f"{last_path} (after epoch {epoch}) is intact" if last_path.exists() else "none was written yet"
                raise SimKDLiteError(f"{err}; the last good checkpoint {kept}: fix that, then rerun with --resume") from err
            if board is not None:
                board.log(record)
        ddp.barrier()
        losses_text = " ".join(f"{k[5:]} {v:.4f}" for k, v in record.items() if k.startswith("loss_"))
        say(f"[{label}] epoch {epoch + 1}/{config.epochs}  {losses_text}  train {record['train_top1']:.2f}%  "
            + (f"test {test_acc:.2f}% ({scored} images)  " if test_acc is not None else "") + f"{record['seconds']:.1f}s")
    if board is not None:
        board.close()
    if ddp.is_distributed():
        _record_replica_agreement(distiller, last_path if main_process else None, say)
    return history


def _graphed_step(distiller: Distiller, optimizer, config: TrainConfig, device: torch.device, say):
    """A `SharedStep` replaying CUDA graphs when `config.cuda_graph` and the run allows it, else None."""
    if not config.cuda_graph or device.type != "cuda":  # CPU / MPS: the eager loop below, silently
        return None
    reason = graph_unsupported(config, device, distributed=ddp.is_distributed())
    if reason is not None:
        say(f"--cuda-graph: off for this run ({reason}); training eagerly")
        return None
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic  # as the official code: algorithms picked once, in the warm-up
    return SharedStep([distiller], [optimizer], teacher=distiller.teacher, device=device, amp=config.amp)


def _record_replica_agreement(distiller: Distiller, last_path: Path | None, say) -> None:
    """Check (and store in last.pt) that every DDP rank ends with bitwise the same weights."""
    digests = ddp.gather_digests(distiller)
    say(f"DDP: {len(digests)} replicas, identical weights: {len(set(digests)) == 1}")
    if last_path is not None and last_path.exists():
        state = read_checkpoint(last_path)
        state["replica_digests"] = digests
        atomic_save(state, last_path)
    ddp.barrier()


def _uint8_tensors(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """The raw uint8 images and labels behind a torchvision dataset (or Subset), if it has them."""
    try:
        return to_uint8_tensors(dataset)
    except TypeError:  # e.g. digits, which stores float images
        return None


def _normalized_uint8(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """`materialize`'s fast path: (uint8 / 255 - mean) / std when that is all the transform does."""
    base = dataset
    while isinstance(base, Subset):
        base = base.dataset
    steps = getattr(getattr(base, "transform", None), "transforms", None)
    if (getattr(base, "target_transform", None) is not None or steps is None or len(steps) != 2
            or type(steps[0]) is not transforms.ToTensor or type(steps[1]) is not transforms.Normalize):
        return None
    raw = _uint8_tensors(dataset)
    if raw is None:
        return None
    images, labels = raw
    normalize = steps[1]
    mean = torch.as_tensor(normalize.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=torch.float32).view(-1, 1, 1)
    return images.float().div(255).sub(mean).div(std), labels


def _quiet(progress: bool | None) -> bool | None:
    # tqdm's disable=None means: show bars on a terminal (or notebook), stay quiet in logs and CI.
    return None if progress is None else not progress
