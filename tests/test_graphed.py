"""The CUDA-graph training step: the same math as the eager loop (CPU: the same code, bitwise; CUDA: to float
tolerance, the CUDA tests skip without a GPU), and the reasons a run stays eager."""
import copy
from dataclasses import replace

import pytest
import torch

from simkd_lite.data import load_dataset
from simkd_lite.distillers import create_distiller
from simkd_lite.training.device_data import DeviceTensorBatches, GpuAugment
from simkd_lite.training.step import distill_step
from simkd_lite.training.teacher_prep import prepare_teacher
from simkd_lite.training.graphed import SharedStep, graph_unsupported, run_epoch
from simkd_lite.training.loop import TrainConfig, fit, make_optimizer, make_scheduler
from simkd_lite.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def deterministic_cuda():
    """Deterministic cuDNN algorithms, no TF32: eager and graphed steps then run the very same kernels, so any
    difference is a bug, not rounding that training amplifies (seen on an H200 with benchmark mode and TF32:
    losses equal to 1e-3 over 14 steps, yet weights 5.6% apart; benchmarks/gpu_control.py measured eager vs
    eager 17.8% apart under those settings, and eager vs graph bitwise equal with these)."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
PAPER = TrainConfig(epochs=2, batch_size=64, lr=0.05, milestones=(1,), augment=True, cuda_graph=True)


def simkd_pair(teacher="resnet8", student="resnet8_w8", classes=10, channels=3, seed=0):
    torch.manual_seed(seed)
    teacher_net = create_model(teacher, classes, channels)
    return create_distiller("simkd", create_model(student, classes, channels), teacher_net, factor=2)


def weights(distiller):
    return {k: v.detach().float().cpu().clone() for k, v in distiller.state_dict().items()
            if isinstance(v, torch.Tensor)}


def train_eager(distiller, batches, config, device, epochs):
    """`fit`'s eager loop body (distill_step with the prepared teacher), per-step losses returned."""
    optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], config)
    scheduler, _ = make_scheduler(optimizer, config, len(batches))
    teacher = prepare_teacher(distiller.teacher.model)
    losses = []
    for epoch in range(epochs):
        for x, y, _ in batches.epoch(epoch):
            x = x.contiguous(memory_format=torch.channels_last)
            _, _, loss = distill_step(distiller.forward_train, x, y, optimizer, teacher=teacher)
            losses.append(loss.item() * len(y))
        scheduler.step()
    return losses


def train_shared(distiller, batches, config, device, epochs, cuda_graph=True):
    """The same with `SharedStep`; per-step losses from its on-device sums (one sync per step, test only)."""
    optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], config)
    scheduler, _ = make_scheduler(optimizer, config, len(batches))
    from simkd_lite.distillers import FrozenTeacher

    step = SharedStep([distiller], [optimizer], teacher=FrozenTeacher(prepare_teacher(distiller.teacher.model)),
                      device=device, cuda_graph=cuda_graph)
    losses, total = [], 0.0
    for epoch in range(epochs):
        for batch in batches.epoch(epoch):
            run_epoch(step, [batch], device, torch.channels_last)
            now = step.members[0].sums["simkd"].item()
            losses.append(now - total)
            total = now
        scheduler.step()
    return losses, step


# ------------------------------------------------------------------------------------------------- CPU
def test_graph_unsupported_names_the_reason():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert "CUDA device" in graph_unsupported(PAPER, cpu)
    if hasattr(torch.cuda, "CUDAGraph"):
        assert graph_unsupported(PAPER, gpu) is None
        assert "AdamW" in graph_unsupported(replace(PAPER, optimizer="adam"), gpu) or \
            "adam" in graph_unsupported(replace(PAPER, optimizer="adam"), gpu)
        assert "every step" in graph_unsupported(replace(PAPER, schedule="onecycle"), gpu)
        assert "compile" in graph_unsupported(replace(PAPER, compile_student=True), gpu)
        assert "compile" in graph_unsupported(replace(PAPER, compile_teacher=True), gpu)
        assert "DDP" in graph_unsupported(PAPER, gpu, distributed=True)


def test_shared_step_validates_its_arguments():
    distiller = simkd_pair()
    optimizer = make_optimizer(distiller.parameters(), PAPER)
    with pytest.raises(ValueError, match="one optimizer per distiller"):
        SharedStep([distiller], [], device="cpu")
    with pytest.raises(ValueError, match="warmup"):
        SharedStep([distiller], [optimizer], device="cpu", warmup=0)


def _uint8_data(n, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_shared_step_on_cpu_is_bitwise_the_eager_loop():
    """CPU fallback: no graph, the very same step (and a partial last batch, and an lr milestone)."""
    images, labels = _uint8_data(2 * 16 + 5)
    batches = DeviceTensorBatches(images, labels, GpuAugment(MEAN, STD, padding=2), 16, seed=0, device="cpu")
    config = replace(PAPER, batch_size=16)
    ref, new = simkd_pair(), simkd_pair()
    assert all(torch.equal(a, b) for a, b in zip(weights(ref).values(), weights(new).values()))
    eager_losses = train_eager(ref, batches, config, "cpu", epochs=2)
    shared_losses, step = train_shared(new, batches, config, "cpu", epochs=2)
    assert step.captures == 0 and step.replays == 0 and step.eager_steps == 6
    assert shared_losses == pytest.approx(eager_losses, rel=1e-12)
    for key, value in weights(ref).items():
        assert torch.equal(value, weights(new)[key]), key
    sums, correct, seen = step.take_metrics()[0]
    assert seen == 2 * len(labels) and 0 <= correct <= seen and sums["simkd"] == pytest.approx(sum(eager_losses))
    assert step.take_metrics()[0] == ({"simkd": 0.0}, 0, 0)  # reset in place after reading


def test_fit_with_cuda_graph_on_cpu_falls_back_to_the_same_eager_run():
    digits = load_dataset("digits")
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, milestones=(1,), augment=False, cache_teacher=False,
                         device="cpu")
    runs = []
    for flag in (False, True):
        distiller = simkd_pair(channels=1)
        history = fit(distiller, digits.train, digits.test, replace(config, cuda_graph=flag), log=None)
        runs.append((weights(distiller), [{k: v for k, v in h.items() if k != "seconds"} for h in history]))
    (w0, h0), (w1, h1) = runs
    assert h0 == h1
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


# ------------------------------------------------------------------------------------------------ CUDA
def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@cuda
def test_graphed_step_matches_eager_on_cuda(deterministic_cuda):
    """ResNet-32x4 -> ResNet-8x4 SimKD, batch 64, fp32: 3 eager warm-up steps, capture, replays, a partial
    batch of 16 each epoch, and an lr milestone after epoch 1 (a recapture). Losses and weights vs eager."""
    device = torch.device("cuda")
    images, labels = _uint8_data(6 * 64 + 16, size=32)
    batches = DeviceTensorBatches(images, labels, GpuAugment(MEAN, STD, padding=4), 64, seed=0, device=device)
    ref = simkd_pair("resnet32x4", "resnet8x4", classes=100).to(device).to(memory_format=torch.channels_last)
    new = copy.deepcopy(ref)
    eager_losses = train_eager(ref, batches, PAPER, device, epochs=2)
    graph_losses, step = train_shared(new, batches, PAPER, device, epochs=2)
    assert step.captures == 2 and step.replays == 2 * 6 - 3 and step.eager_steps == 3 + 2
    # the first replayed step (step 4) starts from the same weights: the same loss
    assert graph_losses[3] == pytest.approx(eager_losses[3], rel=1e-6)
    assert graph_losses == pytest.approx(eager_losses, rel=1e-5)
    w_ref, w_new = weights(ref), weights(new)
    for key, value in w_ref.items():
        if value.is_floating_point() and value.numel() > 1:
            assert _rel(w_new[key], value) < 1e-4, key
    # and the graph really trained: the weights moved
    assert _rel(w_new["simkd.transfer.0.weight"], weights(simkd_pair("resnet32x4", "resnet8x4", 100))
                ["simkd.transfer.0.weight"]) > 1e-3


@cuda
def test_fit_with_cuda_graph_matches_eager_fit_on_cuda(tmp_path, deterministic_cuda):
    from simkd_lite.data import write_cifar_fixture

    write_cifar_fixture(tmp_path, "cifar100", n_train=5 * 64 + 16, n_test=100)
    bundle = load_dataset("cifar100", tmp_path)
    from simkd_lite.experiments.jobs import on_device_augment

    results = []
    for flag in (False, True):
        distiller = simkd_pair("resnet32x4", "resnet8x4", classes=100)
        history = fit(distiller, bundle.train, bundle.test, replace(PAPER, device="cuda", cuda_graph=flag), log=None,
                      gpu_augment=on_device_augment(bundle.info, PAPER))
        results.append((weights(distiller), history))
    (w0, h0), (w1, h1) = results
    assert h1[0]["loss_simkd"] == pytest.approx(h0[0]["loss_simkd"], rel=1e-5)
    assert h1[-1]["test_top1"] == pytest.approx(h0[-1]["test_top1"], abs=2.0)
    for key, value in w0.items():
        if value.is_floating_point() and value.numel() > 1:
            assert _rel(w1[key], value) < 1e-4, key
