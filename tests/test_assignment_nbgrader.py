"""nbgrader end to end on notebooks/05_assignment.ipynb, in a temporary course directory (about 1-3 minutes).

1. `nbgrader generate_assignment` writes the student version: no solutions, no hidden tests, no reference
   answers; every solution region is a `raise NotImplementedError()` stub.
2. `nbgrader autograde` grades three submissions:
   - `reference`: the source notebook itself, which must score every autograded point (it trains part 5);
   - `blank`: the student version as released, which must run to the end without crashing (errors only in
     graded cells, the checkers saying "not implemented yet") and score zero;
   - `borrower`: the student version whose alignment calls simkd_lite's reference implementation: it
     passes the visible asserts, and the hidden tests must still give it zero;
   - `planted`: the reference with two planted mistakes (max pooling in part 1, `bias=True` convolutions in
     part 2): 0 on those two test cells, full points on part 5, which trains with the parts because they run.

Run only this file with `pytest -m nbgrader`; leave it out with `-m "not nbgrader"`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader", reason="nbgrader is a dev dependency: pip install -e '.[dev]'")
from nbgrader.api import Gradebook  # noqa: E402

from simkd_lite.data import locate_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FASHION = locate_dataset("fashion_mnist", ROOT / "data")     # part 5 trains on it (copied from Debian's if needed)
pytestmark = [pytest.mark.nbgrader,
              pytest.mark.skipif(not (FASHION["present"] or Path(FASHION.get("offline_copy") or "/-").is_dir()),
                                 reason="part 5 needs Fashion-MNIST: simkd-lite data fetch fashion_mnist")]
NOTEBOOK = ROOT / "notebooks" / "05_assignment.ipynb"
ASSIGNMENT, NAME = "simkd", "05_assignment"
AUTOGRADED_POINTS = 15       # 3 + 4 + 2 + 2 + 2 + 2
MANUAL_POINTS = 7            # 3 + 2 + 2

BORROWED_ALIGNMENT = '''
from simkd_lite.distillers.losses import align_feature_maps as reference_alignment


def align_feature_maps(feat_s, feat_t):
    return reference_alignment(feat_s, feat_t)
'''


def _planted_mistakes(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The reference solution with max pooling in the alignment and biased projector convolutions."""
    notebook = nbformat.from_dict(source)
    cells = {c.get("id"): c for c in notebook.cells}
    align, projector = cells["align"], next(c for c in notebook.cells if "class Projector" in c.source)
    assert align.source.count("F.adaptive_avg_pool2d(") == 2 and projector.source.count("bias=False") == 3
    align.source = align.source.replace("F.adaptive_avg_pool2d(", "F.adaptive_max_pool2d(")
    projector.source = projector.source.replace("bias=False", "bias=True")
    return notebook


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` as a program and notebooks with the `python3` kernel: both from this environment.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "SIMKD_LITE_DATA": str(ROOT / "data"), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _submit(course: Path, student: str, notebook: nbformat.NotebookNode) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(notebook, folder / f"{NAME}.ipynb")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory with the assignment released and three submissions autograded."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "course" / "nbgrader_config.py", course)
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(NOTEBOOK, course / "source" / ASSIGNMENT / f"{NAME}.ipynb")
    _nbgrader(course, "generate_assignment", ASSIGNMENT)

    release = nbformat.read(course / "release" / ASSIGNMENT / f"{NAME}.ipynb", as_version=4)
    _submit(course, "reference", nbformat.read(NOTEBOOK, as_version=4))
    _submit(course, "blank", release)
    borrower = nbformat.from_dict(release)
    next(c for c in borrower.cells if c.get("id") == "align").source = BORROWED_ALIGNMENT
    _submit(course, "borrower", borrower)
    _submit(course, "planted", _planted_mistakes(nbformat.read(NOTEBOOK, as_version=4)))
    _nbgrader(course, "autograde", ASSIGNMENT)
    return course


def _graded(course: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "autograded" / student / ASSIGNMENT / f"{NAME}.ipynb", as_version=4)


def _text(cell) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("ename", "")
                   for o in cell.get("outputs", []))


def _is_graded(cell) -> bool:
    return cell.metadata.get("nbgrader", {}).get("grade", False)


def test_the_student_version_hides_solutions_and_hidden_tests(course):
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{NAME}.ipynb", as_version=4)
    source = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.get("id") for c in release.cells] == [c.get("id") for c in source.cells]
    text = "\n".join(c.source for c in release.cells)
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "package_code_used", "F.adaptive_avg_pool2d(feat_s",
                   "nn.Conv2d(m, m, kernel_size=3", "Reference answer", "Rubric", "Instructors", "instructor"):
        assert secret not in text, f"the student version still contains {secret!r}"
    solutions = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("solution")]
    code_stubs = [c for c in solutions if c.cell_type == "code"]
    assert len(code_stubs) == 5 and all("raise NotImplementedError()" in c.source for c in code_stubs)
    assert sum(c.source.count("# YOUR CODE HERE") for c in code_stubs) == 6      # Projector has two regions
    assert [c.source for c in solutions if c.cell_type == "markdown"] == ["YOUR ANSWER HERE"] * 3


def test_the_reference_scores_every_autograded_point(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        graded = gradebook.find_submission_notebook(NAME, ASSIGNMENT, "reference")
        assert (graded.max_code_score, graded.max_written_score) == (AUTOGRADED_POINTS, MANUAL_POINTS)
        assert graded.code_score == AUTOGRADED_POINTS
        assert graded.needs_manual_grade  # the three written answers wait for a grader
    errors = [c.get("id") for c in _graded(course, "reference").cells if "error" in
              [o.output_type for o in c.get("outputs", [])]]
    assert errors == []
    training = next(c for c in _graded(course, "reference").cells if c.get("id") == "train")
    assert "SimKD (your parts)" in _text(training) and "vanilla (own head, CE)" in _text(training)


def test_the_blank_version_runs_to_the_end_and_scores_zero(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        graded = gradebook.find_submission_notebook(NAME, ASSIGNMENT, "blank")
        assert graded.code_score == 0 and graded.written_score == 0
    notebook = _graded(course, "blank")
    crashed = [c.get("id") for c in notebook.cells if not _is_graded(c)
               and any(o.output_type == "error" for o in c.get("outputs", []))]
    assert crashed == [], f"cells other than graded tests raised: {crashed}"
    failed = [c.get("id") for c in notebook.cells if _is_graded(c) and c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    assert failed == ["test_align", "test_projector", "test_projector_params", "test_loss", "test_logits",
                      "test_training"]
    checks = {c.get("id"): _text(c) for c in notebook.cells if str(c.get("id")).startswith("check-")}
    assert len(checks) == 4 and all("FAIL" in t and "not implemented yet" in t for t in checks.values()), checks
    assert "Part 5 needs parts 1-4" in _text(next(c for c in notebook.cells if c.get("id") == "ready"))


def test_hidden_tests_reject_a_solution_that_calls_the_reference(course):
    notebook = _graded(course, "borrower")
    check = next(c for c in notebook.cells if c.get("id") == "check-align")
    assert "PASS alignment" in _text(check)          # the formative checker cannot tell...
    test = next(c for c in notebook.cells if c.get("id") == "test_align")
    assert "AssertionError" in _text(test)           # ...the hidden tests can
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_grade("test_align", NAME, ASSIGNMENT, "borrower").score == 0


def test_planted_mistakes_cost_their_parts_only(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        score = {test: gradebook.find_grade(test, NAME, ASSIGNMENT, "planted").score
                 for test in ("test_align", "test_projector", "test_projector_params", "test_loss", "test_logits",
                              "test_training")}
    assert score == {"test_align": 0, "test_projector": 0, "test_projector_params": 2, "test_loss": 2,
                     "test_logits": 2, "test_training": 2}, score
    notebook = _graded(course, "planted")
    cells = {c.get("id"): c for c in notebook.cells}
    assert "FAIL alignment" in _text(cells["check-align"]) and "FAIL projector" in _text(cells["check-projector"])
    assert "Part 5 trains with your parts 1-4." in _text(cells["ready"])
    assert "SimKD (your parts)" in _text(cells["train"])
    # a failing graded test says what is wrong in one sentence (no raw list of parameter names)
    failure = next(o for o in cells["test_projector"].outputs if o.output_type == "error")
    message = failure.evalue
    assert message.startswith("the parameter names should be the official transfer.0/1/3/4/6/7.*") and "[" not in message
