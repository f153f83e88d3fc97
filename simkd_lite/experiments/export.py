"""Export a deployed student as ONE file that loads without simkd_lite: ONNX (onnxruntime) or torch.export (.pt2).

    export_student("runs/simkd/student.pt")                       # -> runs/simkd/student.onnx
    export_student("runs/kd/best.pt", format="pt2", out="kd.pt2")
    simkd-lite export runs/simkd/student.pt --format onnx [--out FILE] [--opset N]

What the file holds is exactly the network `simkd-lite eval` scores: for SimKD the student encoder ->
projector -> global pool -> the teacher's frozen classifier (a `SimKDStudent`; from `student.pt` or a
SimKD run's last.pt / best.pt), for vanilla / KD / FitNet students their own network and head.

The contract of the exported file (also written into it, see `export_metadata`):
- input  `input`:  the NORMALISED image, float32 (N, C, H, W), x = (pixel / 255 - mean) / std per channel,
  with H = W = `image_size`; N (the batch) is dynamic, C, H and W are fixed;
- output `logits`: float32 (N, num_classes); `argmax` indexes `class_names`.
ONNX: `metadata_props` (strings; lists and numbers as JSON), read e.g. with onnxruntime's
`session.get_modelmeta().custom_metadata_map`. .pt2: the same record as JSON in the extra file
`simkd_lite.json` (`torch.export.load(path, extra_files={"simkd_lite.json": ""})`).

ONNX is written by torch's TorchScript-based exporter (`dynamo=False`): torch's newer exporter needs the
`onnxscript` package, and for these plain conv nets the two give the same graph. Files are written
atomically (`simkd_lite.tempfiles`): a failed export leaves no file, and an earlier one intact.
"""
from __future__ import annotations

import inspect
import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from simkd_lite.checkpoints import load_model, read_checkpoint
from simkd_lite.errors import SimKDLiteError
from simkd_lite.experiments.loading import _method_predictor, identify
from simkd_lite.distillers.student import SimKDStudent
from simkd_lite.tempfiles import write_atomically

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
METADATA_FILE = "simkd_lite.json"  # the .pt2 extra file holding the record
EXPORT_FORMAT = "simkd_lite.export/1"
DEFAULT_OPSET = 17  # supported by every onnxruntime since 1.11
INPUT_NOTE = ("float32 (N, C, H, W), the NORMALISED image: (pixel / 255 - mean) / std per channel; "
              "N is dynamic, C = in_channels, H = W = image_size")
OUTPUT_NOTE = "float32 (N, num_classes) logits; argmax indexes class_names"
EXPORT_HINT = "pip install 'simkd-lite[export]'"
# torch >= 2.5 has both exporters (>= 2.9 defaults to the dynamo one, which needs onnxscript); older torch only this one
_TORCHSCRIPT = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
_JSON_KEYS = ("num_classes", "in_channels", "image_size", "input_shape", "mean", "std", "class_names")


def export_student(student_path: str | os.PathLike, format: str = "onnx", out: str | os.PathLike | None = None, *,
                   opset: int | None = None, image_size: int | None = None, trust: bool = False) -> Path:
    """Write the deployed student in `student_path` as one `.onnx` or `.pt2` file; returns its path.

    out: default `student_path` with the format's suffix (runs/simkd/student.pt -> runs/simkd/student.onnx).
    opset: ONNX opset (default 17). image_size: only for a file that records no data set (H = W).
    Every input is checked before anything is written; bad input raises a one-line error.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}: choose onnx or pt2.")
    if opset is not None and format != "onnx":
        raise ValueError("--opset applies to --format onnx only (a .pt2 file has no opset).")
    low, high = opset_range()
    if opset is not None and not low <= opset <= high:
        raise ValueError(f"--opset {opset} is outside what torch's ONNX exporter writes ({low} to {high}).")
    if format == "onnx":
        require_onnx()
    student_path = Path(student_path)
    out = Path(out) if out is not None else student_path.with_suffix(FORMATS[format])
    if out.resolve() == student_path.resolve():
        raise ValueError(f"--out {out} is the checkpoint itself: name another file, e.g. {out.with_suffix(FORMATS[format])}.")
    if out.is_dir():
        raise SimKDLiteError(f"--out {out} is a folder, not a file: name the file, e.g. {out / ('student' + FORMATS[format])}.")
    model, record = load_deployed(student_path, trust=trust)
    metadata = export_metadata(model, record, student_path, image_size)
    example = torch.zeros(2, metadata["in_channels"], metadata["image_size"], metadata["image_size"])
    data = onnx_bytes(model, example, opset, metadata) if format == "onnx" else pt2_bytes(model, example, metadata)
    return write_atomically(data, out)


def opset_range() -> tuple[int, int]:
    """The ONNX opsets torch's TorchScript-based exporter writes (7 to 20 in torch 2.14)."""
    try:
        from torch.onnx import _constants as known
    except ImportError:  # a private module: if it moves, trust torch to refuse what it cannot write
        return 1, 10**6
    return known.ONNX_MIN_OPSET, getattr(known, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", known.ONNX_MAX_OPSET)


def require_onnx() -> None:
    """A one-line error naming the extra when onnx is missing (onnxruntime is only needed to run the file)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise SimKDLiteError(f"--format onnx needs the onnx package: {EXPORT_HINT} (or use --format pt2, "
                             "which needs only torch).") from None


# ---------------------------------------------------------------------------------- what is exported
def load_deployed(path: str | os.PathLike, *, trust: bool = False) -> tuple[nn.Module, dict]:
    """(the network a student checkpoint predicts with, in eval mode; the checkpoint's record).

    The same choice as `simkd-lite eval`: a method's own predictor (SimKD: encoder + projector + teacher
    head), else the saved network. Teachers and official SimKD students (no teacher head) are refused.
    """
    checkpoint = read_checkpoint(path, trust=trust)
    what = identify(checkpoint)
    if what["deployable"]:
        model = SimKDStudent.load(path)
    elif what["official_simkd"]:
        raise ValueError(f"{path} is an official SimKD student: it predicts through its teacher's classifier, which "
                         "the file does not hold. Build it with SimKDStudent.from_official(student, teacher, "
                         "student_model), .save() it, and export that file.")
    elif what["kind"] != "student":
        said = "a teacher checkpoint" if what["kind"] == "teacher" else "not a student checkpoint of simkd_lite"
        raise ValueError(f"{path} is {said}: export takes a student, e.g. a SimKD run's student.pt or a "
                         "`simkd-lite distill` run's best.pt.")
    else:
        model = _method_predictor(what["method"], checkpoint)
        if model is None:
            model, _ = load_model(checkpoint, checkpoint.get("model_name"))
    record = {"method": what["method"], "dataset": checkpoint.get("dataset"),
              "student_model": checkpoint.get("student_model") or checkpoint.get("model_name"),
              "teacher_model": checkpoint.get("teacher_model") or getattr(model, "teacher_model", None)}
    return model.eval().requires_grad_(False), record


def export_metadata(model: nn.Module, record: dict, source: str | os.PathLike, image_size: int | None = None) -> dict:
    """The record written into the exported file: classes, input size and normalisation, method, models, version."""
    dataset = record.get("dataset") if isinstance(record.get("dataset"), dict) else {}
    size = image_size or dataset.get("image_size")
    if not size:
        raise ValueError(f"{source} records no data set, so the input size is unknown: pass --image-size.")
    student = getattr(model, "student", model)
    channels, classes = student.in_channels, _num_classes(model)
    names = dataset.get("class_names") or [str(i) for i in range(classes)]
    meta = {"format": EXPORT_FORMAT, "simkd_lite_version": package_version(), "method": record.get("method") or "vanilla",
            "student_model": record.get("student_model") or getattr(student, "model_name", ""),
            "teacher_model": record.get("teacher_model") or "", "dataset": dataset.get("name") or "",
            "num_classes": classes, "class_names": list(names), "in_channels": channels, "image_size": int(size),
            "input_shape": ["N", channels, int(size), int(size)], "input": INPUT_NOTE, "output": OUTPUT_NOTE,
            "mean": list(dataset.get("mean") or []), "std": list(dataset.get("std") or []),
            "source": Path(source).name}
    return meta


def package_version() -> str:
    """simkd_lite's installed version (read from the package metadata: modules here never import the top package)."""
    from importlib import metadata

    try:
        return metadata.version("simkd_lite")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _num_classes(model: nn.Module) -> int:
    head = getattr(model, "teacher_head", None)
    return head.out_features if head is not None else model.num_classes


# ---------------------------------------------------------------------------------- the two formats
def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int | None = None, metadata: dict | None = None) -> bytes:
    """The ONNX model (batch dimension dynamic, `metadata` in metadata_props) as bytes, nothing written."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # H and W are fixed by design, so the tracer's "shape check becomes a constant" is what we want;
        # the TorchScript exporter's deprecation note is answered in the module docstring.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. about keep_initializers_as_inputs at old opsets
        try:
            torch.onnx.export(model, (example,), buffer, input_names=["input"], output_names=["logits"],
                              opset_version=opset or DEFAULT_OPSET,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **_TORCHSCRIPT)
        except Exception as err:  # an opset too old or new, an op the exporter lacks: one line, not torch's page
            raise SimKDLiteError(f"torch.onnx.export failed (opset {opset or DEFAULT_OPSET}): "
                                 f"{_first_line(err)}") from err
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.doc_string = f"simkd_lite deployed student; input: {INPUT_NOTE}; output: {OUTPUT_NOTE}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def pt2_bytes(model: nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    """The `torch.export` program (batch dimension dynamic, `metadata` as the extra file) as bytes."""
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as err:
        raise SimKDLiteError(f"torch.export.export failed: {_first_line(err)}") from err
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines or [type(err).__name__])[0][:300]


# ---------------------------------------------------------------------------------- reading back
def read_export_metadata(path: str | os.PathLike) -> dict:
    """The record inside an exported `.onnx` (metadata_props) or `.pt2` (extra file) file, decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No exported model at {path}.")
    if path.suffix == ".pt2":
        extra = {METADATA_FILE: ""}
        torch.export.load(path, extra_files=extra)
        return json.loads(extra[METADATA_FILE])
    require_onnx()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {k: json.loads(v) if k in _JSON_KEYS else v for k, v in props.items()}


def onnxruntime_session(model_or_path, example: torch.Tensor | None = None, threads: int | None = None):
    """An onnxruntime CPU InferenceSession of an exported file, or of `model` exported in memory
    (`example`: an input of the right shape); `threads`: intra-op threads (default: onnxruntime's)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SimKDLiteError(f"onnxruntime is not installed: {EXPORT_HINT}") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    source = (str(model_or_path) if isinstance(model_or_path, (str, os.PathLike))
              else onnx_bytes(model_or_path, example))
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
