"""The assignment checkers accept the reference, reject broken implementations with the right message,
and the student version of notebooks/05_assignment.ipynb reports "not implemented yet" cleanly."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch.nn.functional as F
from torch import nn

from simkd_lite import assignment
from simkd_lite.assignment import NOT_IMPLEMENTED, check_alignment, check_loss, check_projector
from simkd_lite.distillers import SimKD
from simkd_lite.distillers.losses import align_feature_maps, feature_l2_loss

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_assignment.ipynb"


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


# ------------------------------------------------------------------------------------------ student version
def test_strip_solutions_keeps_indentation_and_rejects_unbalanced_markers():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\nprint(1)\n"
    stripped, blocks = assignment.strip_solutions(source)
    assert blocks == 1
    assert stripped == "def f(x):\n    raise NotImplementedError('your code here')\n\nprint(1)\n"
    with pytest.raises(ValueError, match="never closed"):
        assignment.strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="without a"):
        assignment.strip_solutions("x = 1\n### END SOLUTION\n")


@pytest.fixture(scope="module")
def student_notebook(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("assignment") / "05_assignment_student.ipynb"
    result = subprocess.run([sys.executable, "-m", "simkd_lite.assignment", "make-student", str(NOTEBOOK), str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "solution blocks replaced" in result.stdout
    return out


def test_make_student_removes_every_solution(student_notebook):
    reference = nbformat.read(NOTEBOOK, as_version=4)
    student = nbformat.read(student_notebook, as_version=4)
    nbformat.validate(student)
    text = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text
    expected = sum(c.source.count("### BEGIN SOLUTION") for c in reference.cells if c.cell_type == "code")
    assert expected >= 4 and text.count("raise NotImplementedError") == expected
    assert "F.adaptive_avg_pool2d(feat_s" not in text and "nn.Conv2d(m, m, kernel_size=3" not in text
    assert len(student.cells) == len(reference.cells)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in student.cells if c.cell_type == "code")


def test_student_version_runs_and_reports_not_implemented(student_notebook):
    """Execute the student notebook: every checker says "not implemented yet", nothing crashes."""
    from nbclient import NotebookClient

    notebook = nbformat.read(student_notebook, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(student_notebook.parent)}}).execute()

    def text_of(cell):
        return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)

    checker_cells = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip().startswith("check_")]
    assert len(checker_cells) == 3
    for cell, name in zip(checker_cells, ("alignment", "projector", "loss")):
        assert f"FAIL {name}: {NOT_IMPLEMENTED}" in text_of(cell), text_of(cell)
    assert any("Part 4 needs parts 1-3" in text_of(c) for c in notebook.cells if c.cell_type == "code")
