"""Scale-out with PyTorch's own engine: `torchrun --nproc_per_node=N -m simkd_lite distill ...`.

torchrun starts N processes and sets RANK / WORLD_SIZE / LOCAL_RANK; each process trains a replica
wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA) on its shard of every epoch, gradients
are averaged, and only rank 0 logs, shows progress and writes checkpoints.

`--batch-size` is the *global* batch, as in the official code (its train_student.py divides it by
the number of GPUs): each process takes `batch_size // world_size` images per step, so the learning
rate keeps meaning what it means on one GPU. A batch that does not divide is refused.
"""
from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun prepared; returns this rank's device."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def planned_world_size() -> int:
    """The number of processes of this run: the process group's, else torchrun's WORLD_SIZE, else 1."""
    if is_distributed():
        return dist.get_world_size()
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def batch_size_per_process(batch_size: int, world: int | None = None) -> int:
    """Each process's share of the global `batch_size` (`world` processes; default: this run's).

    Raises ValueError when it does not divide: the global batch the recipe asks for would change.
    """
    world = planned_world_size() if world is None else world
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} is the global batch and must divide among the {world} "
                         f"processes (each takes batch_size // world_size): choose a multiple of {world}, "
                         f"e.g. {max(world, batch_size - batch_size % world)}.")
    return batch_size // world


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank.

    DDP averages gradients, so parameters stay identical, but each rank updates its BN statistics
    on its own last batch; rank 0's are the canonical ones (DDP broadcasts them before every forward).
    """
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def parameters_digest(module: nn.Module) -> str:
    """sha256 of every parameter and buffer, in state_dict order: equal digests = equal replicas."""
    digest = hashlib.sha256()
    for value in module.state_dict().values():
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_digests(module: nn.Module) -> list[str]:
    """The digest of every rank's replica (a one-element list when not distributed)."""
    mine = parameters_digest(module)
    if not is_distributed():
        return [mine]
    everyone: list[str | None] = [None] * world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


class TrainStep(nn.Module):
    """`forward` = the distiller's `forward_train`, so DDP's gradient hooks see the training step."""

    def __init__(self, distiller: nn.Module):
        super().__init__()
        self.distiller = distiller

    def forward(self, x, y, teacher_out=None):
        return self.distiller.forward_train(x, y, teacher_out)
