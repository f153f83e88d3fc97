"""Where and how a run executes: device choice, float precision, seeding and the RNG state a resume restores."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from simkd_lite.errors import SimKDLiteError
from simkd_lite.training import distributed as ddp


def select_device(requested: str | None = None) -> torch.device:
    """`--device` if given, else the best available: cuda > mps > cpu."""
    if requested:
        try:
            device = torch.device(requested)
        except (RuntimeError, TypeError):  # torch: "Expected one of cpu, cuda, ... device type at start of ..."
            raise SimKDLiteError(f"--device {requested} is not a device: use cpu, cuda, cuda:N or mps "
                                 "(or leave it out for the best available)") from None
        if device.type not in ("cpu", "cuda", "mps"):
            raise SimKDLiteError(f"--device {requested}: simkd_lite runs on cpu, cuda or mps, not {device.type}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SimKDLiteError("--device cuda was requested but no CUDA GPU is visible (torch.cuda.is_available() "
                                 "is False).")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise SimKDLiteError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                                 f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise SimKDLiteError("--device mps was requested but Apple's MPS backend is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). On CPU this makes runs bitwise repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a training epoch draws from, to be stored in `last.pt`."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # NumPy's state as plain tensors and numbers, so `torch.load(weights_only=True)` can read it back.
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                   "has_gauss": has_gauss, "gauss": gauss}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # The shuffling order depends only on (seed, epoch): a resumed run replays it exactly.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """This process's sample indices for one epoch: a seeded permutation, or under DDP this rank's
    shard of one (DistributedSampler pads so that every rank gets the same number of batches)."""
    if ddp.is_distributed():
        sampler = DistributedSampler(range(n), ddp.world_size(), ddp.rank(), shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler))
    return torch.randperm(n, generator=epoch_generator(seed, epoch))


def set_tf32(enabled: bool) -> None:
    """TF32 on or off for CUDA matmuls *and* cuDNN convolutions (no effect on CPU / MPS).

    The official SimKD code trains in fp32. PyTorch leaves cuDNN's `allow_tf32` on by default, so on
    Ampere and newer GPUs convolutions would silently round their inputs to 10 mantissa bits; our GPU
    checks measured weights 5-18% apart after 14 steps with TF32 (benchmarks/README.md). The `paper`
    profile therefore turns both off (`TrainConfig.tf32 = False`); `--tf32` opts in for speed.
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def execution_record(config) -> dict:
    """What `OUT/config.json` records about how the run executes: TF32 and the DDP batch split.

    `batch_size` is the global batch (the recipe's: 64 for the paper); each of `world_size` processes
    trains on `batch_size_per_process` of it. Raises ValueError when the batch does not divide.
    """
    world = ddp.planned_world_size()
    return {"tf32": bool(config.tf32), "batch_size": config.batch_size, "world_size": world,
            "batch_size_per_process": ddp.batch_size_per_process(config.batch_size, world)}
