"""The committed notebooks are clean and follow the series' conventions.

- valid nbformat, no outputs, no execution counts (they are committed unexecuted);
- the first code cell is tagged `parameters` (papermill) and defines the shared parameters, with
  PROFILE read from SIMKD_PROFILE (default "quick");
- each documents the paper profile and ends with a conclusion and "Try next";
- they are exactly what scripts/build_notebooks.py generates.
"""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["00_quickstart", "01_teacher_training", "02_projector_design", "03_gpu_distillation",
            "04_feature_space", "05_assignment"]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PARAMETERS = ("DATASET", "PROFILE", "EPOCHS", "DEVICE", "SEED", "DATA_ROOT", "RUNS")


def test_the_series_is_complete():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def test_valid_and_without_outputs(notebook):
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"
        assert "ExecuteTime" not in cell.metadata and "execution" not in cell.metadata


def test_first_code_cell_holds_the_tagged_parameters(notebook):
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    for name in PARAMETERS:
        assert re.search(rf"^{name} = ", first.source, re.MULTILINE), f"{name} missing from the parameters cell"
    assert 'PROFILE = os.environ.get("SIMKD_PROFILE", "quick")' in first.source
    assert 'DATA_ROOT = "../data"' in first.source and 'RUNS = "../runs/notebooks' in first.source
    assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1


def test_narrated_with_paper_profile_conclusion_and_try_next(notebook):
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert 'PROFILE="paper"' in markdown
    assert "## Conclusion" in notebook.cells[-1].source and "**Try next**" in notebook.cells[-1].source
    assert "$" in markdown  # equations


def test_notebooks_match_their_generator(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_notebooks.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
