"""Models from torchvision / timm / the user's own nn.Module, usable everywhere a zoo model is (issue 24).

Small inputs (8x8 to 64x64) and torchvision's smaller networks keep each test at a few seconds.
"""
import json
import sys

import pytest
import torch
import torchvision
from torch import nn

from simkd_lite.checkpoints import load_model, read_checkpoint, save_teacher
from simkd_lite.cli import main
from simkd_lite.distillers import SimKDStudent, create_distiller
from simkd_lite.errors import SimKDLiteError
from simkd_lite.experiments import Experiment, get_teacher
from simkd_lite.experiments.loading import load_teacher_network
from simkd_lite.models import count_parameters, create_model, parse_model_name, wrap_model


def _same_weights(model, reference: nn.Module) -> nn.Module:
    reference.load_state_dict(model.state_dict())  # keys are torchvision's own: no prefix
    return reference.eval()


class TinyNet(nn.Module):
    """A user's own classifier: conv body, global pool, Linear (module level: picklable)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.out(torch.flatten(self.pool(self.body(x)), 1))


# ---------------------------------------------------------------------------------- the adapter
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_parameter_counts_equal_torchvisions(arch):
    model = create_model(f"torchvision/{arch}", num_classes=1000)
    assert count_parameters(model) == count_parameters(torchvision.models.get_model(arch))
    assert model.num_classes == 1000 and model.in_channels == 3 and model.model_name == f"torchvision/{arch}"


def test_resnet18_head_of_features_is_torchvisions_forward():
    model = create_model("torchvision/resnet18", num_classes=10).eval()
    reference = _same_weights(model, torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(x)), reference(x), atol=1e-5)
    assert model.classifier_on_features and model.feature_layer == "layer4" and model.classifier_name == "fc"
    assert model.feature_channels == 512 and model.get_classifier() is model.net.fc


def test_timm_head_of_features_is_timms_forward():
    timm = pytest.importorskip("timm")
    model = create_model("timm/resnet18", num_classes=10).eval()
    reference = timm.create_model("resnet18", num_classes=10).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(x)), reference(x), atol=1e-5)
    assert model.classifier_on_features and model.classifier_name == "fc"


def test_named_layer_small_stem_and_stages_shapes():
    layer3 = create_model("torchvision/resnet18:layer3", num_classes=10).eval()
    assert layer3.model_name == "torchvision/resnet18:features=layer3"
    x = torch.randn(2, 3, 64, 64)
    assert layer3.forward_features(x).shape == (2, 256, 4, 4)
    assert not layer3.classifier_on_features  # layer4 lies between that map and fc
    cifar = create_model("torchvision/resnet18:stem=cifar", num_classes=10, in_channels=1).eval()
    stages = cifar.forward_stages(torch.randn(2, 1, 32, 32))
    assert [tuple(s.shape[1:]) for s in stages] == [(64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8),
                                                    (512, 4, 4)]
    default = create_model("torchvision/resnet18", num_classes=10).eval()
    assert default.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 1, 1)  # ImageNet stem: 32x smaller


def test_bad_names_list_close_ones():
    with pytest.raises(ValueError, match="no layer 'layer5'.*layer4"):
        create_model("torchvision/resnet18:layer5", 10)
    with pytest.raises(ValueError, match="Unknown torchvision model 'resnet19'.*resnet18"):
        create_model("torchvision/resnet19", 10)
    with pytest.raises(ValueError, match="classifier 'fcc' is not an nn.Linear.*Linear layers: fc"):
        create_model("torchvision/resnet18:classifier=fcc", 10)
    with pytest.raises(ValueError, match="unknown option"):
        parse_model_name("torchvision/resnet18:colour=red")
    with pytest.raises(ValueError, match="other libraries: custom/..., timm/..., torchvision/..."):
        create_model("torchvison/resnet18", 10)


def test_missing_timm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now fails
    with pytest.raises(ValueError, match=r'pip install "simkd_lite\[timm\]"'):
        create_model("timm/resnet18", 10)


def test_mobilenet_v3_is_refused_as_simkd_teacher_but_is_a_student():
    mobilenet = create_model("torchvision/mobilenet_v3_small", num_classes=10, in_channels=1)
    assert not mobilenet.classifier_on_features
    with pytest.raises(ValueError, match="cannot be a SimKD teacher.*does not reproduce its logits.*student"):
        create_distiller("simkd", create_model("resnet8", 10, 1), mobilenet)
    teacher = create_model("torchvision/resnet18", num_classes=10, in_channels=1)
    student = create_model("torchvision/mobilenet_v3_small", num_classes=10, in_channels=1)
    distiller = create_distiller("simkd", student, teacher)
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    logits, losses = distiller.forward_train(x, y)
    assert logits.shape == (4, 10) and torch.isfinite(losses["simkd"])
    student.eval()  # its own forward is the whole torchvision network (conv head and MLP included)
    reference = torchvision.models.mobilenet_v3_small(num_classes=10)
    reference.features[0][0] = nn.Conv2d(1, 16, 3, 2, 1, bias=False)  # the 1-channel first conv
    reference = _same_weights(student, reference)
    with torch.no_grad():
        assert torch.allclose(student(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("method", ["kd", "vanilla", "fitnet"])
def test_other_methods_with_a_torchvision_teacher(method):
    teacher = create_model("torchvision/resnet18:stem=cifar", 10, 1)
    student = create_model("resnet8", 10, 1) if method != "fitnet" else create_model("torchvision/resnet18:stem=cifar", 10, 1)
    options = {"image_size": 8} if method == "fitnet" else {}
    distiller = create_distiller(method, student, None if method == "vanilla" else teacher, **options)
    logits, losses = distiller.forward_train(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    assert logits.shape == (4, 10) and all(torch.isfinite(v) for v in losses.values())


def test_fitnet_hint_layer_out_of_range_is_one_line():
    teacher = create_model("torchvision/mobilenet_v3_small", 10, 1)  # its feature list: [the map, pooled]
    with pytest.raises(ValueError, match=r"hint_layer 3 is not a spatial map of the teacher's feature list \[\[576, 1, 1\], \[1024\]\]: choose one of \[0\]"):
        create_distiller("fitnet", create_model("resnet8", 10, 1), teacher, hint_layer=3, image_size=8)


# ---------------------------------------------------------------------------------- files
def test_checkpoint_round_trip_by_model_name(tmp_path):
    model = create_model("torchvision/resnet18:stem=cifar", num_classes=10, in_channels=1).eval()
    save_teacher(tmp_path / "t.pt", model, model_name=model.model_name, epoch=1, best_acc=0.0)
    loaded, meta = load_model(tmp_path / "t.pt")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["model_name"] == "torchvision/resnet18:stem=cifar"
    assert list(read_checkpoint(tmp_path / "t.pt")["model"])[0] == "conv1.weight"  # torchvision's own keys


def test_torchvision_state_dict_file_with_teacher_model(tmp_path):
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "r18.pth")
    teacher = load_teacher_network(tmp_path / "r18.pth", None, "torchvision/resnet18")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"(?s)does not fit torchvision/resnet18:stem=cifar.*conv1.weight: checkpoint \(64, 3, 7, 7\)"):
        load_teacher_network(tmp_path / "r18.pth", None, "torchvision/resnet18:stem=cifar")


def test_cached_torchvision_weights_and_the_missing_cache_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as missing:
        load_teacher_network("torchvision/resnet18.IMAGENET1K_V1", None)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    message = str(missing.value)
    assert str(expected) in message and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "\n" not in message and not expected.exists()  # one line, and nothing downloaded
    fake = torchvision.models.resnet18().eval()  # a stand-in for the real file
    expected.parent.mkdir(parents=True)
    torch.save(fake.state_dict(), expected)
    teacher = load_teacher_network("torchvision/resnet18.DEFAULT", None)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(teacher(x), fake(x), atol=1e-5)
    assert teacher.num_classes == 1000 and teacher.model_name == "torchvision/resnet18"
    assert teacher.source_file == expected
    with pytest.raises(ValueError, match="names an architecture, not weights.*torchvision/resnet18.DEFAULT"):
        load_teacher_network("torchvision/resnet18:stem=cifar", None)
    with pytest.raises(ValueError, match="has no weights 'IMAGENET9'.*IMAGENET1K_V1"):
        load_teacher_network("torchvision/resnet18.IMAGENET9", None)


def test_a_whole_module_file_needs_trust(tmp_path):
    net = TinyNet().eval()
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(SimKDLiteError, match="--trust-checkpoint"):
        load_teacher_network(tmp_path / "whole.pt", None)
    with pytest.warns(UserWarning, match="unpickling"):
        teacher = load_teacher_network(tmp_path / "whole.pt", None, trust=True)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x))
    assert teacher.classifier_on_features and teacher.feature_layer == "body" and teacher.num_classes == 10


def test_wrap_model_of_an_own_module_and_simkd_student_round_trip(tmp_path):
    student = wrap_model(TinyNet(), name="tiny")
    assert student.model_name == "custom/tiny" and student.feature_channels == 16
    teacher = create_model("torchvision/resnet18:stem=cifar", 10, 1)
    distiller = create_distiller("simkd", student, teacher)
    x = torch.randn(4, 1, 8, 8)
    distiller.forward_train(x, torch.randint(0, 10, (4,)))
    distiller.eval()
    path = distiller.export().save(tmp_path / "student.pt")
    loaded = SimKDStudent.load(path)  # rebuilds custom/tiny by name, in this process
    with torch.no_grad():
        assert torch.allclose(loaded(x), distiller(x), atol=1e-6)


def test_torchvision_student_simkd_round_trip(tmp_path):
    student = create_model("torchvision/mobilenet_v3_small", 10, 1)
    distiller = create_distiller("simkd", student, create_model("resnet8", 10, 1))
    x = torch.randn(4, 1, 16, 16)
    distiller.forward_train(x, torch.randint(0, 10, (4,)))
    distiller.eval()
    loaded = SimKDStudent.load(distiller.export().save(tmp_path / "student.pt"))
    assert loaded.student.model_name == "torchvision/mobilenet_v3_small"
    with torch.no_grad():
        assert torch.allclose(loaded(x), distiller(x), atol=1e-6)


# ---------------------------------------------------------------------------------- --fit-teacher-head and the CLI
def test_fit_teacher_head_on_digits(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "imagenet_like.pth")  # 1000 classes, RGB
    exp = Experiment.resolve("digits", "quick", runs=tmp_path / "runs")
    with pytest.raises(ValueError, match="predicts 1000 classes, digits has 10: pass --fit-teacher-head"):
        from simkd_lite.experiments import prepare_data
        prepare_data(exp, get_teacher(exp, tmp_path / "imagenet_like.pth", teacher_model="torchvision/resnet18"))
    lines = []
    teacher = get_teacher(exp, tmp_path / "imagenet_like.pth", teacher_model="torchvision/resnet18", fit_head=True,
                          log=lines.append)
    assert teacher.num_classes == 10 and teacher.in_channels == 1
    fitted = read_checkpoint(teacher.source)
    assert fitted["kind"] == "teacher" and fitted["dataset"]["name"] == "digits"
    assert fitted["model_name"] == "torchvision/resnet18"
    assert fitted["best_acc"] > 50  # chance is 10% (random ImageNet-shaped features, linear probe)
    assert any("epoch 30/30" in line for line in lines) and any("test top-1" in line for line in lines)
    again = []
    get_teacher(exp, tmp_path / "imagenet_like.pth", teacher_model="torchvision/resnet18", fit_head=True,
                log=again.append)
    assert any("reusing" in line for line in again) and not any("epoch" in line for line in again)


def test_cli_one_epoch_simkd_from_a_torchvision_teacher(tmp_path, capsys):
    teacher = create_model("torchvision/resnet18:stem=cifar", 10, 1)
    save_teacher(tmp_path / "teacher.pt", teacher, model_name=teacher.model_name, epoch=0, best_acc=0.0,
                 kind="teacher")
    out = tmp_path / "runs" / "simkd"
    code = main(["distill", "--dataset", "digits", "--method", "simkd", "--teacher", str(tmp_path / "teacher.pt"),
                 "--epochs", "1", "--out", str(out), "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert "torchvision/resnet18:stem=cifar" in json.dumps(config)
    assert SimKDStudent.load(out / "student.pt").teacher_model == "torchvision/resnet18:stem=cifar"
    code = main(["eval", str(out / "student.pt"), "--dataset", "digits"])
    assert code == 0


def test_cli_train_teacher_and_distill_a_torchvision_student(tmp_path, capsys):
    code = main(["train-teacher", "--dataset", "digits", "--model", "torchvision/resnet18", "--epochs", "1",
                 "--out", str(tmp_path / "teacher"), "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    assert read_checkpoint(tmp_path / "teacher" / "best.pt")["model_name"] == "torchvision/resnet18"
    code = main(["distill", "--dataset", "digits", "--method", "kd", "--teacher", str(tmp_path / "teacher" / "best.pt"),
                 "--student", "torchvision/mobilenet_v3_small", "--epochs", "1", "--out", str(tmp_path / "kd"),
                 "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    assert main(["eval", str(tmp_path / "kd" / "best.pt"), "--dataset", "digits"]) == 0


class Untraceable(TinyNet):
    """Python control flow on a tensor's value: fx cannot trace it, so the adapter uses forward hooks."""

    def forward(self, x):
        if x.abs().sum() >= 0:  # always true, but fx sees a Proxy in a bool context
            return super().forward(x)
        return None


def test_untraceable_module_uses_forward_hooks():
    net = Untraceable().eval()
    model = wrap_model(net, name="untraceable")
    assert model._stages is None and model.feature_layer == "body" and model.classifier_on_features
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 16, 4, 4)
        assert torch.allclose(model(x), net(x))
    with pytest.raises(ValueError, match="no module 'bdy'.*body"):
        wrap_model(Untraceable(), feature_layer="bdy")
