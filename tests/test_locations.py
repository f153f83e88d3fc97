"""Where data and runs go when a notebook or a caller does not say (DATA_ROOT = None, RUNS = None)."""
from pathlib import Path

from simkd_lite.data import default_data_root, find_clone, load_dataset, locate_dataset
from simkd_lite.data import fashion_mnist
from simkd_lite.experiments import Experiment
from simkd_lite.experiments.locations import default_runs_root

ROOT = Path(__file__).resolve().parents[1]


def test_inside_the_clone_data_and_runs_are_the_clones(monkeypatch):
    monkeypatch.delenv("SIMKD_LITE_DATA", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert find_clone() == ROOT
    assert default_data_root() == ROOT / "data"
    assert default_runs_root() == ROOT / "runs" / "notebooks"
    exp = Experiment.resolve("digits", "quick", data_root=None, runs=None)
    assert (exp.data_root, exp.runs_root) == (ROOT / "data", ROOT / "runs" / "notebooks")


def test_simkd_lite_data_wins_everywhere(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMKD_LITE_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(ROOT)
    assert default_data_root() == tmp_path / "elsewhere"


def test_outside_a_clone_data_goes_to_the_user_cache_and_runs_next_to_the_notebook(monkeypatch, tmp_path):
    monkeypatch.delenv("SIMKD_LITE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    # the package itself is imported from this clone here (an editable install): pretend it was installed
    monkeypatch.setattr("simkd_lite.data.core.__file__", str(tmp_path / "site-packages/simkd_lite/data/core.py"))
    assert find_clone() is None
    assert default_data_root() == tmp_path / "home" / ".cache" / "simkd_lite" / "data"
    assert default_runs_root() == tmp_path / "runs"


def test_fashion_mnist_is_copied_from_debian_into_the_default_root_from_any_folder(monkeypatch, tmp_path):
    """The Debian copy is found whatever the working directory (here a fake package folder of four tiny files
    would not pass the md5 check, so only the lookup is checked: locate reports the offline copy)."""
    monkeypatch.setenv("SIMKD_LITE_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    debian = tmp_path / "debian"
    debian.mkdir()
    for stem in fashion_mnist.FASHION_MNIST_FILES:
        (debian / f"{stem}.gz").write_bytes(b"")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST_DIR", debian)
    found = locate_dataset("fashion_mnist")
    assert found["path"] == str(tmp_path / "cache" / "FashionMNIST" / "raw")
    assert found["offline_copy"] == str(debian) and not found["present"]


def test_digits_load_with_no_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    bundle = load_dataset("digits", train_subset=10, test_subset=10)
    assert len(bundle.train) == 10 and not any(tmp_path.iterdir())
