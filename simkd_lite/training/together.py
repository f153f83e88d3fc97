"""The paper's comparison row in one run: several students, one teacher forward per batch.

    histories = fit_together({"simkd": simkd, "kd": kd}, train_set, test_set, config, {"simkd": out_a, "kd": out_b})
    # each folder gets last.pt / best.pt as if its student ran alone; `experiments.jobs.distill_together`
    # builds the students and writes their results.json (the CLI's `demo --together`)

Why it is the same as four separate runs: a run's batches and augmentation depend only on (seed,
epoch) (`loop.make_batches`), every student is built after `seed_everything(seed)` exactly as
`experiments.jobs.distill_student` builds it, and each has its own optimizer, schedule, BatchNorm statistics
and checkpoints. What is shared is what is identical anyway: the batch (drawn and augmented once)
and the frozen teacher's outputs for it (computed once instead of once per student).
`tests/test_together.py` checks that each student's weights equal its separate run's.

On CUDA with `config.cuda_graph` the students' steps are recorded in one CUDA graph, each on its own
stream (`graphed.SharedStep`); elsewhere they run one after another, eagerly.
Not supported (yet): `--resume` of a joint run, and DDP.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from simkd_lite.checkpoints import atomic_save
from simkd_lite.distillers import Distiller, FrozenTeacher
from simkd_lite.training import distributed as ddp
from simkd_lite.training.teacher_prep import prepare_teacher
from simkd_lite.training.graphed import SharedStep, graph_unsupported, run_epoch
from simkd_lite.training.metrics import write_metrics_csv
from simkd_lite.training.preflight import check_before_claim
from simkd_lite.training.runtime import seed_everything, select_device, set_tf32
from simkd_lite.training.loop import (TrainConfig, TrainingDivergedError, _checkpoint, _quiet, make_batches,
                                       make_optimizer, make_scheduler, materialize, predict, top1)


def _share_teacher(distillers: dict[str, Distiller], config: TrainConfig) -> FrozenTeacher | None:
    """One (prepared) frozen teacher for every distiller that has one; they must all have the same network."""
    with_teacher = [d for d in distillers.values() if d.teacher is not None]
    if not with_teacher:
        return None
    if len({id(d.teacher.model) for d in with_teacher}) > 1:
        raise ValueError("fit_together: the distillers must share one teacher network (pass the same model to each).")
    teacher = with_teacher[0].teacher
    if config.fold_bn or config.channels_last or config.compile_teacher:  # as `fit` prepares it, once
        teacher = FrozenTeacher(prepare_teacher(teacher.model, fold_bn=config.fold_bn,
                                                channels_last=config.channels_last, compile=config.compile_teacher))
    for distiller in with_teacher:
        distiller.teacher = teacher
    return teacher


def fit_together(distillers: dict[str, Distiller], train_set, test_set, config: TrainConfig,
                 outs: dict[str, str | Path] | None = None, *, metas: dict[str, dict] | None = None,
                 progress: bool | None = None, log: Callable[[str], None] | None = print,
                 test_tensors=None, train_tensors=None, teacher_cache=None, gpu_augment=None,
                 stack: bool = False) -> dict[str, list[dict]]:
    """Train every distiller of `{name: distiller}` on the same batches; returns {name: history}.

    Each history has `fit`'s records; `outs[name]` gets that student's `last.pt` / `best.pt` (official
    layout, `metas[name]` stored in them). The one shared teacher forward per batch is the saving.
    `stack=True` also runs the students' encoders as one batched network (`training/stacked.py`: the
    same math to float tolerance; students of one architecture only).
    """
    if ddp.launched_by_torchrun():
        raise ValueError("Training several students together runs on one device; launch it without torchrun.")
    check_before_claim(config, len(train_set), None)  # check everything, then touch anything (preflight.py)
    device = select_device(config.device)
    set_tf32(config.tf32)  # as `fit`: the paper's fp32 unless the config opts in
    seed_everything(config.seed)
    say = (lambda msg: tqdm.write(msg)) if log is print else (log or (lambda msg: None))
    names = list(distillers)
    for distiller in distillers.values():
        distiller.to(device)
    teacher = _share_teacher(distillers, config)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    for distiller in distillers.values():
        distiller.to(memory_format=memory_format)

    test_x, test_y = test_tensors if test_tensors is not None else materialize(test_set)
    # The batches carry what every member needs from the teacher: a hint map too when one asks for it.
    feeder = next((d for d in distillers.values() if d.teacher_hint_layer is not None),
                  next((d for d in distillers.values() if d.teacher is not None), distillers[names[0]]))
    batches = make_batches(feeder, train_set, config, device, gpu_augment, train_tensors, teacher_cache, say)
    optimizers = [make_optimizer([p for p in distillers[n].parameters() if p.requires_grad], config) for n in names]
    schedulers = [make_scheduler(optimizer, config, len(batches)) for optimizer in optimizers]
    per_step = any(unit == "step" for _, unit in schedulers)

    reason = graph_unsupported(config, device) if config.cuda_graph else "off (--no-cuda-graph)"
    if config.cuda_graph and device.type == "cuda" and reason:
        say(f"--cuda-graph: off for this run ({reason}); training eagerly")
    if reason is None:
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.deterministic
    step = SharedStep([distillers[n] for n in names], optimizers, teacher=teacher, device=device,
                      cuda_graph=reason is None, amp=config.amp, stack=stack)
    outs = {n: Path(outs[n]) for n in names} if outs else {}
    histories: dict[str, list[dict]] = {n: [] for n in names}
    best = {n: 0.0 for n in names}
    best_epoch: dict[str, int | None] = {n: None for n in names}

    for epoch in tqdm(range(config.epochs), desc="+".join(names), disable=_quiet(progress), unit="epoch"):
        started = time.perf_counter()
        lrs = [optimizer.param_groups[0]["lr"] for optimizer in optimizers]  # what this epoch trains with
        for distiller in distillers.values():
            distiller.train()
        bar = tqdm(batches.epoch(epoch), total=len(batches), leave=False, disable=_quiet(progress), unit="batch")
        if per_step:  # eager only (graph_unsupported): the schedule moves after every batch
            for batch in bar:
                run_epoch(step, [batch], device, memory_format)
                for scheduler, _ in schedulers:
                    scheduler.step()
        else:
            run_epoch(step, bar, device, memory_format)
        metrics = step.take_metrics()
        train_seconds = time.perf_counter() - started
        for name, optimizer, lr, (scheduler, unit), (sums, correct, seen) in zip(names, optimizers, lrs, schedulers,
                                                                                 metrics):
            evaluated = time.perf_counter()
            distiller = distillers[name]
            last_path = outs[name] / "last.pt" if name in outs else None
            if not all(math.isfinite(v) for v in sums.values()):
                raise TrainingDivergedError(f"[{name}] the loss became non-finite during epoch {epoch + 1}; "
                                            f"training stopped. Last good checkpoint: {last_path}. Try a lower --lr.")
            if unit == "epoch":
                scheduler.step()
            last_epoch = epoch + 1 == config.epochs
            evaluate_now = last_epoch or (config.eval_every > 0 and (epoch + 1) % config.eval_every == 0)
            # as in `fit`: intermediate scores may use the first `eval_subset` test images, the last uses all
            scored = len(test_y) if last_epoch or not config.eval_subset else min(config.eval_subset, len(test_y))
            test_acc = top1(predict(distiller, test_x[:scored], device, config.eval_batch_size),
                            test_y[:scored]) if evaluate_now else None
            record = {"epoch": epoch + 1, "lr": lr,
                      **{f"loss_{k}": v / seen for k, v in sums.items()},
                      "train_top1": 100.0 * correct / seen, "test_top1": test_acc,
                      "test_images": scored if evaluate_now else 0,
                      # the shared training time of the epoch (all students) + this student's test pass
                      "seconds": train_seconds + time.perf_counter() - evaluated}
            histories[name].append(record)
            improved = (test_acc is not None and scored == len(test_y)  # whole-test-set scores only, as in `fit`
                        and (best_epoch[name] is None or test_acc > best[name]))
            if improved:
                best[name], best_epoch[name] = test_acc, epoch + 1
            if last_path is not None:
                state = _checkpoint(distiller, optimizer, scheduler, epoch + 1, best[name], best_epoch[name],
                                    histories[name], config, (metas or {}).get(name, {}))
                if improved:  # best.pt first: it never lags the record in last.pt
                    atomic_save(state, outs[name] / "best.pt")
                atomic_save(state, last_path)
                write_metrics_csv(histories[name], outs[name] / "metrics.csv")
            losses_text = " ".join(f"{k[5:]} {v:.4f}" for k, v in record.items() if k.startswith("loss_"))
            say(f"[{name}] epoch {epoch + 1}/{config.epochs}  {losses_text}  train {record['train_top1']:.2f}%  "
                + (f"test {test_acc:.2f}%  " if test_acc is not None else "") + f"{record['seconds']:.1f}s")
    say(f"together: {len(names)} students, {step.replays} graph replays, {step.eager_steps} eager steps, "
        f"{step.captures} captures")
    step.unstack()  # with stack=True: the students own their weights again
    return histories
