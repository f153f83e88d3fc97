"""SimKD, the baselines and the deployable student, checked against hand-computed values."""
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from simkd_lite import SimKD, SimKDStudent, create_distiller, create_model, list_methods
from simkd_lite.checkpoints import atomic_save
from simkd_lite.distillers import projector_parameter_count, total_loss
from simkd_lite.distillers.losses import align_feature_maps, kd_loss
from simkd_lite.models import count_parameters


def test_kd_loss_matches_a_hand_computed_two_class_example():
    # Row 1: t/T = [ln 3, 0] -> p_t = [3/4, 1/4]; s = [0, 0] -> p_s = [1/2, 1/2].
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120...; row 2 has KL = 0; batchmean halves the sum.
    T = 4.0
    teacher = torch.tensor([[T * math.log(3.0), 0.0], [0.0, 0.0]])
    student = torch.zeros(2, 2)
    kl_row1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    expected = kl_row1 / 2 * T**2
    assert kd_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.0464962, rel=1e-6)


@pytest.mark.parametrize("factor, expected", [(2, 214_016), (4, 70_400), (8, 26_240)])
def test_projector_parameter_counts_match_the_paper_pair(factor, expected):
    assert projector_parameter_count(256, 256, factor) == expected
    assert count_parameters(SimKD(256, 256, factor)) == expected


def test_projector_layout_loads_an_official_proj_state_dict_strictly():
    s, t, m = 64, 256, 128
    shapes = {"transfer.0.weight": (m, s, 1, 1), "transfer.3.weight": (m, m, 3, 3), "transfer.6.weight": (t, m, 1, 1)}
    official = {k: torch.randn(v) for k, v in shapes.items()}
    for idx, c in (("1", m), ("4", m), ("7", t)):
        official.update({f"transfer.{idx}.weight": torch.rand(c), f"transfer.{idx}.bias": torch.randn(c),
                         f"transfer.{idx}.running_mean": torch.randn(c), f"transfer.{idx}.running_var": torch.rand(c) + 0.5,
                         f"transfer.{idx}.num_batches_tracked": torch.tensor(7)})
    projector = SimKD(s, t, factor=2)
    projector.load_state_dict(official, strict=True)
    assert [type(layer).__name__ for layer in projector.transfer] == ["Conv2d", "BatchNorm2d", "ReLU"] * 3


def test_alignment_pools_the_larger_map_in_both_directions():
    big, small = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    pooled_big = big.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5))  # hand-written 2x2 average pooling
    s, t = align_feature_maps(big, small)  # student larger: the student is pooled
    assert torch.allclose(s, pooled_big, atol=1e-6) and t is small
    s, t = align_feature_maps(small, big)  # teacher larger: the teacher is pooled
    assert s is small and torch.allclose(t, pooled_big, atol=1e-6)
    s, t = align_feature_maps(small, small)
    assert s is small and t is small


def test_simkd_forward_returns_aligned_maps_and_teacher_head_logits():
    torch.manual_seed(0)
    simkd, head = SimKD(16, 32, factor=4), nn.Linear(32, 10)
    feat_s, feat_t = torch.randn(3, 16, 8, 8), torch.randn(3, 32, 4, 4)
    projected, target, logits = simkd(feat_s, feat_t, head)
    assert projected.shape == target.shape == (3, 32, 4, 4)
    assert torch.equal(target, feat_t)
    assert torch.allclose(logits, head(projected.mean(dim=(2, 3))), atol=1e-6)
    assert SimKD.loss(projected, target).item() == pytest.approx(((projected - target) ** 2).mean().item())
    with pytest.raises(ValueError, match="channels"):
        simkd(feat_t, feat_t, head)


def test_registry_lists_the_methods_and_suggests_close_names():
    assert list_methods() == ["fitnet", "kd", "simkd", "vanilla"]
    with pytest.raises(ValueError, match="simkd"):
        create_distiller("simdk", create_model("resnet8_w8", 10, 1))
    with pytest.raises(ValueError, match="teacher"):
        create_distiller("kd", create_model("resnet8_w8", 10, 1))


@pytest.fixture(scope="module")
def tiny_pair():
    torch.manual_seed(0)
    return create_model("resnet8", 10, 1), create_model("resnet8x2", 10, 1)


@pytest.mark.parametrize("method, loss_names", [("vanilla", {"ce"}), ("kd", {"ce", "kd"}),
                                                 ("fitnet", {"ce", "kd", "hint"}), ("simkd", {"simkd"})])
def test_every_method_shares_forward_train_and_a_prediction_head(tiny_pair, method, loss_names):
    student, teacher = tiny_pair
    options = {"image_size": 16} if method == "fitnet" else {}  # FitNet's regressor depends on map sizes
    distiller = create_distiller(method, student, None if method == "vanilla" else teacher, **options)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    logits, losses = distiller.forward_train(x, y)
    assert set(losses) == loss_names and logits.shape == (4, 10)
    assert distiller(x).shape == (4, 10)
    assert torch.isfinite(total_loss(losses))
    # The teacher is outside the module tree: nothing of it is trained or saved.
    assert not any(k.startswith("teacher.") for k in distiller.state_dict())


def test_simkd_loss_falls_and_prediction_equals_training_logits(tiny_pair):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8_w8", 10, 1), tiny_pair[1]
    distiller = create_distiller("simkd", student, teacher, factor=2)
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    params = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        _, terms = distiller.forward_train(x, y)
        optimizer.zero_grad()
        total_loss(terms).backward()
        optimizer.step()
        losses.append(total_loss(terms).item())
    assert losses[-1] < 0.6 * losses[0]
    # The teacher head is frozen: SimKD trains only the student encoder and the projector.
    assert not any(p.requires_grad for p in distiller.teacher_head.parameters())
    distiller.eval()
    with torch.no_grad():
        train_logits, _ = distiller.forward_train(x, y)
        assert torch.allclose(distiller(x), train_logits, atol=1e-5)


def test_simkd_refuses_a_teacher_whose_classifier_does_not_read_its_features():
    with pytest.raises(ValueError, match="cannot be a SimKD teacher"):
        create_distiller("simkd", create_model("resnet8", 100), create_model("MobileNetV2", 100))


def _trained_student(tmp_path):
    torch.manual_seed(1)
    distiller = create_distiller("simkd", create_model("resnet8", 10, 1), create_model("resnet8x2", 10, 1), factor=4)
    x = torch.randn(8, 1, 28, 28)
    distiller.forward_train(x, torch.zeros(8, dtype=torch.long))  # one step records the teacher size
    return distiller.export().eval(), x


def test_simkd_student_save_then_load_in_a_fresh_process_gives_identical_logits(tmp_path):
    student, x = _trained_student(tmp_path)
    path = student.save(tmp_path / "student.pt")
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(student(x), tmp_path / "expected.pt")
    code = (
        "import torch, sys; from simkd_lite import SimKDStudent\n"
        f"m = SimKDStudent.load(r'{path}'); x = torch.load(r'{tmp_path / 'x.pt'}')\n"
        f"with torch.no_grad(): same = torch.equal(m(x), torch.load(r'{tmp_path / 'expected.pt'}'))\n"
        "assert not any(p.requires_grad for p in m.teacher_head.parameters())\n"
        "sys.exit(0 if same else 3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_simkd_student_never_holds_the_teacher_network(tmp_path):
    student, _ = _trained_student(tmp_path)
    teacher_params = count_parameters(create_model("resnet8x2", 10, 1))
    assert {name for name, _ in student.named_children()} == {"student", "projector", "teacher_head"}
    assert student.num_parameters() < teacher_params
    assert student.num_parameters() == (count_parameters(student) - count_parameters(student.student.get_classifier()))


def test_from_official_assembles_the_student_from_official_files(tmp_path):
    torch.manual_seed(2)
    teacher, student = create_model("resnet8x4", 100), create_model("resnet8", 100)
    projector = SimKD(64, 256, factor=4)
    for module in (teacher, student, projector):  # non-trivial BN statistics
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 1.5)
    teacher_path = tmp_path / "resnet8x4_vanilla" / "resnet8x4_best.pth"
    atomic_save({"model": teacher.state_dict(), "epoch": 240, "best_acc": 72.5}, teacher_path)
    student_path = tmp_path / "S_resnet8_T_resnet8x4_cifar100_simkd" / "resnet8_best.pth"
    atomic_save({"model": student.state_dict(), "proj": projector.state_dict(), "epoch": 240}, student_path)

    deployed = SimKDStudent.from_official(student_path, teacher_path, student_model="resnet8")
    assert deployed.projector.factor == 4 and deployed.teacher_model == "resnet8x4"
    x = torch.randn(2, 3, 32, 32)
    teacher.eval(), student.eval(), projector.eval()
    with torch.no_grad():
        # The official evaluation path: student + full teacher forward + projector + teacher head.
        _, _, expected = projector(student.forward_features(x), teacher.forward_features(x), teacher.get_classifier())
        assert torch.allclose(deployed(x), expected, atol=1e-5)
