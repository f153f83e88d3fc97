"""The model zoo: official layouts, the uniform API, the registry, and the small CPU models."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from simkd_lite.models import (OFFICIAL_CIFAR_MODELS, count_parameters, create_model, list_models,
                               register_model)
from simkd_lite.models import registry as registry_module
from simkd_lite.models.resnet import BasicBlock

SHARED_JSON = Path(__file__).parents[1].parent / "shared" / "reference" / "official_cifar_state_dicts.json"
FIXTURE_JSON = Path(__file__).parent / "fixtures" / "official_cifar_state_dicts.json"
SMALL_MODELS = ("resnet8", "resnet14", "resnet20", "resnet8x2", "resnet8_w8")
TEACHERS = {"resnet8x4", "resnet14x4", "resnet32x4", "resnet38x4", "resnet14x2", "resnet38x2",
            "resnet110x2", "resnet38", "resnet110", "resnet116", "vgg8", "vgg13", "ShuffleV1"}


def _reference():
    # The shared reference if this checkout sits next to it, else the copy committed with the tests.
    path = SHARED_JSON if SHARED_JSON.exists() else FIXTURE_JSON
    return json.loads(path.read_text())


REF = _reference()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x32():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))


@pytest.fixture(scope="module")
def built(x32):
    """name -> (model in eval mode, its features, its logits), computed once per test module."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            model = create_model(name, num_classes=100).eval()
            with torch.no_grad():
                feats = model.forward_features(x32)
                cache[name] = (model, feats, model.forward_head(feats))
        return cache[name]

    return get


def _randomise_bn_buffers(model, seed):
    """Non-trivial running statistics, so that buffers matter in the comparisons below."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(1.0 + 0.5 * torch.rand(m.running_var.shape, generator=g))


# ---------------------------------------------------------------- official layouts

def test_fixture_copy_matches_shared_reference():
    if not SHARED_JSON.exists():
        pytest.skip("no ../shared checkout; the committed fixture is the reference")
    assert json.loads(FIXTURE_JSON.read_text()) == json.loads(SHARED_JSON.read_text())


def test_official_names_are_exactly_the_seventeen_of_the_reference():
    assert len(OFFICIAL_CIFAR_MODELS) == 17 == len(set(OFFICIAL_CIFAR_MODELS))
    assert set(OFFICIAL_CIFAR_MODELS) == set(REF)
    assert set(OFFICIAL_CIFAR_MODELS) <= set(list_models())


@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS)
def test_state_dict_keys_shapes_and_params_match_official(name, built):
    model, _, _ = built(name)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    expected = list(REF[name]["state_dict"].items())
    assert [k for k, _ in got] == [k for k, _ in expected]  # same keys, same order
    assert got == [(k, list(s)) for k, s in expected]
    assert count_parameters(model) == REF[name]["params"]


@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS)
def test_uniform_api_shapes_and_head_consistency(name, built, x32):
    model, feats, head_logits = built(name)
    assert tuple(feats.shape) == (2, *REF[name]["feat_m2_shape"])
    assert model.feature_channels == feats.shape[1]
    assert (model.num_classes, model.in_channels) == (100, 3)
    with torch.no_grad():
        logits = model(x32)
    assert tuple(logits.shape) == (2, *REF[name]["logit_shape"])
    assert torch.isfinite(logits).all()
    assert torch.equal(head_logits, logits)  # forward_head(forward_features(x)) is model(x), exactly

    fc = model.get_classifier()
    assert type(fc) is nn.Linear and fc.out_features == 100
    assert model.classifier_on_features == (name in TEACHERS)
    # A SimKD teacher's classifier must read the pooled forward_features directly.
    assert (fc.in_features == model.feature_channels) == model.classifier_on_features
    if model.classifier_on_features:
        with torch.no_grad():
            pooled = feats.mean(dim=(2, 3))
            torch.testing.assert_close(fc(pooled), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS)
def test_official_checkpoint_round_trip(name, built, x32, tmp_path):
    torch.manual_seed(1)
    original = create_model(name, num_classes=100).eval()
    _randomise_bn_buffers(original, seed=7)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": original.state_dict(), "epoch": 240, "best_acc": 0.0}, path)

    torch.manual_seed(2)
    restored = create_model(name, num_classes=100).eval()
    first_key = next(iter(original.state_dict()))
    assert not torch.equal(restored.state_dict()[first_key], original.state_dict()[first_key])
    restored.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    with torch.no_grad():
        assert torch.equal(restored(x32), original(x32))


# ---------------------------------------------------------------- in_channels, small inputs

@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS + SMALL_MODELS)
def test_in_channels_changes_only_the_first_conv(name):
    rgb = {k: tuple(v.shape) for k, v in create_model(name, num_classes=10).state_dict().items()}
    gray_model = create_model(name, num_classes=10, in_channels=1)
    gray = {k: tuple(v.shape) for k, v in gray_model.state_dict().items()}
    assert list(gray) == list(rgb)
    changed = [k for k in rgb if rgb[k] != gray[k]]
    first_conv = next(m for m in gray_model.modules() if isinstance(m, nn.Conv2d))
    assert len(changed) == 1 and gray[changed[0]] == tuple(first_conv.weight.shape)
    assert gray[changed[0]][1] == 1 and rgb[changed[0]][1] == 3
    assert gray_model.in_channels == 1


@pytest.mark.parametrize("name", SMALL_MODELS + ("resnet8x4",))
def test_fashion_mnist_28px_grayscale_input(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert tuple(feats.shape) == (2, model.feature_channels, 7, 7)
    assert tuple(logits.shape) == (2, 10)
    assert torch.equal(model.forward_head(feats), logits)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_digits_8px_input(name):
    model = create_model(name, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 1, 8, 8))
    assert tuple(feats.shape) == (2, model.feature_channels, 2, 2)
    assert tuple(model.forward_head(feats).shape) == (2, 10)


def test_small_model_layouts():
    expected = {  # name: (depth, num_filters)
        "resnet8": (8, [16, 16, 32, 64]), "resnet14": (14, [16, 16, 32, 64]),
        "resnet20": (20, [16, 16, 32, 64]), "resnet8x2": (8, [16, 32, 64, 128]),
        "resnet8_w8": (8, [8, 8, 16, 32]),
    }
    for name, (depth, filters) in expected.items():
        model = create_model(name, num_classes=10, in_channels=1)
        assert (model.depth, model.num_filters) == (depth, filters)
        assert len(model.layer1) == (depth - 2) // 6
        assert model.classifier_on_features and model.feature_channels == filters[3]
    # resnet8: stem + 3 stages x 1 block x 2 convs = 7 convs (+ fc = 8 layers), plus 1x1 shortcut
    # convs in layer2 and layer3 only (layer1 keeps 16 channels at stride 1: identity shortcut).
    convs = [m for m in create_model("resnet8").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7 + 2


def test_seeded_construction_is_deterministic():
    torch.manual_seed(5)
    a = create_model("resnet8_w8", num_classes=10, in_channels=1).state_dict()
    torch.manual_seed(5)
    b = create_model("resnet8_w8", num_classes=10, in_channels=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = create_model("resnet8_w8", num_classes=10, in_channels=1).train()
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- block arithmetic

def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)


@pytest.mark.parametrize("stride,in_planes,planes", [(1, 8, 8), (2, 8, 16)])
def test_resnet_basic_block_matches_hand_written_functional_version(stride, in_planes, planes):
    torch.manual_seed(0)
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    block = BasicBlock(in_planes, planes, stride, downsample).eval()
    _randomise_bn_buffers(block, seed=3)
    for m in block.modules():  # non-trivial affine BN parameters as well
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    x = torch.randn(2, in_planes, 8, 8)

    with torch.no_grad():
        out = F.relu(_bn(F.conv2d(x, block.conv1.weight, stride=stride, padding=1), block.bn1))
        out = _bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2)
        shortcut = x if downsample is None else _bn(F.conv2d(x, downsample[0].weight, stride=stride),
                                                    downsample[1])
        expected = F.relu(out + shortcut)  # post-activation: ReLU after the addition
        relu_before_add = F.relu(out) + shortcut
        got = block(x)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.shape == (2, planes, 8 // stride, 8 // stride)
    assert not torch.allclose(got, relu_before_add)  # the test can tell the two orderings apart


# ---------------------------------------------------------------- registry

def test_list_models_is_sorted_and_complete():
    names = list_models()
    assert names == sorted(names)
    assert set(SMALL_MODELS) <= set(names)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError) as err:
        create_model("resnet8x5")
    message = str(err.value)
    assert "resnet8x4" in message and "list_models()" in message
    with pytest.raises(ValueError, match="MobileNetV2"):
        create_model("mobilenetv2")  # a case slip still finds the official spelling


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"num_classes": -3}, {"in_channels": 0},
                                    {"num_classes": True}, {"in_channels": 1.5}])
def test_bad_sizes_are_rejected(kwargs):
    with pytest.raises(ValueError):
        create_model("resnet8", **kwargs)


def test_register_model_one_line_and_decorator():
    from functools import partial

    from simkd_lite.models import CifarResNet

    added = ("_test_resnet8_w4", "_test_decorated")
    try:
        register_model(added[0], partial(CifarResNet, depth=8, num_filters=(4, 4, 8, 16)))

        @register_model(added[1])
        def _factory(num_classes=100, in_channels=3):
            return CifarResNet(14, (4, 4, 8, 16), num_classes=num_classes, in_channels=in_channels)

        assert create_model(added[0], num_classes=3).get_classifier().out_features == 3
        assert create_model(added[1], num_classes=3, in_channels=1).depth == 14
        with pytest.raises(ValueError, match="already registered"):
            register_model(added[0], _factory)
    finally:
        for name in added:
            registry_module._MODEL_REGISTRY.pop(name, None)
    assert not set(added) & set(list_models())
