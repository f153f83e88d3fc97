"""Official checkpoint layouts in and out, and actionable errors when they do not fit."""

import pytest
import torch

from simkd_lite.checkpoints import (CheckpointMismatchError, atomic_save, load_model, load_weights,
                                    model_name_from_path, read_checkpoint, save_teacher)
from simkd_lite.models import OFFICIAL_CIFAR_MODELS, create_model


@pytest.mark.parametrize("name", OFFICIAL_CIFAR_MODELS)
def test_official_format_round_trip_is_strict_and_exact(tmp_path, name):
    torch.manual_seed(0)
    original = create_model(name, num_classes=100).eval()
    path = tmp_path / f"{name}_vanilla" / f"{name}_best.pth"
    atomic_save({"model": original.state_dict(), "epoch": 240, "best_acc": 70.0, "optimizer": {}}, path)
    torch.manual_seed(1)  # a different init, so equality below proves the weights were loaded
    loaded, meta = load_model(path)  # the name comes from the official folder naming
    assert meta["model_name"] == name and meta["epoch"] == 240
    assert list(loaded.state_dict()) == list(original.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))


def test_bare_state_dict_and_ddp_prefix_are_accepted(tmp_path):
    model = create_model("resnet8", 10, 1)
    bare = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(bare, tmp_path / "weights.pt")
    loaded, _ = load_model(tmp_path / "weights.pt", model_name="resnet8")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_our_teacher_checkpoint_uses_the_official_layout_and_needs_no_name(tmp_path):
    model = create_model("resnet8", 10, 1)
    path = save_teacher(tmp_path / "t.pt", model, model_name="resnet8", epoch=3, best_acc=91.5,
                        dataset={"name": "digits"})
    raw = read_checkpoint(path)
    assert {"model", "epoch", "best_acc"} <= set(raw) and raw["epoch"] == 3
    loaded, meta = load_model(path)
    assert meta["model_name"] == "resnet8" and meta["dataset"] == {"name": "digits"}


def test_a_mismatch_names_the_keys_and_the_model_that_would_load_it(tmp_path):
    state = create_model("resnet8x4", 100).state_dict()
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(create_model("resnet14x4", 100), state, "resnet14x4")
    message = str(err.value)
    assert "missing keys" in message and "layer1.1.conv1.weight" in message
    assert "resnet8x4" in message  # the model that fits


def test_shape_mismatches_are_reported():
    state = create_model("resnet8x4", 10).state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"fc.weight: checkpoint \(10, 256\) vs model \(100, 256\)"):
        load_weights(create_model("resnet8x4", 100), state, "resnet8x4")


def test_unknown_architecture_asks_for_the_name_and_lists_fits(tmp_path):
    torch.save({"model": create_model("vgg8", 100).state_dict()}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match="vgg8"):
        load_model(tmp_path / "ckpt.pth")


def test_broken_and_missing_files_give_clear_errors(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "absent.pt")


def test_official_folder_naming():
    assert model_name_from_path("save/teachers/models/resnet32x4_vanilla/ckpt_epoch_240.pth") == "resnet32x4"
    assert model_name_from_path("x/ShuffleV1_cifar100_lr_0.01/ShuffleV1_best.pth") == "ShuffleV1"
    assert model_name_from_path("runs/teacher/best.pt") is None


def test_atomic_save_leaves_no_temp_file_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"a": torch.ones(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["a"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
