"""Build the course site: the executed notebooks, the results pages and a landing page, as static HTML.

    python scripts/book.py stage     # copy notebooks/*.ipynb to _executed/ (to be executed there)
    python scripts/book.py execute   # stage, then execute the copies in place: pytest --nbmake --overwrite
    python scripts/book.py build     # execute only if the copies are missing or stale, then _build/html/
    python scripts/book.py build --no-execute   # only from current executed copies (else no site): scripts/test.sh

The notebooks are executed ONCE, for the tests and the site together: `scripts/test.sh` runs nbmake with
`--overwrite` on the staged copies (that is its notebook test), and `build` uses those copies when they are
up to date: made from the current `notebooks/*.ipynb` (a SHA-256 of each source is kept in
`_executed/sources.json`), every code cell executed, no error output. Otherwise `build` executes them
itself, the same way.

The site (Sphinx + MyST-NB + sphinx-book-theme, see docs/conf.py) is assembled in `_build/site/` from
docs/ (landing page, configuration), the executed notebooks (widget views replaced by their text or a
note: they need a live kernel; the cell after each widget draws the same figure), 05 as nbgrader releases it to students (no
solutions, hidden tests or reference answers), and benchmarks/*.md. MathJax comes from the npm package
`mathjax` (pinned), copied into the site: no page loads anything from the network.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
EXECUTED = ROOT / "_executed"        # not under _build/: nbmake skips every path with a `_build` part
SITE_SOURCE = BUILD / "site"
HTML = BUILD / "html"
MATHJAX = BUILD / "mathjax"           # npm install --prefix here: node_modules/mathjax/es5/...
MATHJAX_VERSION = "3.2.2"             # 3.x ships its CHTML fonts in the package (4.x fetches fonts from a CDN)
ASSIGNMENT = "05_assignment.ipynb"    # shown as the student version
NBMAKE = ["--nbmake", "--nbmake-timeout=600", "--overwrite", "--durations=0"]


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


# ------------------------------------------------------------------------------ executing once
def stage() -> None:
    """Fresh copies of notebooks/*.ipynb in _executed/, with the SHA-256 of each source."""
    if EXECUTED.exists():
        shutil.rmtree(EXECUTED)
    EXECUTED.mkdir(parents=True)
    hashes = {}
    for src in sources():
        shutil.copyfile(src, EXECUTED / src.name)
        hashes[src.name] = _sha256(src)
    (EXECUTED / "sources.json").write_text(json.dumps(hashes, indent=1) + "\n")


def stale_reason() -> str | None:
    """Why the executed copies cannot be used (None: they can)."""
    import nbformat

    record = EXECUTED / "sources.json"
    if not record.is_file():
        return "no executed notebooks in _executed/"
    hashes = json.loads(record.read_text())
    for src in sources():
        copy = EXECUTED / src.name
        if hashes.get(src.name) != _sha256(src) or not copy.is_file():
            return f"{src.name} changed since it was executed"
        nb = nbformat.read(copy, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if cell.get("execution_count") is None:
                return f"{src.name} was not executed to the end"
            if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
                return f"{src.name} has an error output"
    return None


def execute(pytest_args: list[str] = ()) -> int:
    """Stage, then execute every copy in place with nbmake (the notebook test of scripts/test.sh)."""
    stage()
    _say("executing the notebooks in _executed/ (pytest --nbmake --overwrite; minutes on a CPU)")
    # Figures need the kernel's own (inline) plotting backend, which ipykernel sets only when MPLBACKEND is unset:
    # scripts/test.sh exports MPLBACKEND=Agg for the unit tests, which would leave every plt.show() empty.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.call([sys.executable, "-m", "pytest", *NBMAKE, str(EXECUTED.relative_to(ROOT)), *pytest_args],
                           cwd=ROOT, env=env)


# ------------------------------------------------------------------------------ the site's pages
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


WIDGET_NOTE = ("<p><em>An interactive widget: it needs a running kernel (open the notebook in Jupyter). "
               "The next cell draws the same figure for its default settings.</em></p>")


def drop_widgets(nb) -> int:
    """Replace widget views (and drop the saved widget state): offline they would load the widget library from
    a CDN. A progress bar keeps its text (tqdm's last state, e.g. `100%|####| 3/3`); an interactive widget
    becomes a one-line note pointing at the figure the next cell draws. Returns how many were replaced."""
    replaced = 0
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            replaced += 1
            text = "".join(data.get("text/plain", ""))
            if re.match(r"^\w+\(", text) or not text.strip():  # a widget's repr, e.g. VBox(children=(...))
                out["data"] = {"text/html": WIDGET_NOTE}
            else:
                out["data"] = {"text/plain": text}
    return replaced


def student_version(path: Path):
    """05 as nbgrader's `generate_assignment` gives it to students: solutions replaced by
    `raise NotImplementedError()` / "YOUR ANSWER HERE", hidden tests and mark schemes removed, no outputs."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions

    nb, resources = nbformat.read(path, as_version=4), {}
    for step in (ClearSolutions(), ClearHiddenTests(), ClearMarkScheme(), ClearOutput()):
        nb, resources = step.preprocess(nb, resources)
    note = nbformat.v4.new_markdown_cell(
        "*This page shows the assignment as students receive it (nbgrader's student version: no solutions, no "
        "hidden tests, not executed). Download it with the button at the top right to work on it.*")
    nb.cells.insert(1, note)
    return nb


def headline_markdown() -> str:
    """The landing page's comparison, computed from the committed seed table (never typed in)."""
    from simkd_lite.analysis import load_seed_table

    table = load_seed_table()
    top1, summary = table["summary"]["top1"], table["summary"]
    names = {"teacher": "teacher (shipped)", "vanilla": "vanilla student", "kd": "KD", "fitnet": "FitNet",
             "simkd": "SimKD"}
    rows = ["| method | test top-1 (%), mean ± std | min – max |", "|---|---|---|"]
    rows += [f"| {names[m]} | {top1[m]['mean']:.2f} ± {top1[m]['std']:.2f} | {top1[m]['min']:.2f} – {top1[m]['max']:.2f} |"
             for m in ("teacher", "vanilla", "kd", "fitnet", "simkd")]
    gap, noise = summary["simkd_minus_vanilla"], 2 * max(top1["vanilla"]["std"], top1["simkd"]["std"])
    verdict = ("larger than" if gap["min"] > noise else "not clearly larger than")
    seeds = ", ".join(map(str, table["seeds"]))
    return "\n".join([
        f"`simkd-lite demo` (quick profile, {table['dataset']}, the shipped teacher) over seeds {seeds}, "
        f"each on {table['test_images']:,} test images; measured on {table['machine']}"
        + (f" ({table['note']})" if table.get("note") else "") + ":",
        "",
        *rows,
        "",
        f"SimKD − vanilla: **{gap['mean']:+.2f} ± {gap['std']:.2f} points** (smallest over the seeds "
        f"{gap['min']:+.2f}), {verdict} the noise (twice the larger seed standard deviation of the two, "
        f"{noise:.2f} points). Teacher − SimKD: {summary['teacher_minus_simkd']['mean']:.2f} ± "
        f"{summary['teacher_minus_simkd']['std']:.2f} points. Computed from `simkd_lite/results/demo_seeds.json` "
        f"(written by `{table['command']}`) when this site was built.",
        ""])


def _linked_files(markdown: Path) -> list[Path]:
    """Local files a results page links to (e.g. results/run_benchmarks.json), relative to its folder: they
    are copied beside it, keeping that relative path, so the links work on the site."""
    found = []
    for target in re.findall(r"\]\(([^)#\s]+)\)", markdown.read_text()):
        path = (markdown.parent / target).resolve()
        if ("://" not in target and path.is_file() and path.is_relative_to(markdown.parent.resolve())
                and path.suffix != ".md"):
            found.append(path.relative_to(markdown.parent.resolve()))
    return found


def assemble() -> None:
    """_build/site/: docs/ + executed notebooks (widgets dropped) + 05's student version + benchmarks/*.md."""
    import nbformat

    if SITE_SOURCE.exists():
        shutil.rmtree(SITE_SOURCE)
    shutil.copytree(ROOT / "docs", SITE_SOURCE)
    (SITE_SOURCE / "notebooks").mkdir()
    for src in sources():
        if src.name == ASSIGNMENT:
            nb = student_version(src)
        else:
            nb = nbformat.read(EXECUTED / src.name, as_version=4)
            drop_widgets(nb)
        nbformat.write(nb, SITE_SOURCE / "notebooks" / src.name)
    (SITE_SOURCE / "results").mkdir()
    for page in sorted((ROOT / "benchmarks").glob("*.md")):
        shutil.copyfile(page, SITE_SOURCE / "results" / page.name)
        for linked in _linked_files(page):
            (SITE_SOURCE / "results" / linked).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page.parent / linked, SITE_SOURCE / "results" / linked)
    (SITE_SOURCE / "headline.md").write_text(headline_markdown())


def vendor_mathjax() -> Path:
    """MathJax's es5/ folder from the npm package `mathjax` (installed once into _build/mathjax)."""
    es5 = MATHJAX / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        if shutil.which("npm") is None:
            raise SystemExit("book: npm is needed once to fetch MathJax (the page's math renderer); install "
                             "Node.js (Debian: sudo apt-get install npm) and run again.")
        _say(f"fetching MathJax {MATHJAX_VERSION} (npm package `mathjax`) into {MATHJAX.relative_to(ROOT)}/")
        MATHJAX.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(MATHJAX), "--no-save", "--no-audit", "--no-fund",
                        "--loglevel=error", f"mathjax@{MATHJAX_VERSION}"], check=True)
    return es5


def copy_mathjax(es5: Path, dest: Path) -> None:
    """The TeX-to-HTML component and what it loads on demand (extensions, fonts, menu, accessibility): ~9 MB of the
    package's 24 MB (the other combined builds are left out)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(es5 / "tex-chtml.js", dest / "tex-chtml.js")
    for part in ("input", "output", "ui", "a11y", "sre", "adaptors"):
        if (es5 / part).is_dir():
            shutil.copytree(es5 / part, dest / part, dirs_exist_ok=True)


def build(pytest_args: list[str] = (), execute_if_stale: bool = True) -> int:
    """Execute the notebooks if needed (unless `execute_if_stale` is False: then no site, and 0), then write the
    site to _build/html/ (index.html)."""
    reason = stale_reason()
    if reason is not None and not execute_if_stale:
        _say(f"no site built: {reason} (./scripts/book.sh executes them)")
        return 0
    if reason is not None:
        _say(f"{reason}: executing them")
        status = execute(pytest_args)
        if status != 0 or stale_reason() is not None:
            print(f"book: the notebooks did not execute cleanly ({stale_reason()}); no site built.", file=sys.stderr)
            return status or 1
    else:
        _say("using the executed notebooks in _executed/ (up to date with notebooks/)")
    es5 = vendor_mathjax()
    assemble()
    copy_mathjax(es5, SITE_SOURCE / "_static" / "mathjax")
    _say("building the site with Sphinx")
    if HTML.exists():
        shutil.rmtree(HTML)
    status = subprocess.call([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1",
                              "-d", str(BUILD / "doctrees"), str(SITE_SOURCE), str(HTML)], cwd=ROOT)
    if status == 0:
        _say(f"the site: {HTML / 'index.html'} (open it in a browser; no network needed)")
    return status


def main(argv: list[str] | None = None) -> int:
    """`book.py ACTION [--no-execute] [PYTEST ARGS...]`: everything after the action but --no-execute goes to
    pytest unchanged (e.g. `-k 00 -x`), so no argument parser reorders it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("stage", "execute", "build"):
        print(__doc__)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    action, rest = argv[0], [a for a in argv[1:] if a != "--no-execute"]
    os.chdir(ROOT)
    os.environ.setdefault("MPLBACKEND", "Agg")
    if action == "stage":
        stage()
        return 0
    if action == "execute":
        return execute(rest)
    return build(rest, execute_if_stale="--no-execute" not in argv)


if __name__ == "__main__":
    sys.exit(main())
