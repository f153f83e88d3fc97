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
    # 100 epochs: on an idle machine 30 digits epochs ended while the second process was still importing torch
    args = ["train-teacher", *DIGITS, "--model", "resnet8_w8", "--epochs", "100", "--out", str(out)]
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
    assert read_checkpoint(out / "last.pt")["epoch"] == 100


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
            # what the interrupted save left: our temporary name (writer's PID: one that cannot be running)
            Path(path).with_name(f".{Path(path).name}.{2 ** 22 + 7}.a1b2c3.simkd-tmp").write_bytes(b"half a file")
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
    assert not list(tmp_path.glob("*tmp"))  # the interrupted save's leftovers are gone


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
    assert not list(out.glob("*tmp"))


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


# =====================================================================================================
# Issue 21, "no run lost, second round": one test per case of the issue (data loss, silent wrong,
# raw tracebacks, smaller). Helpers added by that issue are imported inside the tests, so that this file
# still collects (and fails case by case) on versions without them.
# =====================================================================================================
def folder_state(folder: Path) -> dict:
    """{name: bytes} of every file under `folder` (what a call must leave as it found it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_teacher(tmp_path, capsys) -> tuple[Path, list[str]]:
    """A finished 2-epoch digits teacher run, and the arguments that made it."""
    out = tmp_path / "ow1"
    args = ["train-teacher", *DIGITS, "--model", "resnet8_w8", "--epochs", "2", "--out", str(out)]
    assert cli(capsys, *args)[0] == 0
    return out, args


class Boom(Exception):
    """A failure inside training, before the first epoch ends."""


def failing_step(*args, **kwargs):
    raise Boom("the first training step failed")


# ------------------------------------------------------------------- data loss 1: --overwrite checks first
@pytest.mark.parametrize("flags", [["--device", "cuda:57"], ["--batch-size", "5000", "--epochs", "1"]],
                         ids=["device-without-gpu", "onecycle-too-short"])
def test_r2_01_overwrite_refused_by_a_later_check_deletes_nothing(flags, finished_teacher, capsys):
    out, args = finished_teacher
    before = folder_state(out)
    code, _, err = cli(capsys, *args, *flags, "--overwrite")
    assert code == 2
    one_line_error(err, flags[0] if flags[0] == "--device" else "onecycle")
    assert "replacing" not in err and "moved" not in err  # nothing was touched before the refusal
    assert folder_state(out) == before


def test_r2_01_overwrite_says_so_even_when_quiet_and_replaces_every_file(finished_teacher, capsys):
    out, args = finished_teacher
    (out / "metrics.csv").write_text("epoch\n1\n2\n3\n4\n5\n")  # the old run's metrics: must not outlive it
    code, stdout, err = cli(capsys, *args[:-4], "--epochs", "1", "--out", str(out), "--overwrite")
    assert code == 0, err
    assert "--overwrite" in err and str(out) in err and "aside" in err  # on stderr, with --quiet
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert (out / "metrics.csv").read_text().count("\n") == 2  # header + the new run's one epoch
    assert not [p for p in out.iterdir() if p.name.startswith(".simkd-replaced")]  # the old run is gone now


def test_r2_01_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, digits, monkeypatch):
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, tmp_path,
        log=None)
    before = folder_state(tmp_path)
    monkeypatch.setattr(trainer, "_train_epoch", failing_step)  # the first epoch fails
    with pytest.raises(Boom):
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test,
            replace(TINY, lr=0.01), tmp_path, overwrite=True, log=None)
    assert folder_state(tmp_path) == before


def test_r2_01_an_overwrite_killed_before_its_first_checkpoint_is_undone_by_the_next_call(tmp_path, digits, capsys):
    from simkd_lite.training.run_folder import move_aside

    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, tmp_path,
        log=None)
    before = folder_state(tmp_path)
    move_aside(tmp_path)  # what a SIGKILL right after the move leaves, plus the new run's config.json
    (tmp_path / "config.json").write_text('{"train": {"lr": 1}}')
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, tmp_path,
        resume=True, log=None)
    assert "put the previous run back" in capsys.readouterr().err
    assert folder_state(tmp_path) == before


# ------------------------------------------------------------- data loss 2: resume without last.pt
def test_r2_02_resume_of_a_run_without_last_pt_refuses_and_keeps_best_and_student(finished_student, capsys):
    out, args = finished_student
    (out / "last.pt").unlink()  # removed to save space
    before = folder_state(out)
    code, _, err = cli(capsys, *args, "--resume")
    assert code == 2
    one_line_error(err, str(out), "no last.pt", "best.pt", "student.pt", "--overwrite")
    assert folder_state(out) == before


# --------------------------------------------------------------- data loss 3: only our own temp files
@pytest.mark.parametrize("where", ["out", "dot"])
def test_r2_03_a_users_tmp_files_are_never_removed(where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "userdir3" if where == "out" else tmp_path
    out.mkdir(exist_ok=True)
    mine = [out / "thesis draft.tmp", out / "important.tmp", out / "last.pt.tmp"]
    for path in mine:
        path.write_text("my work")
    stale = out / f".last.pt.{2 ** 22 + 7}.abcdef.simkd-tmp"  # ours, its writer long gone
    stale.write_bytes(b"half a checkpoint")
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--model", "resnet8_w8", "--epochs", "1",
                       "--out", str(out) if where == "out" else ".")
    assert code == 0, err
    assert all(path.read_text() == "my work" for path in mine)
    assert not stale.exists()


# ------------------------------------------------------------------- silent wrong
def test_r2_04_resume_of_a_folder_without_a_run_says_nothing_to_resume(tmp_path, capsys):
    for out in (tmp_path / "nonexist", tmp_path):
        code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(out), "--resume")
        assert code == 2
        one_line_error(err, "nothing to resume in", str(out))
    assert not (tmp_path / "nonexist").exists() and not any(tmp_path.iterdir())


def test_r2_05_demo_refuses_train_teacher_together_with_a_teacher(tmp_path, digits_teacher, capsys):
    code, _, err = cli(capsys, "demo", *DIGITS, "--train-teacher", "--teacher", str(digits_teacher),
                       "--out", str(tmp_path / "demo"))
    assert code == 2
    one_line_error(err, "--train-teacher", "--teacher", "choose one")
    assert not (tmp_path / "demo").exists()


def official_student_files(student_run: Path, teacher: Path, folder: Path) -> tuple[Path, Path]:
    """Our SimKD run and its teacher rewritten in the official layouts (no record of teacher or data set)."""
    last = read_checkpoint(student_run / "last.pt")
    student = folder / "resnet8_w8_simkd" / "ckpt_epoch_2.pth"
    student.parent.mkdir(parents=True)
    atomic_save({"model": last["model"], "proj": last["proj"], "epoch": 2, "best_acc": last["best_acc"]}, student)
    official_teacher = folder / "resnet8x2_vanilla" / "resnet8x2_best.pth"
    official_teacher.parent.mkdir(parents=True)
    atomic_save({"model": read_checkpoint(teacher)["model"]}, official_teacher)
    return student, official_teacher


def test_r2_06_an_official_student_with_a_teacher_that_cannot_be_verified_says_so(finished_student, digits_teacher,
                                                                                   tmp_path, capsys):
    import json

    out, _ = finished_student
    student, teacher = official_student_files(out, digits_teacher, tmp_path / "official")
    code, stdout, err = cli(capsys, "eval", str(student), "--teacher", str(teacher), "--dataset", "digits")
    assert code == 0, err
    result = json.loads(stdout)
    assert "unverified" in result and "teacher" in result["unverified"] and "shapes" in result["unverified"]


def test_r2_06_an_official_digits_teacher_scored_on_fashion_mnist_is_refused(digits_teacher, fashion_raw, tmp_path,
                                                                            capsys):
    root = fashion_root_without(tmp_path, fashion_raw, "nothing")
    teacher = tmp_path / "resnet8x2_vanilla" / "resnet8x2_best.pth"
    teacher.parent.mkdir()
    atomic_save({"model": read_checkpoint(digits_teacher)["model"], "best_acc": 96.0}, teacher)
    code, stdout, err = cli(capsys, "eval", str(teacher), "--dataset", "fashion_mnist", "--data-root", str(root))
    assert code == 2, stdout
    one_line_error(err, str(teacher), "near chance", "another data set", "--dataset")


def corrupt_labels(tmp_path: Path, fashion_raw: Path, labels: bytes) -> Path:
    """A data root whose unpacked train labels are `labels` (same size), the other files linked."""
    root = fashion_root_without(tmp_path, fashion_raw, "train-labels-idx1-ubyte")
    path = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes((fashion_raw / path.name).read_bytes()[:8] + labels)
    return root


def test_r2_07_same_size_corrupted_labels_are_made_again(tmp_path, fashion_raw, capsys):
    good = (fashion_raw / "train-labels-idx1-ubyte").read_bytes()
    root = corrupt_labels(tmp_path, fashion_raw, bytes(reversed(good[8:])))  # in range, all wrong
    bundle = load_dataset("fashion_mnist", root, augment=False)
    assert bytes(bundle.train.targets.to(torch.uint8).tolist()) == good[8:]
    assert "md5" in capsys.readouterr().err


def test_r2_07_labels_out_of_range_without_a_copy_are_one_line(tmp_path, fashion_raw, capsys, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-package")
    root = corrupt_labels(tmp_path, fashion_raw, bytes([255]) * 60_000)
    path = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    code, _, err = cli(capsys, "eval", "x.pt", "--dataset", "fashion_mnist", "--data-root", str(root))
    assert code == 2
    one_line_error(err, str(path), "255", "0..9")
    code, stdout, err = cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(root))
    assert code == 2 and "ready" not in stdout
    one_line_error(err, str(path))


@pytest.mark.parametrize("temperature", [0, -1, float("nan")])
def test_r2_08_kd_temperature_must_be_positive(temperature):
    student, teacher = create_model("resnet8_w8", 10, 1), create_model("resnet8x2", 10, 1)
    for method in ("kd", "fitnet"):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            create_distiller(method, student, teacher, temperature=temperature,
                             **({"image_size": 8} if method == "fitnet" else {}))


# ------------------------------------------------------------------- raw tracebacks
def test_r2_09_an_unknown_device_is_one_line_and_writes_nothing(tmp_path, digits_teacher, capsys):
    out = tmp_path / "t"
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--device", "nope", "--out", str(out))
    assert code == 2
    one_line_error(err, "--device nope", "cpu, cuda")
    assert not out.exists()
    code, _, err = cli(capsys, "eval", str(digits_teacher), "--dataset", "digits", "--device", "nope")
    assert code == 2
    one_line_error(err, "--device nope")


def test_r2_10_a_teacher_with_nan_weights_is_named_as_such(tmp_path, digits_teacher, capsys):
    state = read_checkpoint(digits_teacher)
    state["model"] = {k: v.clone() for k, v in state["model"].items()}
    state["model"]["conv1.weight"][0, 0, 0, 0] = float("nan")
    bad = tmp_path / "nan_teacher.pt"
    atomic_save(state, bad)
    code, _, err = cli(capsys, "distill", *DIGITS, "--teacher", str(bad), "--epochs", "1", "--out", str(tmp_path / "s"))
    assert code == 2
    one_line_error(err, str(bad), "non-finite weights", "conv1.weight")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("header", [b"\x00\x00\x08\x03", b"\x00\x00\x08\x01\x00\x00\xea\x61"], ids=["magic", "count"])
def test_r2_11_a_bad_idx_header_is_made_again_or_named(header, tmp_path, fashion_raw, capsys, monkeypatch):
    root = fashion_root_without(tmp_path, fashion_raw, "train-labels-idx1-ubyte")
    path = root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    good = (fashion_raw / path.name).read_bytes()
    path.write_bytes(header + good[len(header):])
    assert len(load_dataset("fashion_mnist", root, augment=False).train) == 60_000  # made again from a copy
    assert "header" in capsys.readouterr().err and path.read_bytes() == good
    path.write_bytes(header + good[len(header):])
    (path.parent / f"{path.name}.gz").unlink()  # the copy the first load made: no source is left
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-package")
    code, _, err = cli(capsys, "data", "fetch", "fashion_mnist", "--data-root", str(root))
    assert code == 2
    one_line_error(err, str(path), "header")


def test_r2_12_bench_with_in_channels_the_teacher_does_not_read(digits_teacher, capsys):
    code, _, err = cli(capsys, "bench", "--teacher", str(digits_teacher), "--student", "resnet8_w8",
                       "--in-channels", "3", "--image-size", "8", "--num-classes", "10", "--steps", "1")
    assert code == 2
    one_line_error(err, "1-channel", "--in-channels 3", "--in-channels 1")


def _library_misuse():
    student, teacher = create_model("resnet8_w8", 10, 1), create_model("resnet8x2", 10, 1)
    return {
        "load-none": lambda: SimKDStudent.load(None),
        "student-string": lambda: create_distiller("simkd", "resnet8", teacher),
        "teacher-linear": lambda: create_distiller("kd", student, torch.nn.Linear(4, 10)),
        "factor-string": lambda: create_distiller("simkd", student, teacher, factor="2"),
        "factor-float": lambda: create_distiller("simkd", student, teacher, factor=2.5),
        "method-none": lambda: create_distiller(None, student, teacher),
    }


@pytest.mark.parametrize("case", list(_library_misuse()))
def test_r2_13_library_misuse_raises_one_sentence(case):
    with pytest.raises((TypeError, ValueError)) as error:
        _library_misuse()[case]()
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    assert error.type.__module__.startswith("simkd_lite") or error.type in (TypeError, ValueError)
    assert {"load-none": "path", "student-string": "create_model", "teacher-linear": "teacher",
            "factor-string": "factor", "factor-float": "factor", "method-none": "method"}[case] in message


# ------------------------------------------------------------------- smaller
def test_r2_14_a_call_that_fails_after_the_claim_leaves_the_folder_as_found(tmp_path, digits, monkeypatch):
    out = tmp_path / "fresh"
    monkeypatch.setattr(trainer, "_train_epoch", failing_step)  # the first epoch fails
    with pytest.raises(Boom):
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, out,
            log=None)
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Boom):
        fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, out,
            log=None)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no config.json, no .lock
    monkeypatch.undo()
    fit(create_distiller("vanilla", create_model("resnet8_w8", 10, 1)), digits.train, digits.test, TINY, out,
        log=None)  # the corrected call needs no --overwrite
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_r2_15_demo_with_another_seed_refuses_before_training_a_teacher(tmp_path, digits_teacher, capsys):
    out = tmp_path / "demo"
    code, _, err = cli(capsys, "demo", *DIGITS, "--teacher", str(digits_teacher), "--epochs", "1", "--out", str(out))
    assert code == 0, err
    started = time.perf_counter()
    code, _, err = cli(capsys, "demo", *DIGITS, "--epochs", "1", "--seed", "5", "--out", str(out))
    assert code == 2
    one_line_error(err, "train.seed", "--overwrite")
    assert not list(out.glob("teacher_digits_*")) and time.perf_counter() - started < 30


def test_r2_16_a_corrupt_teacher_output_cache_is_computed_again(tmp_path, digits_teacher, capsys):
    from simkd_lite.experiments import Experiment, get_teacher, prepare_data

    exp = Experiment.resolve("digits", runs=tmp_path / "runs")
    teacher = get_teacher(exp, digits_teacher)
    first = prepare_data(exp, teacher).teacher_cache
    [cache] = list((tmp_path / "runs" / "teacher_outputs").iterdir())
    cache.write_bytes(cache.read_bytes()[:500])  # truncated
    again = prepare_data(exp, teacher).teacher_cache
    assert torch.equal(first.features, again.features) and torch.equal(first.logits, again.logits)
    assert "computing them again" in capsys.readouterr().err
    assert read_checkpoint(cache)["features"].shape == first.features.shape  # rebuilt on disk


def test_r2_17_distill_keeps_the_teacher_cache_next_to_its_out_not_in_the_working_directory(
        tmp_path, digits_teacher, capsys, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "elsewhere" / "simkd"
    code, _, err = cli(capsys, "distill", *DIGITS, "--teacher", str(digits_teacher), "--epochs", "1", "--out", str(out))
    assert code == 0, err
    assert not any(cwd.iterdir())
    assert list((tmp_path / "elsewhere" / "teacher_outputs").glob("*.pt"))


def test_r2_18_eval_of_a_bare_state_dict_suggests_evals_own_flag(tmp_path, digits_teacher, capsys):
    bare = tmp_path / "weights.pt"
    atomic_save(read_checkpoint(digits_teacher)["model"], bare)
    code, _, err = cli(capsys, "eval", str(bare), "--dataset", "digits")
    assert code == 2
    line = one_line_error(err, "--model")
    assert "--teacher-model" not in line


def test_r2_19_a_student_file_given_as_a_teacher_is_called_a_student(finished_student, capsys):
    out, _ = finished_student
    code, _, err = cli(capsys, "bench", "--teacher", str(out / "student.pt"), "--student", "resnet8_w8",
                       "--in-channels", "1", "--image-size", "8", "--steps", "1")
    assert code == 2
    one_line_error(err, str(out / "student.pt"), "student", "not a teacher")


@pytest.mark.parametrize("name", [".lock", "metrics.csv"])
def test_r2_20_a_folder_where_the_run_writes_a_file_is_named(name, tmp_path, capsys):
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    code, _, err = cli(capsys, "train-teacher", *DIGITS, "--epochs", "1", "--out", str(out))
    assert code == 2
    one_line_error(err, str(out / name), "is a folder")
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_r2_21_simkd_student_load_reads_a_training_checkpoint(finished_student):
    out, _ = finished_student
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(SimKDStudent.load(out / "last.pt")(x), SimKDStudent.load(out / "student.pt")(x))


def test_r2_22_an_absurd_number_of_epochs_is_refused(tmp_path):
    # in a subprocess with a timeout: where it is accepted, it "trains" until killed
    result = run_cli("train-teacher", *DIGITS, "--epochs", str(10 ** 23), "--out", str(tmp_path / "t"),
                     timeout=120, check=False)
    assert result.returncode == 2
    one_line_error(result.stderr, "epochs", "at most")
    assert not (tmp_path / "t").exists()


def test_r2_23_an_empty_simkd_lite_data_means_unset(monkeypatch):
    from simkd_lite.data import default_data_root

    monkeypatch.setenv("SIMKD_LITE_DATA", "")
    assert default_data_root() != Path("")  # not the current folder: the clone's data/ (or the user cache)
    assert default_data_root().name == "data"


def test_r2_24_a_truncated_best_pt_beside_a_good_last_pt_is_remade_on_resume(finished_student, capsys):
    out, args = finished_student
    last = read_checkpoint(out / "last.pt")
    assert last["best_epoch"] == 2  # (2 epochs on digits: the last is the best)
    (out / "best.pt").write_bytes((out / "best.pt").read_bytes()[:1000])
    code, _, err = cli(capsys, *args, "--resume")
    assert code == 0, err
    assert "remade it from last.pt" in err
    assert read_checkpoint(out / "best.pt")["epoch"] == 2
