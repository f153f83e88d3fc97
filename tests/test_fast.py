"""The speed layer: BN folding on every zoo model, the prepared teacher, on-device augmentation and batches."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset
from torchvision import datasets, transforms
from torchvision.transforms import functional as TF

from simkd_lite.distillers import create_distiller
from simkd_lite.training import device_data, step
from simkd_lite.training import teacher_prep as fast
from simkd_lite.training.device_data import DeviceTensorBatches, GpuAugment, crop_flip, to_uint8_tensors
from simkd_lite.training.step import autocast_context, distill_step
from simkd_lite.training.teacher_prep import fold_batchnorm, maybe_compile, prepare_teacher
from simkd_lite.training.batches import TensorBatches
from simkd_lite.training.loop import TrainConfig, make_optimizer
from simkd_lite.models import create_model, list_models

MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that a wrong fold changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ------------------------------------------------------------------------------ fold_batchnorm
@pytest.mark.parametrize("name", list_models())
def test_fold_batchnorm_matches_every_zoo_model(name):
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name, num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(folded.folded_batchnorms) == n_bn and folded.unfolded_batchnorms == []  # full coverage in our zoo
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert not folded.training
    with torch.no_grad():
        feats, ref_feats = folded.forward_features(x), model.forward_features(x)
        ref_logits = model.forward_head(ref_feats)
        assert rel_err(feats, ref_feats) < 1e-4
        assert rel_err(folded.forward_head(feats), ref_logits) < 1e-4
        assert rel_err(folded(x), ref_logits) < 1e-4
    assert torch.equal(folded.get_classifier().weight, model.get_classifier().weight)
    assert folded.feature_channels == model.feature_channels and folded.model_name == name


def test_fold_batchnorm_would_be_caught_if_wrong():
    # The randomised statistics matter: dropping the BNs (folding nothing into the convs) is far off.
    model = randomize_batchnorm(create_model("resnet8", 10))
    broken = fold_batchnorm(model)
    for m in broken.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.data.zero_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(broken(x), model(x)) > 1e-2


class _InPlaceBetween(nn.Module):
    """conv1 -> in-place ReLU -> bn1 (NOT foldable), and a shared conv2/bn2 used twice (not foldable)."""

    in_channels = 3

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        x = self.bn1(F.relu_(self.conv1(x)))
        x = self.bn2(self.conv2(self.bn2(self.conv2(x))))
        return self.bn3(self.conv3(x))


def test_fold_batchnorm_skips_pairs_that_are_not_direct():
    model = randomize_batchnorm(_InPlaceBetween())
    folded = fold_batchnorm(model)
    assert folded.folded_batchnorms == [("conv3", "bn3")]
    assert sorted(folded.unfolded_batchnorms) == ["bn1", "bn2"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert rel_err(folded(x), model(x)) < 1e-5


# ------------------------------------------------------------------------------ prepared teacher
def test_prepared_teacher_equals_plain_teacher_and_keeps_the_api():
    teacher = randomize_batchnorm(create_model("resnet14", 10))
    prepared = prepare_teacher(teacher)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(prepared.forward_features(x), teacher.forward_features(x)) < 1e-4
        assert rel_err(prepared(x), teacher(x)) < 1e-4
    assert prepared.forward_features(x).is_contiguous(memory_format=torch.channels_last)
    for attr in ("feature_channels", "classifier_on_features", "num_classes", "in_channels", "model_name"):
        assert getattr(prepared, attr) == getattr(teacher, attr)
    assert prepared.get_classifier() is prepared.model.get_classifier()
    assert not any(p.requires_grad for p in prepared.parameters())
    assert prepared.train().training is False  # stays in eval mode
    assert prepared.compile_seconds is None and not prepared.compiled
    assert any(p.requires_grad for p in teacher.parameters())  # the original is untouched
    # usable as a SimKD teacher, and the prepared path gives the same loss as the plain one
    student = create_model("resnet8_w8", 10)
    a = create_distiller("simkd", student, teacher)
    b = create_distiller("simkd", student, prepared)
    y = torch.randint(0, 10, (4,))
    a.projector.load_state_dict(b.projector.state_dict())
    loss_a = a.forward_train(x, y)[1]["simkd"]
    loss_b = b.forward_train(x, y, step.teacher_outputs(prepared, x))[1]["simkd"]
    assert abs(loss_a.item() - loss_b.item()) < 1e-5 * max(1.0, abs(loss_a.item()))


def test_prepared_teacher_compile_path_records_compile_seconds():
    # The "eager" backend runs Dynamo's tracing without code generation: seconds, not a minute.
    teacher = create_model("resnet8_w8", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_teacher(teacher, compile=True, compile_options={"backend": "eager"})
        x = torch.randn(2, 3, 16, 16)
        out = prepared.forward_features(x)
    if not fast.compile_available():
        pytest.skip("torch.compile unavailable here")
    assert prepared.compiled and prepared.compile_seconds > 0
    with torch.no_grad():
        assert rel_err(out, teacher.eval().forward_features(x)) < 1e-4


def test_maybe_compile_identity_when_disabled_and_falls_back_when_compile_fails(monkeypatch):
    def f(x):
        return x * 2

    assert maybe_compile(f, False) is f
    module = nn.Linear(2, 2)
    assert maybe_compile(module, False) is module

    def broken_compile(fn, **options):
        def call(*args, **kwargs):
            raise RuntimeError("no compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(fast, "compile_available", lambda: True)
    monkeypatch.setattr(fast, "_WARNED", set())
    g = maybe_compile(f, True)
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        assert g(torch.ones(1)).item() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert g(torch.ones(1)).item() == 2
    # a genuine error is still raised
    with pytest.raises(TypeError):
        maybe_compile(lambda x: x + "a", True)(torch.ones(1))
    # unavailable: identity and a warning
    monkeypatch.setattr(fast, "compile_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="not available"):
        assert maybe_compile(f, True) is f


def test_autocast_context_is_a_noop_on_cpu():
    with autocast_context("cpu", True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


# ------------------------------------------------------------------------------ GpuAugment
def _uint8_images(n=6, c=3, h=12, w=10, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_gpu_augment_without_crop_or_flip_is_totensor_normalize():
    images = _uint8_images()
    out = GpuAugment(MEAN, STD, padding=0, flip=False)(images)
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    expected = torch.stack([reference(img.permute(1, 2, 0).numpy()) for img in images])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_crop_flip_at_fixed_offsets_equals_torchvision():
    images = _uint8_images()
    n = len(images)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [8, 0], [1, 7], [4, 4]])
    flips = torch.tensor([False, True, False, True, True, False])
    out = crop_flip(images, offsets, flips, padding=4)
    for i in range(n):
        img = TF.crop(TF.pad(images[i], [4]), int(offsets[i, 0]), int(offsets[i, 1]), 12, 10)
        if flips[i]:
            img = TF.hflip(img)
        assert torch.equal(out[i], img), i
    # a smaller output crop (RandomCrop(size) with size < H) works the same way
    small = crop_flip(images, offsets.clamp(max=4), flips, padding=2, size=(8, 8))
    for i in range(n):
        img = TF.crop(TF.pad(images[i], [2]), int(offsets[i, 0].clamp(max=4)), int(offsets[i, 1].clamp(max=4)), 8, 8)
        assert torch.equal(small[i], TF.hflip(img) if flips[i] else img)


def test_gpu_augment_uses_its_offsets_and_is_seeded():
    images = _uint8_images(n=200, h=8, w=8)
    aug = GpuAugment(MEAN, STD, padding=4)
    a = aug(images, torch.Generator().manual_seed(1))
    b = aug(images, torch.Generator().manual_seed(1))
    c = aug(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    offsets, flips = aug.sample(images, torch.Generator().manual_seed(1))
    expected = device_data.normalize_uint8(crop_flip(images, offsets, flips, 4), aug.mean, aug.std)
    assert torch.equal(a, expected)
    assert offsets.min() >= 0 and offsets.max() <= 8 and len(offsets.unique()) == 9
    # flips about half the time (200 draws: 4 sigma is +-28)
    big_offsets, big_flips = aug.sample(_uint8_images(n=4000, h=4, w=4), torch.Generator().manual_seed(3))
    assert abs(big_flips.float().mean().item() - 0.5) < 0.03
    assert abs(big_offsets.float().mean().item() - 4.0) < 0.15
    with pytest.raises(TypeError):
        aug(images.float())


# ------------------------------------------------------------------------------ batches on the device
def test_device_tensor_batches_follow_tensor_batches_order():
    images = torch.randn(50, 3, 4, 4)
    labels = torch.arange(50)
    reference = TensorBatches(images, labels, None, batch_size=16, seed=3)
    ours = DeviceTensorBatches(images, labels, None, batch_size=16, seed=3, device="cpu")
    assert len(ours) == len(reference) == 4
    for epoch in (0, 1):
        pairs = list(zip(reference.epoch(epoch), ours.epoch(epoch), strict=True))
        for (x_ref, y_ref, _), (x, y, none) in pairs:
            assert torch.equal(y, y_ref) and torch.equal(x, x_ref) and none is None


def test_device_tensor_batches_augment_uint8_reproducibly():
    images, labels = _uint8_images(n=20, h=8, w=8), torch.arange(20)
    aug = GpuAugment(MEAN, STD, padding=2)
    batches = DeviceTensorBatches(images, labels, aug, batch_size=8, seed=0, device="cpu")
    first = [x for x, _, _ in batches.epoch(0)]
    again = [x for x, _, _ in batches.epoch(0)]
    other = [x for x, _, _ in batches.epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].dtype == torch.float32 and first[0].shape == (8, 3, 8, 8)
    assert not torch.equal(first[0], other[0])


def test_to_uint8_tensors_reads_cifar_and_fashion_mnist_layouts():
    class FakeCifar(datasets.VisionDataset):  # CIFAR: numpy (N, H, W, C), targets a list
        def __init__(self):
            super().__init__("unused")
            self.data = np.random.default_rng(0).integers(0, 256, (10, 6, 5, 3), dtype=np.uint8)
            self.targets = list(range(10))

    class FakeFashion(datasets.VisionDataset):  # Fashion-MNIST: tensor (N, H, W), targets a tensor
        def __init__(self):
            super().__init__("unused")
            self.data = torch.randint(0, 256, (10, 7, 7), dtype=torch.uint8)
            self.targets = torch.arange(10)

    cifar = FakeCifar()
    images, labels = to_uint8_tensors(cifar)
    assert images.shape == (10, 3, 6, 5) and images.dtype == torch.uint8 and labels.dtype == torch.long
    assert torch.equal(images[4], torch.from_numpy(cifar.data[4]).permute(2, 0, 1))
    nested = Subset(Subset(cifar, [9, 7, 5, 3]), [3, 0])  # -> base items 3, 9
    sub_images, sub_labels = to_uint8_tensors(nested)
    assert sub_labels.tolist() == [3, 9] and torch.equal(sub_images[1], images[9])
    f_images, f_labels = to_uint8_tensors(Subset(FakeFashion(), [2, 4]))
    assert f_images.shape == (2, 1, 7, 7) and f_labels.tolist() == [2, 4]
    with pytest.raises(TypeError):
        to_uint8_tensors(torch.utils.data.TensorDataset(torch.zeros(2, 1)))


# ------------------------------------------------------------------------------ one step
def test_distill_step_on_prepared_teacher_trains():
    torch.manual_seed(0)
    teacher = create_model("resnet8", 10)
    distiller = create_distiller("simkd", create_model("resnet8_w8", 10), teacher)
    prepared = prepare_teacher(teacher, channels_last=False)
    optimizer = make_optimizer([p for p in distiller.parameters() if p.requires_grad], TrainConfig(lr=0.05))
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    losses = [distill_step(distiller.forward_train, x, y, optimizer, teacher=prepared)[2].item() for _ in range(5)]
    assert losses[-1] < losses[0]


def test_uint8_path_on_the_cifar_fixture_equals_the_dataset_transform(tmp_path):
    # The real pipeline: our CIFAR-100 loader (a seeded Subset), read raw, normalised on the "device".
    from simkd_lite.data import load_dataset
    from simkd_lite.data.fixtures import write_cifar_fixture
    from simkd_lite.training.loop import materialize

    write_cifar_fixture(tmp_path, "cifar100", n_train=60, n_test=10)
    bundle = load_dataset("cifar100", root=tmp_path, train_subset=40, augment=False)
    images, labels = to_uint8_tensors(bundle.train)
    expected_x, expected_y = materialize(bundle.train)
    assert images.shape == (40, 3, 32, 32) and torch.equal(labels, expected_y)
    normalised = GpuAugment(bundle.info.mean, bundle.info.std, padding=0, flip=False)(images)
    torch.testing.assert_close(normalised, expected_x, rtol=0, atol=1e-6)
