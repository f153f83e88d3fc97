"""The assignment's formative checkers accept the reference and reject broken implementations with the
right message; `package_code_used` tells a self-made solution from one that calls the reference.
(The notebook itself is graded end to end by nbgrader in tests/test_assignment_nbgrader.py.)"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import simkd_lite
from simkd_lite.assignment import (NOT_IMPLEMENTED, check_alignment, check_logits, check_loss, check_projector,
                                   package_code_used)
from simkd_lite.distillers import SimKD
from simkd_lite.distillers.losses import align_feature_maps, feature_l2_loss, global_pool


# ------------------------------------------------------------------------------------------ references
class ReferenceProjector(nn.Module):
    def __init__(self, s, t, factor=2):
        super().__init__()
        self.transfer = SimKD(s, t, factor).transfer

    def forward(self, x):
        return self.transfer(x)


def make_projector(s, t, factor, *, bias=False, final_relu=True, padding=1, mid=None, name="transfer", extra=None):
    """A configurable (possibly broken) projector class for the checker tests."""
    class Projector(nn.Module):
        def __init__(self, s, t, factor=2):
            super().__init__()
            m = mid(t, factor) if mid else t // factor
            layers = [nn.Conv2d(s, m, 1, bias=bias), nn.BatchNorm2d(m), nn.ReLU(),
                      nn.Conv2d(m, m, 3, padding=padding, bias=bias), nn.BatchNorm2d(m), nn.ReLU(),
                      nn.Conv2d(m, t, 1, bias=bias), nn.BatchNorm2d(t)]
            if final_relu:
                layers.append(nn.ReLU())
            if extra is not None:
                layers.insert(3, extra())
            setattr(self, name, nn.Sequential(*layers))

        def forward(self, x):
            return getattr(self, name)(x)

    return Projector


def test_references_pass():
    assert check_alignment(align_feature_maps).passed
    assert check_projector(ReferenceProjector).passed
    assert check_projector(make_projector(1, 1, 1)).passed
    assert check_loss(feature_l2_loss).passed
    assert check_loss(lambda p, t: ((p - t) ** 2).mean()).passed


def test_feedback_is_truthy_and_prints_one_line():
    good, bad = check_loss(feature_l2_loss), check_loss(lambda p, t: ((p - t) ** 2).sum())
    assert bool(good) and not bool(bad)
    assert str(good).startswith("PASS loss:") and repr(bad).startswith("FAIL loss:")
    assert "\n" not in str(bad)


# ------------------------------------------------------------------------------------------ part 1
def not_implemented(*args):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("fn, message", [
    (not_implemented, NOT_IMPLEMENTED),
    (lambda s, t: align_feature_maps(s, t)[::-1], "the order is (student_map, teacher_map)"),
    (lambda s, t: (F.interpolate(s, size=max(s.shape[-1], t.shape[-1])),
                   F.interpolate(t, size=max(s.shape[-1], t.shape[-1]))), "never upsample"),
    (lambda s, t: tuple(F.adaptive_max_pool2d(x, min(s.shape[-1], t.shape[-1])) for x in (s, t)),
     "adaptive *average* pooling"),
    (lambda s, t: align_feature_maps(s, t)[0], "should return a pair"),
    (lambda s, t: (align_feature_maps(s, t)[0][:, :1], align_feature_maps(s, t)[1]), "channels stay as they are"),
    (lambda s, t: (F.adaptive_avg_pool2d(s, t.shape[-1]), t), "teacher map larger"),
    (lambda s, t: s.foo, "raised AttributeError"),
])
def test_alignment_rejections(fn, message):
    feedback = check_alignment(fn)
    assert not feedback.passed
    assert message in feedback.message, feedback.message


# ------------------------------------------------------------------------------------------ part 2
class NotImplementedProjector(nn.Module):
    def __init__(self, s, t, factor=2):
        super().__init__()
        raise NotImplementedError("your code here")


class ForwardNotImplemented(ReferenceProjector):
    def forward(self, x):
        raise NotImplementedError


@pytest.mark.parametrize("cls, message", [
    (NotImplementedProjector, f"{NOT_IMPLEMENTED}: Projector.__init__"),
    (ForwardNotImplemented, f"{NOT_IMPLEMENTED}: Projector.forward"),
    (make_projector(0, 0, 0, bias=True), "bias=False"),
    (make_projector(0, 0, 0, mid=lambda t, f: t * f), "m=t//factor"),
    (make_projector(0, 0, 0, name="layers"), "needs an attribute `transfer`"),
    (make_projector(0, 0, 0, extra=nn.Dropout), "state_dict names differ"),
    (make_projector(0, 0, 0, final_relu=False), "ends with BN then ReLU"),
    (make_projector(0, 0, 0, padding=0), "same H and W"),
    (lambda s, t, f: "not a module", "should be an nn.Module"),
])
def test_projector_rejections(cls, message):
    feedback = check_projector(cls)
    assert not feedback.passed
    assert message in feedback.message, feedback.message


def test_projector_count_message_names_the_formula_and_difference():
    feedback = check_projector(make_projector(0, 0, 0, mid=lambda t, f: t // f + 1))
    assert "parameters, SimKD's projector has" in feedback.message
    assert "s*m + 9*m^2 + m*t + 4m + 2t" in feedback.message


# ------------------------------------------------------------------------------------------ part 3
@pytest.mark.parametrize("fn, message", [
    (not_implemented, NOT_IMPLEMENTED),
    (lambda p, t: ((p - t) ** 2).sum(), "you summed the squared errors"),
    (lambda p, t: ((p - t) ** 2).sum() / p.shape[0], "averaged over the batch only"),
    (lambda p, t: ((p - t) ** 2).mean().sqrt(), "root of the mean squared error"),
    (lambda p, t: (p - t).abs().mean(), "mean absolute error"),
    (lambda p, t: ((p.detach() - t) ** 2).mean(), "carries no gradient"),
    (lambda p, t: ((p - t) ** 2).mean().item(), "torch scalar tensor"),
    (lambda p, t: ((p - t) ** 2).mean(dim=(1, 2, 3)), "should return a scalar"),
    (lambda p, t: ((p - t) ** 2).mean() * 2, "the reference MSE is"),
])
def test_loss_rejections(fn, message):
    feedback = check_loss(fn)
    assert not feedback.passed
    assert message in feedback.message, feedback.message


# ------------------------------------------------------------------------------------------ part 4
def test_logits_reference_passes():
    assert check_logits(lambda projected, head: head(projected.mean(dim=(2, 3)))).passed
    assert check_logits(lambda projected, head: head(global_pool(projected))).passed


def _retrain_head(projected, head):
    head.weight.data.zero_()
    return head(projected.mean(dim=(2, 3)))


@pytest.mark.parametrize("fn, message", [
    (not_implemented, NOT_IMPLEMENTED),
    (lambda p, head: head(p.amax(dim=(2, 3))), "max pooling"),
    (lambda p, head: head(p.mean(dim=(2, 3))).softmax(dim=1), "before any softmax"),
    (lambda p, head: head(p.flatten(2).transpose(1, 2)), "expected logits of shape (3, 5)"),
    (lambda p, head: head(p.mean(dim=(2, 3))) + 1, "expected head(mean of the map"),
    (_retrain_head, "the teacher's head changed"),
    (lambda p, head: head(p), "raised RuntimeError"),
])
def test_logits_rejections(fn, message):
    feedback = check_logits(fn)
    assert not feedback.passed
    assert message in feedback.message, feedback.message


# ------------------------------------------------------------------------------------------ grading
# Solutions as a student writes them: at module level here, in `__main__` in a notebook.
def own_alignment(feat_s, feat_t):
    size = min(feat_s.shape[-1], feat_t.shape[-1])
    return F.adaptive_avg_pool2d(feat_s, size), F.adaptive_avg_pool2d(feat_t, size)


def wrapped_alignment(feat_s, feat_t):
    return align_feature_maps(feat_s, feat_t)


def nested_reference_loss(projected, target):
    return (lambda: simkd_lite.distillers.losses.feature_l2_loss(projected, target))()


class OwnProjector(nn.Module):
    def __init__(self, s, t, factor=2):
        super().__init__()
        self.transfer = nn.Sequential(nn.Conv2d(s, t // factor, 1, bias=False), nn.BatchNorm2d(t // factor))

    def forward(self, x):
        return self.transfer(x)


class BorrowingProjector(nn.Module):
    def __init__(self, s, t, factor=2):
        super().__init__()
        self.transfer = SimKD(s, t, factor).transfer

    def forward(self, x):
        return self.transfer(x)


class SubclassProjector(SimKD):
    pass


def test_package_code_used_accepts_own_code():
    assert package_code_used(own_alignment) == []
    assert package_code_used(OwnProjector) == []
    assert package_code_used(lambda p, t: torch.mean((p - t) ** 2)) == []


@pytest.mark.parametrize("obj, start", [
    (align_feature_maps, "align_feature_maps comes from simkd_lite.distillers."),
    (wrapped_alignment, "wrapped_alignment uses align_feature_maps (simkd_lite.distillers."),
    (nested_reference_loss, "nested_reference_loss uses simkd_lite (simkd_lite)"),
    (BorrowingProjector, "BorrowingProjector.__init__ uses SimKD (simkd_lite.distillers."),
    (SubclassProjector, "base class simkd_lite.distillers."),
])
def test_package_code_used_finds_the_reference(obj, start):
    assert any(name.startswith(start) for name in package_code_used(obj)), package_code_used(obj)


def test_parts_run_gates_part_5_on_running_not_on_the_checks():
    import torch.nn.functional as F
    from torch import nn

    from simkd_lite.assignment import parts_run

    def align_max(feat_s, feat_t):   # wrong (max pooling) but runs
        size = min(feat_s.shape[-1], feat_t.shape[-1])
        return F.adaptive_max_pool2d(feat_s, size), F.adaptive_max_pool2d(feat_t, size)

    class BiasedProjector(nn.Module):   # wrong (bias=True) but runs
        def __init__(self, s, t, factor=2):
            super().__init__()
            self.transfer = nn.Sequential(nn.Conv2d(s, t, 1, bias=True), nn.BatchNorm2d(t), nn.ReLU())

        def forward(self, x):
            return self.transfer(x)

    def loss(a, b):
        return ((a - b) ** 2).mean()

    def logits(projected, head):
        return head(projected.mean(dim=(2, 3)))

    def not_yet(*args):
        raise NotImplementedError()

    assert parts_run(align_max, BiasedProjector, loss, logits)
    blank = parts_run(align_max, BiasedProjector, not_yet, logits)
    assert not blank and "part 3, simkd_loss is not implemented yet" in str(blank)
    broken = parts_run(align_max, BiasedProjector, loss, lambda projected, head: head(projected))
    assert not broken and "part 4, simkd_logits raised RuntimeError" in str(broken) and "\n" not in str(broken)


def test_own_work_is_one_sentence():
    from simkd_lite.assignment import own_work

    def borrowed(feat_s, feat_t):
        return align_feature_maps(feat_s, feat_t)   # the module-level import of the reference

    def mine(feat_s, feat_t):
        return feat_s, feat_t

    assert own_work(borrowed).startswith("test_own_work_is_one_sentence.<locals>.borrowed relies on simkd_lite's own code")
    assert own_work(borrowed).endswith("the graded solution must be your own code.")
    assert own_work(mine).endswith("is your own code.")
