"""One training step for one or several students, replayed from a CUDA graph; eager everywhere else.

    step = SharedStep([distiller], [optimizer], teacher=distiller.teacher, device=device, cuda_graph=True)
    for x, y, teacher_out in batches.epoch(epoch):       # x augmented on the device just before the graph
        step(x, y, teacher_out)
    sums, correct, seen = step.take_metrics()[0]         # one device->host sync per epoch

This is the step object `loop.fit` always steps through (one student is the case of one). What one
call does, for every member (a distiller with its own optimizer, `step.StepMember`):
    teacher forward under no_grad (ONCE per batch, shared by all members) ->
    forward_train -> total loss -> zero_grad -> backward -> optimizer.step -> loss / accuracy sums
`StepMember.step`, the one step body, whether it runs eagerly, is recorded in a graph, or (stacked)
runs its two halves around one backward of all students.

Why a graph: at the official batch size 64 a SimKD step is a few hundred small kernels, and the GPU
waits on Python and on kernel launches more than it computes. A CUDA graph records the launches once
and replays them with one call. What that needs, and how it is kept exact:
- static buffers: the batch is copied into fixed input tensors; the graph reads those.
- a full batch only: the last, smaller batch of an epoch (50,000 = 781 x 64 + 16) runs eagerly on the
  same parameters, gradients and momentum buffers, so the math is the same step.
- warm-up: the first `warmup` full batches run eagerly (they are real training steps). SGD creates its
  momentum buffers in its first step, cuDNN picks its algorithms: the graph is captured after that.
- the learning rate: `torch.optim.SGD` (foreach) bakes the float lr into the recorded kernels, so the
  graph is captured again whenever a member's lr changes (3 times in the paper's 240 epochs). Per-step
  schedules (cosine, one-cycle) would recapture every step: they run eagerly (`graph_unsupported`).
- no host syncs inside: loss and accuracy are summed on the device (float64) and read once per epoch,
  so a NaN loss is detected at the end of the epoch, not at its step.
- several members: each member's step is recorded on its own CUDA stream after the shared teacher
  forward, so the small kernels of different students overlap on the GPU; or, with `stack=True`,
  students of one architecture run as one batched network (`stacked.py`).
On CPU (and MPS) there is no graph: the same code runs the members eagerly one after another.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import Tensor

from simkd_lite.distillers import Distiller, TeacherOutputs
from simkd_lite.training.stacked import StackedStudents
from simkd_lite.training.step import StepMember


def graph_unsupported(config, device: torch.device, *, distributed: bool = False) -> str | None:
    """Why a run cannot use the CUDA-graph step (None: it can). `config` is a `TrainConfig`."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this run is on {device.type})"
    if not hasattr(torch.cuda, "CUDAGraph"):
        return "this torch has no torch.cuda.CUDAGraph"
    if distributed:
        return "DDP's gradient all-reduce is not captured here"
    if config.optimizer != "sgd":
        return f"only SGD is captured (its state lives on the device); {config.optimizer!r} keeps a CPU step count"
    if config.schedule != "multistep":
        return f"the {config.schedule!r} schedule changes the learning rate every step (a recapture per step)"
    if config.compile_student or config.compile_teacher:
        return "torch.compile and a CUDA graph are alternatives (both remove launch overhead); pick one"
    return None


class SharedStep:
    """A training step for `distillers` (each with its optimizer), one teacher forward shared per batch.

    teacher: the frozen teacher (e.g. `distiller.teacher`, a `FrozenTeacher`) or None (vanilla only, or
        when the batches bring cached teacher outputs). Its outputs are computed once per batch and
        passed to every member's `forward_train` as `teacher_out`.
    cuda_graph: capture full batches in a CUDA graph (CUDA only; ignored elsewhere). Callers decide
        eligibility with `graph_unsupported`.
    warmup: eager full batches before the first capture (>= 1: SGD's first step is structurally
        different, it creates the momentum buffers).
    streams: record each member on its own CUDA stream inside the graph (several members only).
    amp: bf16 autocast on CUDA (the autocast weight cache is off, as graphs require).
    stack: run the members' students (one architecture) as one batched network (`stacked.StackedStudents`):
        one forward and one backward for all encoders, then each member's own optimizer step. Replaces
        the streams. The students' parameters become views of the stack until `unstack()`.
    forwards: per member, what computes its losses instead of `distiller.forward_train` (a compiled
        one, or its DistributedDataParallel wrapper).
    Eager steps check every loss before its backward (`step.NonFiniteLoss`); replays cannot (no host sync).
    """

    def __init__(self, distillers: Sequence[Distiller], optimizers: Sequence[torch.optim.Optimizer], *,
                 teacher=None, device: torch.device | str, cuda_graph: bool = True, warmup: int = 3,
                 streams: bool = True, amp: bool = False, stack: bool = False, forwards: Sequence | None = None):
        if len(distillers) != len(optimizers) or not distillers:
            raise ValueError("SharedStep needs one optimizer per distiller (and at least one distiller)")
        if warmup < 1:
            raise ValueError("warmup must be >= 1 (SGD builds its momentum buffers in its first step)")
        self.device = torch.device(device)
        forwards = forwards or [None] * len(distillers)
        self.members = [StepMember(d, o, f, i) for i, (d, o, f) in enumerate(zip(distillers, optimizers, forwards))]
        self.teacher = teacher
        # The teacher map a member reads besides the last one (FitNet's hint layer), computed once for all.
        hint_layers = {d.teacher_hint_layer for d in distillers if d.teacher_hint_layer is not None}
        if len(hint_layers) > 1:
            raise ValueError(f"members read different teacher hint layers {sorted(hint_layers)}; train them apart")
        self.hint_layer = next(iter(hint_layers), None)
        self.use_graph = bool(cuda_graph) and self.device.type == "cuda"
        self.warmup, self.amp = warmup, amp
        self.stack = StackedStudents([d.student for d in distillers]) if stack else None
        self.use_streams = streams and len(self.members) > 1 and self.stack is None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = 0  # how many times a graph was recorded (1 + one per lr change)
        self.replays = 0
        self.eager_steps = 0
        self._full_batch: int | None = None  # the batch size of the graph (the first batch's)
        self._key = None
        self._static: tuple | None = None
        self._streams: list[torch.cuda.Stream] = []
        self._side: torch.cuda.Stream | None = None
        self._capturing = False

    # ------------------------------------------------------------------ one step
    def __call__(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None = None) -> None:
        if self._full_batch is None:
            self._full_batch = len(y)
        if not self.use_graph or len(y) != self._full_batch:
            self._eager(x, y, teacher_out)  # CPU, or the last partial batch of an epoch
            return
        if self.graph is None and self.eager_steps < self.warmup:
            self._eager(x, y, teacher_out, side_stream=True)
            return
        key = (tuple(x.shape), x.stride(), teacher_out is None, tuple(m.lrs() for m in self.members))
        if self.graph is None or key != self._key:
            self._capture(x, y, teacher_out)
            self._key = key
        static_x, static_y, static_t = self._static
        static_x.copy_(x)
        static_y.copy_(y)
        if static_t is not None:
            for static, given in zip(static_t, teacher_out):
                if static is not None:
                    static.copy_(given)
        self.graph.replay()
        self.replays += 1
        for member in self.members:
            member.seen += len(y)

    def take_metrics(self) -> list[tuple[dict[str, float], int, int]]:
        """Per member (loss sums over samples, correct predictions, samples seen); then reset to zero.

        The one host sync of an epoch. Resetting is in place: the graph keeps adding into these tensors.
        """
        return [member.take_metrics() for member in self.members]

    # ------------------------------------------------------------------ internals
    def _autocast(self):
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.use_graph)
        return contextlib.nullcontext()

    def _teacher_out(self, x: Tensor, teacher_out: TeacherOutputs | None) -> TeacherOutputs | None:
        if teacher_out is not None or self.teacher is None:
            return teacher_out
        with self._autocast():
            return self.teacher(x, self.hint_layer)  # FrozenTeacher: no_grad, features + logits (+ hint map)

    def unstack(self) -> None:
        """End of training with `stack=True`: every student gets its own storage back."""
        if self.stack is not None:
            self.stack.unstack()
            self.stack = None

    def _body(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None, set_to_none: bool) -> None:
        teacher_out = self._teacher_out(x, teacher_out)
        if self.stack is not None:
            self._stacked_body(x, y, teacher_out, set_to_none)
            return
        check = not self._capturing  # a NaN check is a host sync: eager steps only
        if not (self.use_streams and self._capturing):
            for member in self.members:
                member.step(x, y, teacher_out, set_to_none=set_to_none, autocast=self._autocast, check=check)
            return
        main = torch.cuda.current_stream()
        for member, stream in zip(self.members, self._streams):
            stream.wait_stream(main)  # fork after the shared teacher forward
            with torch.cuda.stream(stream):
                member.step(x, y, teacher_out, set_to_none=set_to_none, autocast=self._autocast, check=check)
        for stream in self._streams:
            main.wait_stream(stream)  # join: every member's step is part of the graph

    def _stacked_body(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None, set_to_none: bool) -> None:
        """Every member's step with one batched encoder forward and one backward of the summed losses
        (each student's loss depends only on its own slice, so each gets its own gradient)."""
        with self._autocast():
            with self.stack.reading(x):
                outputs = [m.losses(x, y, teacher_out, check=not self._capturing) for m in self.members]
            loss = sum(total for _, _, total in outputs)
        for member in self.members:
            member.optimizer.zero_grad(set_to_none=set_to_none)
        self.stack.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.stack.share_grads()
        for member, (logits, losses, _) in zip(self.members, outputs):
            member.finish(logits, losses, y)

    def _eager(self, x, y, teacher_out, side_stream: bool = False) -> None:
        # Before a graph exists: set_to_none=True, exactly `fit`'s eager step. Afterwards the gradient
        # tensors belong to the graph and are zeroed in place instead (0 + g = g: the same numbers).
        set_to_none = self.graph is None
        if side_stream:  # PyTorch's recipe: warm up on a side stream before capturing
            if self._side is None:
                self._side = torch.cuda.Stream(self.device)
            self._side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._side):
                self._body(x, y, teacher_out, set_to_none)
            torch.cuda.current_stream().wait_stream(self._side)
        else:
            self._body(x, y, teacher_out, set_to_none)
        self.eager_steps += 1
        for member in self.members:
            member.seen += len(y)

    def _capture(self, x: Tensor, y: Tensor, teacher_out: TeacherOutputs | None) -> None:
        """Record one step on static copies of this batch (recording runs nothing: `__call__` replays)."""
        self.graph = None  # frees the previous graph's memory pool (an lr change)
        static_x, static_y = torch.empty_like(x), torch.empty_like(y)
        static_t = None if teacher_out is None else TeacherOutputs(
            *(None if t is None else torch.empty_like(t) for t in teacher_out))
        if self.use_streams and not self._streams:
            self._streams = [torch.cuda.Stream(self.device) for _ in self.members]
        for member in self.members:
            # Gradients are born inside the graph (its memory pool) and rewritten by every replay.
            member.optimizer.zero_grad(set_to_none=True)
        if self.stack is not None:
            self.stack.zero_grad(set_to_none=True)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        self._capturing = True
        try:
            with torch.cuda.graph(graph):
                self._body(static_x, static_y, static_t, set_to_none=False)
        finally:
            self._capturing = False
        self.graph, self._static = graph, (static_x, static_y, static_t)
        self.captures += 1


def to_device(batch: tuple, device: torch.device, memory_format=torch.contiguous_format) -> tuple:
    """One (x, y, teacher_out or None) batch on `device`, x in `memory_format`."""
    x, y, teacher_out = batch
    x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    y = y.to(device, non_blocking=True)
    if teacher_out is not None:
        teacher_out = TeacherOutputs(*(None if t is None else t.to(device) for t in teacher_out))
    return x, y, teacher_out


def run_epoch(step: SharedStep, batches, device: torch.device, memory_format=torch.contiguous_format) -> None:
    """Feed one epoch of `batches.epoch(...)`-style (x, y, teacher_out) batches to `step`."""
    for batch in batches:
        step(*to_device(batch, device, memory_format))
