"""One optimisation step, the body of the training loop (and what `bench` times).

    logits, losses, loss = distill_step(distiller.forward_train, x, y, optimizer, teacher=teacher, amp=False)

`amp=True` is bf16 autocast on CUDA: faster on large batches, but it changes the numbers beyond float
tolerance (for SimKD the regression targets themselves become bf16), so no recipe turns it on silently.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

from simkd_lite.distillers import TeacherOutputs, total_loss


def autocast_context(device: torch.device | str, enabled: bool):
    """bf16 autocast on CUDA when `enabled`; a no-op context everywhere else.

    Not on CPU on purpose: bf16 autocast there measured ~9x SLOWER than float32 on our 2-core
    test machine (no AMX/AVX512-BF16 kernels), and MPS bf16 support varies.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, x: Tensor) -> TeacherOutputs:
    """One frozen-teacher pass: the feature map SimKD aligns and the logits (the head is ~free)."""
    features = teacher.forward_features(x)
    return TeacherOutputs(features, teacher.forward_head(features))


def distill_step(forward_train: Callable, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, *,
                 teacher: nn.Module | None = None, teacher_out: TeacherOutputs | None = None, amp: bool = False,
                 guard: Callable[[Tensor], None] | None = None) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One optimisation step: the loop body of `loop.fit`, also timed by `bench`.

    `forward_train` is a distiller's `forward_train` (or its DDP wrapper). Teacher outputs come from
    `teacher_out` (cached), else from `teacher` (e.g. a `prepare_teacher` result) under no_grad, else
    the distiller runs its own frozen teacher. `guard(loss)` runs before backward (the NaN check).
    Returns (logits, named losses, total loss).
    """
    with autocast_context(x.device, amp):
        if teacher_out is None and teacher is not None:
            teacher_out = teacher_outputs(teacher, x)
        logits, losses = forward_train(x, y, teacher_out)
        loss = total_loss(losses)
    if guard is not None:
        guard(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, losses, loss
