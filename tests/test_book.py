"""scripts/book.py, the course site's builder: when executed notebooks may be reused, what a page may show."""
import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book", ROOT / "scripts" / "book.py")
book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book)


@pytest.fixture
def fake_tree(tmp_path, monkeypatch):
    """A notebooks/ with one small executed notebook and its _executed/ copy."""
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(nb, tmp_path / "notebooks" / "00_x.ipynb")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    monkeypatch.setattr(book, "EXECUTED", tmp_path / "_executed")
    book.stage()
    executed = nbformat.read(book.EXECUTED / "00_x.ipynb", as_version=4)
    executed.cells[0].execution_count = 1
    executed.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(executed, book.EXECUTED / "00_x.ipynb")
    return tmp_path


def test_executed_copies_are_reused_only_while_they_match_the_sources(fake_tree):
    assert book.stale_reason() is None
    source = fake_tree / "notebooks" / "00_x.ipynb"
    source.write_text(source.read_text().replace("print(1)", "print(2)"))
    assert "changed since it was executed" in book.stale_reason()


def test_an_unexecuted_or_failed_copy_is_not_reused(fake_tree):
    path = book.EXECUTED / "00_x.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    nbformat.write(nb, path)
    assert "error output" in book.stale_reason()
    nb.cells[0].execution_count, nb.cells[0].outputs = None, []
    nbformat.write(nb, path)
    assert "not executed to the end" in book.stale_reason()
    (book.EXECUTED / "sources.json").unlink()
    assert "no executed notebooks" in book.stale_reason()


def test_widget_views_become_text_or_a_note_and_no_widget_state_is_kept():
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0}}
    bar = nbformat.v4.new_output("display_data", data={**view, "text/plain": "100%|##########| 3/3 [00:01<00:00]"})
    ui = nbformat.v4.new_output("display_data", data={**view, "text/plain": "VBox(children=(HBox(children=(...)))"})
    plain = nbformat.v4.new_output("stream", name="stdout", text="kept\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[bar, ui, plain])],
                                  metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {}}})
    assert book.drop_widgets(nb) == 2
    bar, ui, plain = nb.cells[0].outputs
    assert bar["data"] == {"text/plain": "100%|##########| 3/3 [00:01<00:00]"}
    assert list(ui["data"]) == ["text/html"] and "next cell" in ui["data"]["text/html"]
    assert plain["text"] == "kept\n" and "widgets" not in nb.metadata


def test_the_assignment_page_is_the_student_version():
    nb = book.student_version(ROOT / "notebooks" / "05_assignment.ipynb")
    text = "\n".join(cell.source for cell in nb.cells)
    assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


def test_the_headline_is_computed_from_the_shipped_seed_table():
    from simkd_lite.analysis import load_seed_table

    table = load_seed_table()
    text = book.headline_markdown()
    gap = table["summary"]["simkd_minus_vanilla"]
    assert f"{gap['mean']:+.2f} ± {gap['std']:.2f}" in text
    assert f"{table['summary']['top1']['simkd']['mean']:.2f}" in text
