"""`simkd-lite export`: one .onnx / .pt2 file that predicts what the checkpoint predicts, loads without
simkd_lite, carries its metadata, is written atomically, and bad input gets one line."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import simkd_lite
from conftest import run_cli
from simkd_lite import SimKDProjector, SimKDStudent, create_model
from simkd_lite.cli import main
from simkd_lite.data import load_dataset
from simkd_lite.errors import SimKDLiteError
from simkd_lite.experiments import export_student, read_export_metadata
from simkd_lite.experiments.export import load_deployed, onnxruntime_session

ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_teacher):
    """A SimKD run (student.pt, last.pt) and a KD run (best.pt: the student with its own head) on digits."""
    out = tmp_path_factory.mktemp("export_runs")
    for method, epochs in (("simkd", "2"), ("kd", "1")):
        run_cli("distill", "--dataset", "digits", "--method", method, "--epochs", epochs, "--teacher",
                str(digits_teacher), "--out", str(out / method), "--quiet", "--threads", "1")
    return out


@pytest.fixture(scope="module")
def digits_test():
    bundle = load_dataset("digits", augment=False)
    images = torch.stack([x for x, _ in bundle.test])
    return images, bundle.info


def _ort_logits(path, images: torch.Tensor) -> np.ndarray:
    session = onnxruntime_session(path, threads=1)
    return session.run(["logits"], {"input": images.numpy()})[0]


@pytest.mark.parametrize("checkpoint", ["simkd/student.pt", "simkd/last.pt", "kd/best.pt"])
def test_onnxruntime_matches_pytorch_on_the_whole_test_set(runs, digits_test, tmp_path, checkpoint):
    images, _ = digits_test
    path = export_student(runs / checkpoint, "onnx", tmp_path / "student.onnx")
    model, _ = load_deployed(runs / checkpoint)
    with torch.inference_mode():
        expected = model(images).numpy()
    got = _ort_logits(path, images)  # all 360 test images in one batch: the batch dimension is dynamic
    difference = float(np.abs(got - expected).max())
    print(f"{checkpoint}: onnxruntime vs PyTorch on {len(images)} digits test images: max abs diff {difference:.2e}, "
          f"top-1 identical: {bool((got.argmax(1) == expected.argmax(1)).all())}")
    assert got.shape == expected.shape == (len(images), 10)
    assert difference < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert _ort_logits(path, images[:1]).shape == (1, 10)  # batch 1 as well


def test_simkd_export_is_encoder_projector_and_teacher_head(runs, tmp_path):
    """The exported SimKD network predicts through the teacher head, not the student's unused classifier."""
    model, record = load_deployed(runs / "simkd" / "student.pt")
    assert isinstance(model, SimKDStudent) and record["method"] == "simkd"
    x = torch.randn(4, 1, 8, 8)
    got = _ort_logits(export_student(runs / "simkd" / "student.pt", out=tmp_path / "s.onnx"), x)
    with torch.inference_mode():
        own_head = model.student(x).numpy()
        through_teacher_head = model(x).numpy()
    assert np.abs(got - through_teacher_head).max() < 1e-4
    assert np.abs(got - own_head).max() > 1e-2


def test_pt2_round_trip_with_dynamic_batch(runs, digits_test, tmp_path):
    images, _ = digits_test
    path = export_student(runs / "simkd" / "student.pt", "pt2", tmp_path / "student.pt2")
    program = torch.export.load(path).module()
    model, _ = load_deployed(runs / "simkd" / "student.pt")
    with torch.inference_mode():
        expected = model(images)
    for batch in (images, images[:1], images[:7]):
        with torch.inference_mode():
            assert torch.allclose(program(batch), expected[: len(batch)], atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_metadata_is_in_the_file(runs, digits_test, tmp_path, fmt):
    _, info = digits_test
    path = export_student(runs / "simkd" / "student.pt", fmt, tmp_path / f"m.{fmt}")
    meta = read_export_metadata(path)
    assert meta["class_names"] == list(info.class_names) and meta["num_classes"] == 10
    assert (meta["in_channels"], meta["image_size"], meta["input_shape"]) == (1, 8, ["N", 1, 8, 8])
    assert meta["mean"] == pytest.approx(list(info.mean)) and meta["std"] == pytest.approx(list(info.std))
    assert (meta["method"], meta["dataset"], meta["simkd_lite_version"]) == ("simkd", "digits", simkd_lite.__version__)
    assert meta["teacher_model"] == "resnet8x2" and meta["student_model"] == "resnet8_w8"
    assert "NORMALISED" in meta["input"] and meta["source"] == "student.pt"
    if fmt == "onnx":  # what a user without simkd_lite reads: onnxruntime's own metadata map
        custom = onnxruntime_session(path).get_modelmeta().custom_metadata_map
        assert json.loads(custom["mean"]) == meta["mean"] and custom["method"] == "simkd"


def test_kd_student_metadata_names_its_method(runs, tmp_path):
    meta = read_export_metadata(export_student(runs / "kd" / "best.pt", out=tmp_path / "kd.onnx"))
    assert meta["method"] == "kd" and meta["teacher_model"] == "resnet8x2"


BLOCKED = """
import json, sys
sys.modules["simkd_lite"] = None  # any `import simkd_lite` (also inside an unpickler) now fails
import numpy as np
"""


def _run_without_simkd_lite(code: str, tmp_path) -> dict:
    """Run `code` with -I (no PYTHONPATH, no cwd on sys.path) and simkd_lite blocked; it prints JSON."""
    script = tmp_path / "standalone.py"
    script.write_text(BLOCKED + textwrap.dedent(code))
    result = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_the_file_loads_without_simkd_lite(runs, digits_test, tmp_path, fmt):
    images, _ = digits_test
    path = export_student(runs / "simkd" / "student.pt", fmt, tmp_path / f"s.{fmt}")
    np.save(tmp_path / "x.npy", images[:16].numpy())
    if fmt == "onnx":
        code = f"""
        import onnxruntime as ort
        session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        y = session.run(None, {{"input": np.load({str(tmp_path / 'x.npy')!r})}})[0]
        meta = session.get_modelmeta().custom_metadata_map
        """
    else:
        code = f"""
        import torch
        extra = {{"simkd_lite.json": ""}}
        program = torch.export.load({str(path)!r}, extra_files=extra)
        y = program.module()(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()
        meta = json.loads(extra["simkd_lite.json"])
        """
    code = textwrap.dedent(code) + textwrap.dedent("""
    loaded = [m for m in sys.modules if m.startswith("simkd_lite") and sys.modules[m] is not None]
    print(json.dumps({"logits": y.tolist(), "method": meta["method"], "loaded": loaded}))
    """)
    out = _run_without_simkd_lite(code, tmp_path)
    model, _ = load_deployed(runs / "simkd" / "student.pt")
    with torch.inference_mode():
        expected = model(images[:16]).numpy()
    assert out["loaded"] == [] and out["method"] == "simkd"
    assert np.abs(np.array(out["logits"]) - expected).max() < 1e-4


def test_the_blocking_trick_does_block(tmp_path):
    """The check above can fail: with the same set-up, `import simkd_lite` raises."""
    script = tmp_path / "check.py"
    script.write_text(BLOCKED + "import simkd_lite\n")
    result = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "simkd_lite" in result.stderr


def test_torchvision_student_exports(tmp_path):
    """A student from a torchvision name (its feature map read by torchvision's feature extractor) exports."""
    torch.manual_seed(0)
    student, teacher = create_model("torchvision/resnet18", 10, 1), create_model("resnet8x2", 10, 1)
    projector = SimKDProjector(student.feature_channels, teacher.feature_channels)
    dataset = {"name": "tiny", "image_size": 16, "mean": [0.5], "std": [0.25], "class_names": list("abcdefghij")}
    SimKDStudent(student, projector, teacher.get_classifier(), None, "resnet8x2", dataset).save(tmp_path / "tv.pt")
    model, _ = load_deployed(tmp_path / "tv.pt")
    x = torch.randn(3, 1, 16, 16)
    with torch.inference_mode():
        expected = model(x)
    onnx_path, pt2_path = export_student(tmp_path / "tv.pt"), export_student(tmp_path / "tv.pt", "pt2")
    assert np.abs(_ort_logits(onnx_path, x) - expected.numpy()).max() < 1e-4
    with torch.inference_mode():
        assert torch.allclose(torch.export.load(pt2_path).module()(x), expected, atol=1e-5)
    assert read_export_metadata(onnx_path)["student_model"] == "torchvision/resnet18"


# ------------------------------------------------------------------------------------ atomic writes
def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".simkd-tmp"))


def test_a_failed_export_writes_nothing_and_keeps_an_earlier_file(runs, tmp_path, monkeypatch):
    out = tmp_path / "student.onnx"
    out.write_bytes(b"earlier export")

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(SimKDLiteError, match="torch.onnx.export failed.*exporter exploded"):
        export_student(runs / "simkd" / "student.pt", out=out)
    assert out.read_bytes() == b"earlier export" and _leftovers(tmp_path) == []
    with pytest.raises(SimKDLiteError):
        export_student(runs / "simkd" / "student.pt", out=tmp_path / "new.onnx")
    assert not (tmp_path / "new.onnx").exists()


def test_a_failed_write_leaves_no_partial_file(runs, tmp_path, monkeypatch):
    import simkd_lite.tempfiles as tempfiles

    out = tmp_path / "student.pt2"
    out.write_bytes(b"earlier export")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(tempfiles.os, "replace", no_rename)
    with pytest.raises(SimKDLiteError, match="student.pt2"):
        export_student(runs / "simkd" / "student.pt", "pt2", out)
    assert out.read_bytes() == b"earlier export" and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------ bad input
def _one_line_error(argv, capsys) -> str:
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input_gets_one_line_and_writes_nothing(runs, digits_teacher, tmp_path, capsys):
    student = str(runs / "simkd" / "student.pt")
    assert "No checkpoint at" in _one_line_error([str(tmp_path / "missing.pt")], capsys)
    assert "is a teacher checkpoint" in _one_line_error([str(digits_teacher)], capsys)
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a readable PyTorch checkpoint" in _one_line_error([str(tmp_path / "notes.txt")], capsys)
    torch.save({"model": create_model("resnet8", 10, 1).state_dict(), "proj": {}}, tmp_path / "official.pth")
    assert "official SimKD student" in _one_line_error([str(tmp_path / "official.pth")], capsys)
    assert "--opset 99 is outside" in _one_line_error([student, "--opset", "99", "--out", str(tmp_path / "a.onnx")], capsys)
    assert "onnx only" in _one_line_error([student, "--format", "pt2", "--opset", "17"], capsys)
    assert "is a folder" in _one_line_error([student, "--out", str(tmp_path)], capsys)
    assert "is the checkpoint itself" in _one_line_error([student, "--out", student], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "official.pth"]
    with pytest.raises(SystemExit):  # argparse's own one line
        main(["export", student, "--format", "tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown export format 'tflite'"):
        export_student(student, "tflite")


def test_onnx_missing_names_the_extra(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    err = _one_line_error([str(runs / "simkd" / "student.pt"), "--out", str(tmp_path / "s.onnx")], capsys)
    assert "pip install 'simkd-lite[export]'" in err and list(tmp_path.iterdir()) == []


def test_cli_export_writes_the_file(runs, tmp_path):
    out = tmp_path / "student.pt2"
    result = run_cli("export", str(runs / "simkd" / "student.pt"), "--format", "pt2", "--out", str(out))
    assert f"wrote {out}" in result.stdout and read_export_metadata(out)["method"] == "simkd"
