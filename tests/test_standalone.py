"""A notebook outside the clone, as a new user meets it: the package installed from its wheel, the notebook alone
in an empty folder, no SIMKD_LITE_DATA. It must find its data in the per-user cache, write its runs next to
itself and nothing above its folder, and show the committed seed table (shipped as package data).

The run is shortened papermill-style (a cell injected after the `parameters` cell: one student epoch, no
plain-PyTorch epoch): what is tested is where things are read and written, not the accuracy.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
SHORTEN = "EPOCHS = 1\nPLAIN_EPOCHS = 0\n"


def _reuse_setuptools() -> list[str]:
    """--no-build-isolation when this environment's setuptools can build the package (no download), else []:
    pip then fetches pyproject.toml's build requirements into an isolated environment."""
    try:
        from importlib.metadata import version

        return ["--no-build-isolation"] if int(version("setuptools").split(".")[0]) >= 77 else []
    except Exception:  # no setuptools, or an odd version string
        return []


@pytest.fixture(scope="module")
def wheel_target(tmp_path_factory) -> Path:
    """`pip wheel --no-deps .`, then `pip install --no-deps --target T` of that wheel: T is an install of the
    package with nothing of the clone in it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *_reuse_setuptools(), "--quiet",
                    "-w", str(out / "dist"), str(ROOT)], check=True, cwd=out)
    wheel = next((out / "dist").glob("simkd_lite-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "simkd_lite/results/demo_seeds.json" in names, "the seed table is not shipped in the wheel"
    assert any(n.startswith("simkd_lite/pretrained/") and n.endswith(".pt") for n in names)
    target = out / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, cwd=out)
    return target


def _fashion_mnist_available() -> bool:
    from simkd_lite.data.fashion_mnist import DEBIAN_FASHION_MNIST_DIR

    return (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file() \
        or (ROOT / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def _preplace_data_if_no_debian_copy(cache_data: Path) -> None:
    """Debian's package is copied from /usr/share/datasets by the loader itself (what this test wants to see);
    without it, put the clone's copy in the cache, where a user's `simkd-lite data fetch` would."""
    from simkd_lite.data.fashion_mnist import DEBIAN_FASHION_MNIST_DIR

    if not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        shutil.copytree(ROOT / "data" / "FashionMNIST", cache_data / "FashionMNIST")


@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST is not on this machine (scripts/setup.sh)")
def test_the_quickstart_runs_from_the_wheel_alone_in_an_empty_folder(wheel_target, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    home, work = tmp_path / "home", tmp_path / "work"
    folder = work / "course"                       # the notebook's folder; `work` must stay as it is
    folder.mkdir(parents=True)
    home.mkdir()
    shutil.copyfile(NOTEBOOK, folder / NOTEBOOK.name)
    _preplace_data_if_no_debian_copy(home / ".cache" / "simkd_lite" / "data")

    nb = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    check = f"import simkd_lite\nassert simkd_lite.__file__.startswith({str(wheel_target)!r}), simkd_lite.__file__\n"
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(SHORTEN + check, metadata={"tags": ["injected-parameters"]}))

    env = {k: v for k, v in os.environ.items()
           if k not in ("SIMKD_LITE_DATA", "XDG_CACHE_HOME", "PYTHONPATH", "MPLBACKEND")}
    env.update(HOME=str(home), PYTHONPATH=str(wheel_target), SIMKD_THREADS="1", OMP_NUM_THREADS="1")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)   # the kernel's environment: a new user's, with the wheel's install on the path
    nbformat.write(nb, folder / NOTEBOOK.name)   # for a look after a failure

    text = "\n".join(out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert re.search(r"committed: \d+ runs \(seed/threads: s0/t1", text), "the committed seed table was not shown"
    assert "run `python benchmarks/demo_seeds.py" not in text
    assert sorted(p.name for p in work.iterdir()) == ["course"], "something was written above the notebook"
    assert (folder / "runs").is_dir(), "the runs are not next to the notebook"
    assert (home / ".cache" / "simkd_lite" / "data" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert list((folder / "runs").glob("00_quickstart_simkd_*.pt")), "the deployed student is not in ./runs"
