"""Your own images (`--data-dir`, data/image_folder.py): computed statistics, layouts, every bad input in one
line with nothing written, and a tiny teacher -> SimKD student -> eval run through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from simkd_lite.cli import main
from simkd_lite.data import load_dataset, scan_folder, write_image_folder
from simkd_lite.errors import SimKDLiteError
from simkd_lite.experiments import Experiment


def _png(path, value, size=(8, 8), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def _two_classes(root, per_class=4, split=True):
    """Class 'black' (value 0) and class 'white' (value 255), constant 8x8 grey images."""
    for name, value in (("black", 0), ("white", 255)):
        for i in range(per_class):
            _png(root / ("train" if split else "") / name / f"{i}.png", value)
            if split:
                _png(root / "val" / name / f"{i}.png", value)
    return root


def test_statistics_are_computed_from_the_training_images(tmp_path):
    info = load_dataset("imagefolder", _two_classes(tmp_path / "images")).info
    # half the pixels are 0, half 1.0: mean 0.5, population std 0.5
    assert (info.num_classes, info.in_channels, info.image_size) == (2, 1, 8)
    assert info.mean == (0.5,) and info.std == (0.5,)
    assert info.class_names == ["black", "white"] and (info.train_size, info.test_size) == (8, 8)
    assert info.split == "train/val" and info.source == str((tmp_path / "images").resolve())


def test_colour_images_give_three_channels_and_other_sizes_are_resized(tmp_path):
    root = tmp_path / "rgb"
    for i in range(3):
        _png(root / "red" / f"{i}.png", 200, mode="RGB")
        _png(root / "blue" / f"{i}.png", 50, mode="RGB")
    _png(root / "red" / "big.png", 200, size=(16, 12), mode="RGB")  # not the most common size: resized to 8x8
    bundle = load_dataset("imagefolder", root)
    assert bundle.info.in_channels == 3 and bundle.info.image_size == 8
    assert bundle.train[0][0].shape == (3, 8, 8) and bundle.train.data.shape[1:] == (8, 8, 3)


def test_a_flat_folder_holds_out_a_fixed_stratified_fifth(tmp_path):
    root = _two_classes(tmp_path / "flat", per_class=10, split=False)
    first, second = scan_folder(root), scan_folder(root)
    assert first.test == second.test and first.split.startswith("held out")
    assert [label for _, label in first.test].count(0) == 2 and [label for _, label in first.test].count(1) == 2
    assert not {p for p, _ in first.train} & {p for p, _ in first.test}


def test_another_folder_names_other_runs(tmp_path):
    a = Experiment.resolve(data_dir=_two_classes(tmp_path / "a"), runs=tmp_path / "runs")
    b_root = _two_classes(tmp_path / "b")
    _png(b_root / "train" / "white" / "extra.png", 255)
    b = Experiment.resolve(data_dir=b_root, runs=tmp_path / "runs")
    assert a.dataset == b.dataset == "imagefolder"
    assert a.run_name("simkd", {}, "t") != b.run_name("simkd", {}, "t")
    assert a.teacher_run_name("resnet8", a.teacher_train) != b.teacher_run_name("resnet8", b.teacher_train)
    named = Experiment.resolve("digits")
    assert named.data_identity() == {}  # the named data sets keep their run names


def _broken(kind, root):
    if kind == "missing":
        return root / "nowhere"
    _two_classes(root)
    if kind == "empty class":
        (root / "train" / "grey").mkdir()
        (root / "val" / "grey").mkdir()
    elif kind == "not an image":
        (root / "train" / "white" / "notes.txt").write_text("hello")
    elif kind == "unreadable":
        (root / "train" / "black" / "broken.png").write_bytes(b"not a png at all")
    elif kind == "one class":
        import shutil

        shutil.rmtree(root / "train" / "white")
        shutil.rmtree(root / "val" / "white")
    elif kind == "different classes":
        (root / "val" / "white").rename(root / "val" / "snow")
    return root


EXPECTED = {"missing": "no such folder", "empty class": "grey holds no images", "not an image": "notes.txt is not an image",
            "unreadable": "broken.png cannot be read as an image", "one class": "at least 2",
            "different classes": "only in train/: white; only in val/: snow"}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_bad_input_is_one_line_and_nothing_is_written(kind, tmp_path, capsys):
    root = _broken(kind, tmp_path / "images")
    out = tmp_path / "runs" / "teacher"
    code = main(["train-teacher", "--data-dir", str(root), "--model", "resnet8", "--epochs", "1", "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert EXPECTED[kind] in err, err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SimKDLiteError, match=EXPECTED[kind].split(":")[0]):  # the API says the same
        load_dataset("imagefolder", root)


def test_data_dir_and_another_dataset_contradict(tmp_path, capsys):
    code = main(["distill", "--data-dir", str(_two_classes(tmp_path / "i")), "--dataset", "digits",
                 "--out", str(tmp_path / "runs" / "x")])
    assert code == 2 and "give one of them" in capsys.readouterr().err


def test_own_images_teacher_student_eval_and_class_check(tmp_path, capsys):
    """train-teacher -> distill (SimKD) -> eval on a digits folder; a teacher of other classes is refused."""
    images = write_image_folder(tmp_path / "digits", "digits", per_class=40, test_per_class=15)
    runs = tmp_path / "runs"
    assert main(["train-teacher", "--data-dir", str(images), "--model", "resnet8", "--epochs", "12", "--out",
                 str(runs / "t"), "--quiet", "--threads", "1"]) == 0
    config = json.loads((runs / "t" / "config.json").read_text())
    assert "imagefolder" in json.dumps(config) and str(images.resolve()) in json.dumps(config)
    assert main(["distill", "--method", "simkd", "--data-dir", str(images), "--teacher", str(runs / "t" / "best.pt"),
                 "--epochs", "8", "--out", str(runs / "s"), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(runs / "s" / "student.pt"), "--data-dir", str(images)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] > 30.0, result  # 10 classes: chance is 10%

    renamed = write_image_folder(tmp_path / "other", "digits", per_class=5, test_per_class=2)
    (renamed / "train" / "9").rename(renamed / "train" / "nine")
    (renamed / "val" / "9").rename(renamed / "val" / "nine")
    code = main(["distill", "--data-dir", str(renamed), "--teacher", str(runs / "t" / "best.pt"), "--out",
                 str(runs / "refused"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "only the data: nine; only the teacher: 9" in err and "--fit-teacher-head" in err, err
    assert not (runs / "refused").exists()
