"""Several students of one architecture run as one batched network: the joint step's encoder in one call.

    stack = StackedStudents([d.student for d in distillers])   # each student's weights become a slice
    with stack.reading(x):                                     # all encoders in one vmapped call
        outputs = [d.forward_train(x, y, teacher_out) for d in distillers]   # each reads its own slice
    sum(losses).backward(); stack.share_grads(); each optimizer.step()

Why: in the comparison row (vanilla, KD, FitNet and SimKD students trained together by `training.loop.fit`), the four
students have the same encoder, so their convolutions can run as one grouped convolution instead of
four small ones; at the official batch size 64 a GPU step is dominated by kernel launches, not by
arithmetic (see benchmarks/README.md). `torch.func.vmap` over `functional_call` does the batching.

Why it is the same math: each student's encoder weights and BatchNorm buffers are stored as one slice
of a stacked tensor (the student's own `Parameter` objects keep their identity, their data become views
of the stack), so
- the forward of slice i uses exactly student i's weights, and BatchNorm updates student i's running
  statistics (vmap keeps the batch statistics per slice);
- the summed loss of all students has, for slice i, the gradient of student i's loss only;
- `share_grads` hands each student's parameters their slice of the stacked gradient, and each
  student's own optimizer steps them in place, with its own momentum: the stack sees the update.
Only float rounding differs (a grouped convolution sums in another order). The classifier is not stacked:
a student that never uses its own head (SimKD) keeps gradients of None there, as in its own run.

Eligible students: zoo models of one class and one set of shapes whose `forward`, `forward_features`
and `forward_feature_list` are `ZooModel`'s, i.e. derived from `forward_stages` + the head.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from simkd_lite.models.registry import ZooModel

_DERIVED = ("forward", "forward_features", "forward_feature_list")


def stacking_unsupported(students: Sequence[nn.Module]) -> str | None:
    """Why `students` cannot be stacked (None: they can)."""
    if len(students) < 2:
        return "there is only one student"
    first = students[0]
    if not isinstance(first, ZooModel):
        return f"{type(first).__name__} is not a zoo model"
    if any(getattr(type(first), name) is not getattr(ZooModel, name) for name in _DERIVED):
        return f"{type(first).__name__} computes its outputs other than from forward_stages and its head"
    shapes = [[(n, tuple(t.shape)) for n, t in s.state_dict().items()] for s in students]
    if any(type(s) is not type(first) or shape != shapes[0] for s, shape in zip(students, shapes)):
        return "the students differ in architecture"
    return None


class _Stages(nn.Module):
    """`forward` = the wrapped model's `forward_stages`: what `functional_call` runs on the stack."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_stages(x)


class StackedStudents:
    """The encoders of `students` as one stack; see the module docstring for the contract."""

    def __init__(self, students: Sequence[nn.Module]):
        reason = stacking_unsupported(students)
        if reason is not None:
            raise ValueError(f"cannot stack these students: {reason}")
        self.students = list(students)
        head = {id(p) for p in students[0].get_classifier().parameters()}
        names = [n for n, p in students[0].named_parameters() if id(p) not in head]
        self._student_params = [dict(s.named_parameters()) for s in students]
        self.params: dict[str, Tensor] = {}  # name -> (num_students, *shape), the leaf autograd sees
        with torch.no_grad():
            for name in names:
                # contiguous: stacked channels_last weights gave gradients 0.5% off under vmap (torch 2.14,
                # CPU; tests/test_together.py checks the gradients against float64)
                stack = torch.stack([p[name].detach() for p in self._student_params]).contiguous()
                self.params[name] = stack.requires_grad_(True)
                for i, params in enumerate(self._student_params):
                    params[name].data = stack.detach()[i]  # same Parameter object, data now a view
            self.buffers: dict[str, Tensor] = {}
            per_student_buffers = [dict(s.named_buffers()) for s in students]
            for name in per_student_buffers[0]:
                stack = torch.stack([b[name] for b in per_student_buffers])
                self.buffers[name] = stack
                for i, buffers in enumerate(per_student_buffers):
                    buffers[name].data = stack[i]
        # A weightless copy runs the functional forward; the weights always come from the stack.
        self._stages = _Stages(copy.deepcopy(students[0]).to("meta"))
        self._batched = vmap(self._one_student, in_dims=(0, 0, None))  # random ops refused: no same-math claim

    def _one_student(self, params: dict, buffers: dict, x: Tensor) -> list[Tensor]:
        named = ({f"model.{k}": v for k, v in params.items()}, {f"model.{k}": v for k, v in buffers.items()})
        return functional_call(self._stages, named, (x,))

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every student's `forward_stages(x)`: a list of (num_students, N, C_k, H_k, W_k) maps."""
        return self._batched(self.params, self.buffers, x)

    @contextlib.contextmanager
    def reading(self, x: Tensor):
        """Inside: student i's `forward_stages` (and so its forward, forward_features and
        forward_feature_list) returns its slice of one batched forward of `x`."""
        self._stages.train(self.students[0].training)  # BatchNorm: batch statistics in training mode
        stages = self.forward_stages(x)
        for i, student in enumerate(self.students):
            # an instance attribute shadows the method; ZooModel's derived methods call it
            student.forward_stages = (lambda maps: lambda _x: maps)([s[i] for s in stages])
        try:
            yield
        finally:
            for student in self.students:
                del student.forward_stages

    def zero_grad(self, set_to_none: bool = True) -> None:
        for stack in self.params.values():
            if set_to_none:
                stack.grad = None
            elif stack.grad is not None:
                stack.grad.zero_()

    def share_grads(self) -> None:
        """After backward: each student's stacked parameters get their slice of the stack's gradient."""
        for i, params in enumerate(self._student_params):
            for name, stack in self.params.items():
                params[name].grad = None if stack.grad is None else stack.grad[i]

    def unstack(self) -> None:
        """Give every student its own storage again (after training: the students are independent)."""
        with torch.no_grad():
            for student in self.students:
                for tensor in (*student.parameters(), *student.buffers()):
                    tensor.data = tensor.data.clone()
                    if tensor.grad is not None:
                        tensor.grad = None
