"""Issue 11, "no run is lost or silently spoiled": one test per row of the issue's table of faults.

Each test tries what a hostile but realistic user did (digits, one thread, tiny budgets) and checks
that no work is lost, nothing is silently wrong, and every error is one line naming the path or value.
Full disks use a size-limited tmpfs where this machine allows mounting one (root), else a patched writer.
Our errors are `simkd_lite.errors.SimKDLiteError`, a ValueError: the tests catch ValueError, so that
this file also runs (and fails row by row) against versions without that module.
"""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli
from simkd_lite import checkpoints
from simkd_lite.checkpoints import atomic_save, read_checkpoint
from simkd_lite.cli import main
from simkd_lite.data import fashion_mnist, load_dataset
from simkd_lite.distillers import SimKD, SimKDStudent, create_distiller
from simkd_lite.training import loop as trainer
from simkd_lite.experiments.jobs import fit_teacher
from simkd_lite.training.loop import TrainConfig, fit
from simkd_lite.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")
DIGITS = ["--dataset", "digits", "--threads", "1", "--quiet"]
TINY = TrainConfig(epochs=2, batch_size=128, lr=0.05, schedule="onecycle", augment=False)
FASHION_FILES = fashion_mnist.DEBIAN_FASHION_MNIST_DIR


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`simkd-lite ARGS` in this process: (exit code, stdout, stderr); argparse errors exit with 2."""
    try:
        code = main(list(args))
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles: str) -> str:
    """The single `error:` line of stderr (no traceback), checked to contain every needle."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tmpfs(path: Path, *options: str) -> bool:
    """Mount a tmpfs at `path` (True), or return False where this machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def fill(disk: Path) -> None:
    """Write zeros to DISK/filler until the file system has no byte left."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture
def mounts():
    """Mount points made by the test, unmounted afterwards."""
    made: list[Path] = []

    def mount(path: Path, *options: str) -> bool:
        ok = tmpfs(path, *options)
        if ok:
            made.append(path)
        return ok

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture
def finished_student(tmp_path, digits_teacher, capsys) -> tuple[Path, list[str]]:
    """A finished 2-epoch SimKD student run on digits, and the arguments that made it."""
    out = tmp_path / "student"
    args = ["distill", *DIGITS, "--teacher", str(digits_teacher), "--epochs", "2", "--out", str(out)]
    assert cli(capsys, *args)[0] == 0
    return out, args


# ------------------------------------------------------------------------------------ row 1
def test_row01_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "teacher"
    assert cli(capsys, "train-teacher", *DIGITS, "--epochs", "2", "--out", str(out))[0] == 0
    best = (out / "best.pt").read_bytes()
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--lr", "0.0001", "--out", str(out))
    assert code == 2
    one_line_error(err, str(out), "already holds a run", "--resume", "--overwrite")
    assert (out / "best.pt").read_bytes() == best  # nothing was touched
    code, _, err = cli(capsys, "train-teacher", "--dataset", "digits", "--threads", "1", "--epochs", "1",
                       "--out", str(out), "--overwrite")
    assert code == 0 and "Traceback" not in err
    assert read_checkpoint(out / "last.pt")["epoch"] == 1


# ------------------------------------------------------------------------------------ row 2
def test_row02_a_second_writer_is_refused_with_the_holders_pid_and_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "teacher"
    args = ["train-teacher", *DIGITS, "--model", "resnet8_w8", "--epochs", "30", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "simkd_lite", *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second one could try"
        second = run_cli(*args[:-2], "--seed", "1", "--out", str(out), check=False)
        assert second.returncode == 2
        one_line_error(second.stderr, str(out), "in use by another run", f"PID {first.pid}")
    finally:
        os.kill(first.pid, signal.SIGKILL)  # no chance to clean up: only the kernel drops the lock
        first.wait()
    resumed = run_cli(*args, "--resume", check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(out / "last.pt")["epoch"] == 30


# ------------------------------------------------------------------------------------ row 3
class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no `except Exception` catches it."""


def test_row03_best_pt_never_lags_last_pt_after_a_kill_between_the_two_writes(tmp_path, digits, monkeypatch):
    scores = iter(range(10, 100, 10))  # every epoch improves, so every epoch writes best.pt and last.pt
    monkeypatch.setattr(trainer, "top1", lambda logits, labels: float(next(scores)))
    saves = []

    def save_then_die(state, path):
        saves.append(Path(path).name)
        atomic_save(state, path)
        if len(saves) == 5:  # epoch 3's first write landed; die before the second one
            Path(path).with_name(f"{Path(path).name}.x1y2.tmp").write_bytes(b"half a file")
            raise Killed

    monkeypatch.setattr(trainer, "atomic_save", save_then_die)
    config = replace(TINY, epochs=3)
    with pytest.raises(Killed):
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, config,
            tmp_path, log=None)
    monkeypatch.setattr(trainer, "atomic_save", atomic_save)
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, config,
        tmp_path, resume=True, log=None)
    last, best = read_checkpoint(tmp_path / "last.pt"), read_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 3 and best["epoch"] == 3 and best["best_acc"] == last["best_acc"]
    assert not list(tmp_path.glob("*.tmp"))  # the interrupted save's leftovers are gone


def test_row03_a_lagging_best_pt_left_by_older_versions_is_repaired_on_resume(tmp_path, digits, capsys, monkeypatch):
    scores = iter([50.0, 60.0])
    monkeypatch.setattr(trainer, "top1", lambda logits, labels: next(scores))  # epoch 2 is the best
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, tmp_path,
        log=None)
    last = read_checkpoint(tmp_path / "last.pt")
    # What older versions left after a kill between writing last.pt and best.pt in epoch 2:
    atomic_save({**last, "epoch": 1, "best_acc": 50.0}, tmp_path / "best.pt")
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, tmp_path,
        resume=True)
    assert read_checkpoint(tmp_path / "best.pt")["epoch"] == last["epoch"]
    assert "repaired" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ row 4
@pytest.fixture(scope="module")
def fashion_raw(tmp_path_factory) -> Path:
    """The four unpacked Fashion-MNIST files, made once from Debian's package (skip without it)."""
    if not all((FASHION_FILES / f"{stem}.gz").is_file() for stem in fashion_mnist.FASHION_MNIST_FILES):
        pytest.skip("needs Debian's dataset-fashion-mnist package")
    root = tmp_path_factory.mktemp("fashion")
    assert fashion_mnist.ensure_fashion_mnist_files(root)
    return root / "FashionMNIST" / "raw"


def fashion_root_without(tmp_path: Path, fashion_raw: Path, stem: str) -> Path:
    """A data root holding every unpacked file (as links) except `stem`."""
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for other in fashion_mnist.FASHION_MNIST_FILES:
        if other != stem:
            (raw / other).symlink_to(fashion_raw / other)
    return tmp_path / "data"


def test_row04_a_fetch_onto_a_full_disk_leaves_nothing_half_written_and_a_later_fetch_works(
        tmp_path, fashion_raw, capsys, monkeypatch):
    root = fashion_root_without(tmp_path, fashion_raw, "train-labels-idx1-ubyte")
    raw = root / "FashionMNIST" / "raw"

    def copy_until_full(src, dst, *args, **kwargs):  # the disk fills up halfway through the copy
        Path(dst).write_bytes(Path(src).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copyfile", copy_until_full)
    code, _, err = cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(root))
    assert code == 2
    one_line_error(err, "no space left on device while writing", str(raw / "train-labels-idx1-ubyte"))
    assert sorted(p.name for p in raw.iterdir() if "train-labels" in p.name) == []  # no truncated .gz stays
    monkeypatch.undo()
    assert cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(root), "--quiet")[0] == 0
    assert (raw / "train-labels-idx1-ubyte").stat().st_size == 60_008


def test_row04_a_truncated_archive_is_detected_removed_and_fetched_again(tmp_path, fashion_raw, capsys):
    root = fashion_root_without(tmp_path, fashion_raw, "train-labels-idx1-ubyte")
    packed = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    packed.write_bytes((FASHION_FILES / packed.name).read_bytes()[:2000])  # what a full disk left
    code, _, err = cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(root), "--quiet")
    assert code == 0, err
    assert "corrupt" in err and str(packed) in err
    assert load_dataset("fashion_mnist", root, augment=False).train.targets.shape == (60_000,)


# ------------------------------------------------------------------------------------ row 5
@pytest.mark.parametrize("change", [["--lr", "5"], ["--batch-size", "32"], ["--seed", "7"], ["--teacher"]])
def test_row05_resume_with_changed_settings_is_refused_listing_them(change, finished_student, tmp_path, capsys):
    out, args = finished_student
    if change == ["--teacher"]:
        other = tmp_path / "other_teacher"
        assert cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(other))[0] == 0
        change = ["--teacher", str(other / "last.pt")]
    before = (out / "last.pt").read_bytes(), (out / "config.json").read_bytes()
    code, _, err = cli(capsys, *args, *change, "--resume")
    assert code == 2
    key = {"--lr": "train.lr", "--batch-size": "train.batch_size", "--seed": "train.seed",
           "--teacher": "teacher_sha256"}[change[0]]
    one_line_error(err, str(out), "other settings", key)
    assert ((out / "last.pt").read_bytes(), (out / "config.json").read_bytes()) == before


def test_row05_resume_with_the_same_settings_reuses_and_the_same_teacher_elsewhere_is_the_same(
        finished_student, digits_teacher, tmp_path, capsys):
    out, args = finished_student
    moved = tmp_path / "moved" / "teacher.pt"
    moved.parent.mkdir()
    shutil.copy(digits_teacher, moved)
    args = [str(moved) if a == str(digits_teacher) else a for a in args if a != "--quiet"]
    before = (out / "last.pt").read_bytes()
    code, out_text, err = cli(capsys, *args, "--resume")
    assert code == 0, err
    assert "holds a finished run (2/2 epochs): reusing it" in out_text
    assert (out / "last.pt").read_bytes() == before


def test_row05_multistep_may_extend_epochs_on_resume_bitwise_like_a_straight_run(tmp_path, digits):
    multistep = replace(TINY, schedule="multistep", milestones=(2,), epochs=3)

    def run(out, epochs, resume=False):
        torch.manual_seed(0)
        distiller = create_distiller("vanilla", create_model("resnet8_w8", 10, 1))
        fit(distiller, digits.train, digits.test, replace(multistep, epochs=epochs), out, resume=resume, log=None)
        return read_checkpoint(out / "last.pt")["model"]

    straight = run(tmp_path / "straight", 3)
    run(tmp_path / "extended", 2)
    extended = run(tmp_path / "extended", 3, resume=True)
    assert all(torch.equal(straight[k], extended[k]) for k in straight)
    with pytest.raises(ValueError, match="already completed 3"):
        run(tmp_path / "extended", 2, resume=True)


# ------------------------------------------------------------------------------------ row 6
def test_row06_a_failing_call_leaves_the_runs_config_json_untouched(finished_student, capsys):
    out, args = finished_student
    before = (out / "config.json").read_bytes()
    code, _, err = cli(capsys, *args, "--student", "resnet8x5", "--resume")
    assert code == 2
    one_line_error(err, "resnet8x5")
    assert (out / "config.json").read_bytes() == before


# ------------------------------------------------------------------------------------ row 7
def test_row07_demo_with_zero_epochs_is_an_error(tmp_path, capsys):
    code, _, err = cli(capsys, "demo", *DIGITS, "--epochs", "0")
    assert code == 2
    one_line_error(err, "--epochs", "0")
    from simkd_lite.experiments.demo import run_demo

    with pytest.raises(ValueError, match="epochs"):
        run_demo("digits", out=tmp_path, epochs=0, log=None)


# ------------------------------------------------------------------------------------ row 8
def test_row08_more_threads_than_cores_warns_once_and_uses_the_cores(tmp_path, capsys):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        code, _, err = cli(capsys, "train-teacher", "--dataset", "digits", "--model", "resnet8_w8", "--epochs", "1",
                           "--threads", "10000", "--quiet", "--out", str(tmp_path / "t"))
        assert code == 0
        assert err.count("warning") == 1 and "--threads 10000" in err and f"using {cores}" in err
        assert torch.get_num_threads() <= cores
    finally:
        torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ row 9
def test_row09_unusable_output_paths_give_one_line_naming_the_path(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "under"):
        code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(out))
        assert code == 2
        one_line_error(err, str(a_file), "is a file, not a folder")
    started = time.perf_counter()
    code, _, err = cli(capsys, "bench", "--json", str(tmp_path), "--steps", "1")
    assert code == 2 and time.perf_counter() - started < 5  # refused before measuring anything
    one_line_error(err, str(tmp_path), "is a folder, not a file")


def test_row09_read_only_folders_give_one_line(tmp_path, capsys, mounts):
    read_only = tmp_path / "ro"
    if not mounts(read_only, "ro", "size=1m"):
        read_only.mkdir(exist_ok=True)
        read_only.chmod(0o555)
        if os.access(read_only, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(read_only / "run"))
    assert code == 2
    one_line_error(err, str(read_only / "run"))
    if all((FASHION_FILES / f"{s}.gz").is_file() for s in fashion_mnist.FASHION_MNIST_FILES):
        code, _, err = cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(read_only))
        assert code == 2
        one_line_error(err, str(read_only))


def test_row09_a_disk_with_zero_bytes_free_gives_one_line(tmp_path, capsys, mounts):
    full = tmp_path / "full"
    if mounts(full, "size=64k"):
        fill(full)
    else:
        pytest.skip("needs a tmpfs (root); rows 4 and 11 cover full disks with a patched writer")
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(full / "run"))
    assert code == 2
    one_line_error(err, "no space left on device", str(full / "run"))


# ----------------------------------------------------------------------------------- row 10
@pytest.mark.parametrize("flags", [["--profile", "paper", "--dataset", "cifar100", "--epochs", "0"],
                                   ["--batch-size", "0"], ["--factor", "0"], ["--threads", "-1"]])
def test_row10_zero_and_negative_numbers_are_refused_at_the_edge(flags, tmp_path, capsys):
    code, _, err = cli(capsys, "distill", "--dataset", "digits", *flags, "--out", str(tmp_path))
    assert code == 2
    one_line_error(err, flags[-2], flags[-1])
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


@pytest.mark.parametrize("content", [torch.zeros(3), [1, 2, 3]], ids=["tensor", "list"])
def test_row10_eval_of_a_file_holding_no_checkpoint_dict(content, tmp_path, capsys):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    code, _, err = cli(capsys, "eval", str(path), "--dataset", "digits")
    assert code == 2
    one_line_error(err, str(path), "not a checkpoint")


# ----------------------------------------------------------------------------------- row 11
def test_row11_a_disk_that_fills_mid_run_says_so_and_keeps_the_last_good_checkpoint(tmp_path, mounts, monkeypatch):
    disk = tmp_path / "disk"
    real = mounts(disk, "size=32m")

    def fill_after_epoch_1(message: str) -> None:
        if "epoch 1/" not in message:
            return
        if real:
            fill(disk)
        else:
            def no_space(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(checkpoints.os, "fsync", no_space)

    out = disk / "run"
    with pytest.raises(ValueError) as error:
        fit_teacher("digits", "resnet8_w8", replace(TINY, epochs=3), out, log=fill_after_epoch_1)
    message = str(error.value)
    assert "\n" not in message and "no space left on device while writing" in message
    assert f"{out / 'last.pt'} (after epoch 1) is intact" in message and "--resume" in message
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert not list(out.glob("*.tmp"))


# ----------------------------------------------------------------------------------- row 12
@pytest.mark.parametrize("flags", [["--epochs", "-1"], ["--batch-size", "-5"]])
def test_row12_negative_numbers_name_the_flag(flags, tmp_path, capsys):
    code, _, err = cli(capsys, "train-teacher", *DIGITS, *flags, "--out", str(tmp_path))
    assert code == 2
    one_line_error(err, flags[0], flags[1], ">= 1")


def test_row12_resume_with_more_epochs_under_onecycle_explains_why_not(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train-teacher", *DIGITS, "--model", "resnet8_w8", "--out", str(out)]
    assert cli(capsys, *args, "--epochs", "2")[0] == 0
    code, _, err = cli(capsys, *args, "--epochs", "4", "--resume")
    assert code == 2
    one_line_error(err, str(out), "onecycle", "--epochs 2", "total number of epochs")


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n", bytes(range(256)) * 8], ids=["empty", "text", "random"])
def test_row12_unreadable_checkpoints_get_a_message_that_names_them(content, tmp_path, capsys):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    code, _, err = cli(capsys, "eval", str(path), "--dataset", "digits")
    assert code == 2
    line = one_line_error(err, str(path))
    assert not line.rstrip().endswith(":")  # the cause is said, not left empty


def test_row12_a_truncated_idx_file_is_made_again(tmp_path, fashion_raw, capsys):
    root = fashion_root_without(tmp_path, fashion_raw, "train-labels-idx1-ubyte")
    truncated = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    truncated.write_bytes((fashion_raw / truncated.name).read_bytes()[:100])
    bundle = load_dataset("fashion_mnist", root, augment=False)
    assert len(bundle.train) == 60_000 and truncated.stat().st_size == 60_008
    assert "instead of 60,008" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- row 13
def test_row13_an_empty_out_is_refused(tmp_path, capsys, digits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", "")
    assert code == 2
    one_line_error(err, "--out", "empty")
    with pytest.raises(ValueError, match="empty"):
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, "",
            log=None)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------- row 14
def test_row14_from_official_with_the_wrong_teacher_fails_at_construction(tmp_path):
    student, projector = create_model("resnet8_w8", 10, 1), SimKD(32, 128, factor=2)  # made for resnet8x2
    atomic_save({"model": student.state_dict(), "proj": projector.state_dict()}, tmp_path / "student.pth")
    atomic_save({"model": create_model("resnet8", 10, 1).state_dict(), "model_name": "resnet8"},
                tmp_path / "wrong_teacher.pth")  # 64 channels, not 128
    with pytest.raises(ValueError, match="reads 64 channels, but the projector outputs 128"):
        SimKDStudent.from_official(tmp_path / "student.pth", tmp_path / "wrong_teacher.pth", "resnet8_w8")


# ------------------------------------------------------------------------------- the demo
def test_the_demo_run_twice_reuses_its_finished_runs(tmp_path, digits_teacher):
    demo = ["demo", "--dataset", "digits", "--threads", "1", "--teacher", str(digits_teacher), "--epochs", "1",
            "--out", str(tmp_path)]
    run_cli(*demo)
    weights = read_checkpoint(tmp_path / "simkd" / "last.pt")["model"]
    second = run_cli(*demo)
    assert f"{tmp_path / 'vanilla'} holds a finished run (1/1 epochs): reusing it" in second.stdout
    again = read_checkpoint(tmp_path / "simkd" / "last.pt")["model"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    other = run_cli(*demo, "--seed", "5", check=False)
    assert other.returncode == 2
    one_line_error(other.stderr, "train.seed", "--overwrite")
