"""The committed notebooks are the source, edited in JupyterLab: they must be committed clean.

A notebook fails when it has
- outputs or execution counts (strip them: see notebooks/README.md),
- no `parameters`-tagged first code cell (papermill's convention; nbmake and papermill runs rely on it),
- markdown that renders as an accidental code block: a line indented by 4 or more spaces outside fenced
  code, display math and list items (CommonMark turns it into a literal code block with raw backticks).

Metadata is deliberately not checked: re-saving a notebook in JupyterLab rewrites kernel, language and
cell metadata, and that must never fail this test (test_a_jupyterlab_resave_stays_clean).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d{1,9}[.)])(\s|$)")


def accidental_code_lines(markdown: str) -> list[tuple[int, str]]:
    """(line number, line) of every line indented >= 4 columns that CommonMark may render as code.

    Skips fenced blocks (``` or ~~~), $$ display math (Jupyter takes math out before rendering
    markdown) and list items with their continuation lines (indentation belongs to the item there).
    A list ends at the first unindented, non-item line after a blank line.
    """
    found, fence, in_math, in_list, after_blank = [], None, False, False, True
    for number, raw in enumerate(markdown.splitlines(), 1):
        line = raw.expandtabs(4)
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if fence:  # a fence closes with a run of the same character at least as long, and nothing else
            if indent < 4 and stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
            continue
        match = FENCE.match(line)
        if match:
            fence = match.group(1)
            continue
        if in_math or stripped.startswith("$$"):
            in_math ^= stripped.count("$$") % 2 == 1
            continue
        if not stripped:
            after_blank = True
            continue
        if LIST_ITEM.match(line) and indent < 4:
            in_list = True
        elif indent < 2 and after_blank:
            in_list = False
        if indent >= 4 and not in_list:
            found.append((number, raw))
        after_blank = False
    return found


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """Everything that keeps `notebook` from being committed as it is (empty: clean)."""
    found = []
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    for index, cell in code:
        if cell.get("outputs"):
            found.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index} has execution count {cell.execution_count}")
    if not code or "parameters" not in code[0][1].metadata.get("tags", []):
        found.append("the first code cell is not tagged `parameters`")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            for number, line in accidental_code_lines(cell.source):
                found.append(f"markdown cell {index}, line {number} is indented >= 4 spaces and renders as a "
                             f"code block: {line.strip()[:60]!r}")
    return found


# ------------------------------------------------------------------------------------------ the notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert problems(notebook) == [], (f"{path.name}: " + "; ".join(problems(notebook)) +
                                      " (clear outputs: see notebooks/README.md)")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_jupyterlab_resave_stays_clean(path, tmp_path):
    """What JupyterLab 4 changes on save (metadata, key order, JSON layout) does not fail the check."""
    notebook = json.loads(path.read_text())
    notebook["metadata"]["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py", "mimetype": "text/x-python",
        "name": "python", "nbconvert_exporter": "python", "pygments_lexer": "ipython3", "version": "3.11.7"}
    notebook["metadata"]["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                          "name": "python3"}
    notebook["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                                      "version_minor": 0}}
    for cell in notebook["cells"]:
        cell["metadata"].update({"editable": True, "slideshow": {"slide_type": ""}})
        if cell["cell_type"] == "code":
            cell["metadata"].update({"scrolled": True, "execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}})
            cell["metadata"].setdefault("tags", []).append("instructor-note")
        else:
            cell["metadata"]["jp-MarkdownHeadingCollapsed"] = True
        cell["source"] = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    resaved = tmp_path / path.name
    resaved.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    notebook = nbformat.read(resaved, as_version=4)
    nbformat.validate(notebook)
    assert problems(notebook) == []


# ------------------------------------------------------------------------------------------ the check can fail
def _notebook(*cells) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=list(cells))


def _parameters(source="SEED = 0"):
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})


def test_outputs_execution_counts_and_missing_parameters_are_reported():
    executed = _parameters()
    executed.execution_count = 3
    executed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    found = problems(_notebook(nbformat.v4.new_markdown_cell("# Title"), executed))
    assert found == ["cell 1 has outputs", "cell 1 has execution count 3"]
    untagged = problems(_notebook(nbformat.v4.new_code_cell("SEED = 0"), _parameters()))
    assert untagged == ["the first code cell is not tagged `parameters`"]
    assert problems(_notebook(nbformat.v4.new_markdown_cell("# No code"))) == [
        "the first code cell is not tagged `parameters`"]
    assert problems(_notebook(_parameters(), nbformat.v4.new_code_cell("x = 1"))) == []


# The bug this test was written for: an 8-space paragraph after a fenced block (01-05, before issue 9).
PARAMETERS_BUG = """## Parameters

```bash
papermill NOTEBOOK.ipynb out.ipynb
```

        Only part 4 trains anything: `EPOCHS` epochs.

Normal text."""


@pytest.mark.parametrize("markdown, flagged", [
    (PARAMETERS_BUG, [7]),
    ("Text\n\n    indented paragraph", [3]),
    ("Text\n\tindented with a tab", [2]),
    ("```python\n    x = 1\n```\n\n~~~\n        y = 2\n~~~", []),
    ("````\n```\n    inside a longer fence\n```\n````", []),
    ("$$\n    a = b\n    + c\n$$\nafter\n\n    flagged", [7]),
    ("* item\n    continued at 4\n\n    still the item after a blank line\n\nback to text\n\n    flagged", [8]),
    ("1. step\n   * nested\n       deeper continuation\n2. next", []),
    ("- item\n\nparagraph ends the list\n\n    flagged", [5]),
    ("   three spaces are fine", []),
])
def test_accidental_code_blocks(markdown, flagged):
    assert [number for number, _ in accidental_code_lines(markdown)] == flagged
    if flagged:
        notebook = _notebook(_parameters(), nbformat.v4.new_markdown_cell(markdown))
        assert any("renders as a code block" in p for p in problems(notebook))


def test_indented_lines_inside_the_parameters_bug_are_quoted():
    found = problems(_notebook(_parameters(), nbformat.v4.new_markdown_cell(PARAMETERS_BUG)))
    assert found == ["markdown cell 1, line 7 is indented >= 4 spaces and renders as a code block: "
                     "'Only part 4 trains anything: `EPOCHS` epochs.'"]
