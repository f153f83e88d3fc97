"""One optimisation step, the body of the training loop, for every path (eager, CUDA graph, stacked).

    member = StepMember(distiller, optimizer)          # one student, its optimizer, its running sums
    logits, losses, loss = member.step(x, y, teacher_out, autocast=autocast)
    # forward_train -> total loss -> (NaN check) -> zero_grad -> backward -> optimizer.step -> sums

`graphed.SharedStep` (the step object `loop.fit` always steps through) calls `StepMember.step` for each
student, eagerly or while recording a CUDA graph; the stacked path (`stacked.py`) runs the same halves
(`losses` before the backward, `finish` after it) around one backward of all students' losses.
`distill_step` is the same body for a bare forward function (what `bench` times).

`amp=True` is bf16 autocast on CUDA: faster on large batches, but it changes the numbers beyond float
tolerance (for SimKD the regression targets themselves become bf16), so no recipe turns it on silently.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

from simkd_lite.distillers import TeacherOutputs, total_loss


class NonFiniteLoss(ArithmeticError):
    """A member's loss became NaN or infinite (raised before its backward); `loop.fit` says where."""

    def __init__(self, member: int, value: float):
        super().__init__(f"member {member}: loss {value}")
        self.member, self.value = member, value


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


class StepMember:
    """One student of a step: its distiller, its optimizer, the function that computes its losses
    (`distiller.forward_train`, or a compiled / DDP-wrapped one) and its running sums (device
    tensors, updated in place, so a CUDA graph can record them; read once per epoch)."""

    def __init__(self, distiller: nn.Module, optimizer: torch.optim.Optimizer, forward: Callable | None = None,
                 index: int = 0):
        self.distiller, self.optimizer = distiller, optimizer
        self.forward = forward or distiller.forward_train
        self.index = index
        self.sums: dict[str, Tensor] = {}
        self.correct: Tensor | None = None
        self.seen = 0

    def lrs(self) -> tuple[float, ...]:
        return tuple(float(group["lr"]) for group in self.optimizer.param_groups)

    def losses(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None, *, check: bool):
        """The forward half: (logits, named losses, total loss); `check` raises `NonFiniteLoss` on a NaN
        loss (a host sync: eager steps only, a recorded graph checks its sums once per epoch)."""
        logits, losses = self.forward(x, y, teacher_out)
        loss = total_loss(losses)
        if check and not torch.isfinite(loss):
            raise NonFiniteLoss(self.index, loss.item())
        return logits, losses, loss

    def step(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None, *, autocast=contextlib.nullcontext,
             set_to_none: bool = True, check: bool = True, record: bool = True):
        """The whole step for this member: losses -> zero_grad -> backward -> optimizer.step -> sums."""
        with autocast():
            logits, losses, loss = self.losses(x, y, teacher_out, check=check)
        self.optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.finish(logits, losses, y, record)
        return logits, losses, loss

    def finish(self, logits: Tensor, losses: dict[str, Tensor], y: Tensor, record: bool = True) -> None:
        """The half after the backward: the optimizer step, then this batch's sums."""
        self.optimizer.step()
        if record:
            self.record(logits, losses, y)

    @torch.no_grad()
    def record(self, logits: Tensor, losses: dict[str, Tensor], y: Tensor) -> None:
        for name, value in losses.items():
            if name not in self.sums:  # created in the first (eager) step, before any capture
                self.sums[name] = torch.zeros((), dtype=torch.float64, device=y.device)
            self.sums[name].add_(value.detach().double() * len(y))
        if self.correct is None:
            self.correct = torch.zeros((), dtype=torch.int64, device=y.device)
        self.correct.add_((logits.argmax(1) == y).sum())

    def take_metrics(self) -> tuple[dict[str, float], int, int]:
        """(loss sums over samples, correct predictions, samples seen) since the last call; then zero.

        The one host sync of an epoch. Resetting is in place: a recorded graph keeps adding into these.
        """
        sums = {name: float(value.item()) for name, value in self.sums.items()}
        out = (sums, int(self.correct.item()) if self.correct is not None else 0, self.seen)
        for value in self.sums.values():
            value.zero_()
        if self.correct is not None:
            self.correct.zero_()
        self.seen = 0
        return out


def distill_step(forward_train: Callable, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, *,
                 teacher: nn.Module | None = None, teacher_out: TeacherOutputs | None = None,
                 amp: bool = False) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """`StepMember.step` for a bare `forward_train` (no sums, no NaN check): what `bench` times.

    Teacher outputs come from `teacher_out` (cached), else from `teacher` (e.g. a `prepare_teacher`
    result) under no_grad, else the distiller runs its own frozen teacher. Returns (logits, losses, loss).
    """
    member = StepMember(None, optimizer, forward_train)
    with autocast_context(x.device, amp):
        if teacher_out is None and teacher is not None:
            teacher_out = teacher_outputs(teacher, x)
    return member.step(x, y, teacher_out, autocast=lambda: autocast_context(x.device, amp), check=False,
                       record=False)
