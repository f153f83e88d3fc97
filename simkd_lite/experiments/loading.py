"""What a checkpoint is, and loading it for the role asked: a teacher to distil from, or a model to score.

Files this package writes say what they are (`kind`, `method`, `model_name`, `dataset`):

    train-teacher  OUT/last.pt, OUT/best.pt   kind "teacher"
    distill        OUT/last.pt, OUT/best.pt   kind "student", method vanilla / kd / fitnet / simkd
                                              (SimKD adds `proj` + `simkd`: projector, teacher head, sizes)
                   OUT/student.pt (SimKD)     a deployable SimKDStudent (format "simkd_lite.SimKDStudent/1")

Official files carry no such record: `{'model', ...}` is read as a teacher (or a plain student), and
`{'model', 'proj', ...}` is an official SimKD student, which predicts through its teacher's head and
so needs the teacher file too (`SimKDStudent.from_official`). Using a file in the wrong role, or on
another data set than it was trained on, is refused with a message that says what to pass instead
(the official issue #14 trap: a SimKD student scored through its own, never trained, classifier).
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping

from torch import nn

from simkd_lite.checkpoints import (is_weights_name, load_model, load_torchvision_weights, model_name_from_path,
                                    read_checkpoint)
from simkd_lite.data.core import DatasetInfo
from simkd_lite.models import list_namespaces
from simkd_lite.distillers.checks import check_finite_weights
from simkd_lite.distillers.student import FILE_FORMAT, SimKDStudent
from simkd_lite.distillers import get_distiller_class, list_methods


def identify(checkpoint: Mapping) -> dict:
    """{'kind': 'teacher' | 'student' | None, 'method', 'deployable', 'official_simkd', 'dataset'}.

    `kind` None: an official (or older) file that does not say; read as a model of its own.
    """
    deployable = checkpoint.get("format") == FILE_FORMAT
    method = checkpoint.get("method")
    kind = checkpoint.get("kind")
    if kind is None and (deployable or method not in (None, "vanilla")):
        kind = "student"  # files written before `kind` existed: any distillation method makes a student
    ours = "model_name" in checkpoint or method is not None or deployable
    return {"kind": kind, "method": SimKDStudent.method if deployable else method, "deployable": deployable,
            "official_simkd": "proj" in checkpoint and not ours, "dataset": dataset_name(checkpoint.get("dataset"))}


def dataset_name(record) -> str | None:
    """The data set name inside a checkpoint's `dataset` record (a DatasetInfo dict or a name)."""
    if isinstance(record, Mapping):
        record = record.get("name")
    return _normalise(record) if isinstance(record, str) else None


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_")


def check_dataset(recorded: str | None, dataset: str | None, path, role: str) -> None:
    """Refuse a checkpoint trained on another data set than `dataset` (files without a record, or no
    `dataset` to check against, pass)."""
    if recorded is not None and dataset is not None and recorded != _normalise(dataset):
        raise ValueError(f"{path} was trained on {recorded}, but this run uses {dataset}: a {role} only makes "
                         f"sense on its own data set. Pass --dataset {recorded}, or a {role} trained on {dataset}.")


def check_fits(model: nn.Module, info: DatasetInfo, path, role: str) -> None:
    """The model's classes and input channels must be the data set's (official files record no data set)."""
    classes, channels = getattr(model, "num_classes", None), getattr(model, "in_channels", None)
    if (classes, channels) != (info.num_classes, info.in_channels):
        raise ValueError(f"The {role} {path} ({classes} classes, {channels} input channels) does not fit "
                         f"{info.name} ({info.num_classes} classes, {info.in_channels} channels).")


def load_teacher_network(path: str | os.PathLike, dataset: str | None, teacher_model: str | None = None, *,
                         trust: bool = False) -> nn.Module:
    """A teacher network from a teacher checkpoint (ours or official); students of any kind are refused.

    `dataset` None: no data set to check the file's record against (e.g. `bench`). `path` may also name
    torchvision weights in the torch hub cache (`torchvision/resnet18.IMAGENET1K_V1`; never downloaded):
    the network's `source_file` is then the cached file.
    """
    if is_weights_name(path):
        model, model.source_file = load_torchvision_weights(str(path))
        check_finite_weights(model, f"the teacher {path}")
        return model
    if str(path).partition("/")[0] in list_namespaces() and not Path(path).exists():
        raise ValueError(f"{path} names an architecture, not weights: pass a file (--teacher FILE --teacher-model "
                         f"{path}) or torchvision weights from the torch hub cache, e.g. {str(path).split(':')[0]}.DEFAULT.")
    checkpoint = read_checkpoint(path, trust=trust)
    refuse_if_student(checkpoint, path)
    check_dataset(identify(checkpoint)["dataset"], dataset, path, "teacher")
    name = teacher_model or checkpoint.get("model_name") or model_name_from_path(path)
    model, _ = load_model(checkpoint, name, name_flag="--teacher-model")
    check_finite_weights(model, f"the teacher {path}")
    recorded = checkpoint.get("dataset")
    model.class_names = recorded.get("class_names") if isinstance(recorded, Mapping) else None  # checked by prepare_data
    return model


def refuse_if_student(checkpoint: Mapping, path) -> None:
    """A checkpoint given as a teacher must be one: students of every kind are named as such."""
    what = identify(checkpoint)
    if what["deployable"]:
        raise ValueError(f"{path} is a deployable SimKD student (encoder + projector + teacher head), not a teacher. "
                         f"Pass the teacher it was distilled from ({checkpoint.get('teacher_model') or 'its teacher'} "
                         "checkpoint), e.g. the teacher run's best.pt.")
    if what["official_simkd"]:
        raise ValueError(f"{path} is an official SimKD student checkpoint (it has a 'proj' entry), not a teacher. "
                         "Pass the teacher's checkpoint (e.g. save/teachers/models/<model>_vanilla/<model>_best.pth).")
    if what["kind"] == "student":
        raise ValueError(f"{path} is a {what['method']} student checkpoint, not a teacher. Pass a teacher: a "
                         "`simkd-lite train-teacher` run's best.pt, the shipped one (no --teacher), or an official "
                         "teacher .pth.")


def load_predictor(path: str | os.PathLike, info: DatasetInfo, model_name: str | None = None, *,
                   teacher: str | os.PathLike | None = None, teacher_model: str | None = None,
                   trust: bool = False) -> tuple[nn.Module, dict]:
    """The model whose predictions a checkpoint stands for, ready to score on `info`'s test set.

    - a deployable SimKDStudent file, or our SimKD last.pt / best.pt: encoder -> projector -> the
      teacher's head (the number the run reported), never the student's unused classifier;
    - an official SimKD student (`proj`, no record): needs `teacher` (its teacher's checkpoint);
    - anything else (teachers, vanilla / KD / FitNet students, official models): the network itself.
    Returns (model in eval mode, {'kind', 'method', 'model'}).
    """
    checkpoint = read_checkpoint(path, trust=trust)
    what = identify(checkpoint)
    check_dataset(what["dataset"], info.name, path, "model")
    if what["deployable"]:
        model = SimKDStudent.load(path)
        described = {"model": "SimKDStudent", "student_model": model.student.model_name}
    elif (predictor := _method_predictor(what["method"], checkpoint)) is not None:  # the method says how
        model = predictor
        described = {"model": type(model).__name__, "student_model": model.student.model_name}
    elif what["official_simkd"]:
        if teacher is None:
            raise ValueError(f"{path} is an official SimKD student: it predicts through its teacher's classifier, "
                             "which the file does not hold. Pass the teacher too: simkd-lite eval STUDENT.pth "
                             "--teacher TEACHER.pth --model STUDENT_ARCH (Python: SimKDStudent.from_official).")
        student_model = model_name or model_name_from_path(path)
        if student_model is None:
            raise ValueError(f"Cannot tell the student architecture of {path}: pass --model (e.g. resnet8x4).")
        teacher_net = load_teacher_network(teacher, info.name, teacher_model, trust=trust)
        model = SimKDStudent.from_official(checkpoint, {"model": teacher_net.state_dict()}, student_model,
                                           teacher_net.model_name, image_size=info.image_size)
        described = {"model": "SimKDStudent", "student_model": student_model, "kind": "student",
                     "method": SimKDStudent.method,
                     "unverified": f"{path} records neither its teacher nor its data set (official files carry no "
                                   f"such record): that {teacher} is the teacher it was distilled from was checked "
                                   "only by shapes; another teacher of the same architecture gives a wrong number"}
    else:
        model, _ = load_model(checkpoint, model_name or checkpoint.get("model_name") or model_name_from_path(path))
        described = {"model": model.model_name}
        if what["dataset"] is None:
            described["unverified"] = (f"{path} records no data set (an official or older file): only its classes "
                                       "and input channels were checked against " + info.name)
    check_finite_weights(model, f"the model in {path}")
    if isinstance(checkpoint.get("best_acc"), (int, float)) and what["dataset"] is None:
        described["recorded_best_acc"] = float(checkpoint["best_acc"])
    if not isinstance(model, SimKDStudent):
        check_fits(model, info, path, "model")
    elif model.teacher_head.out_features != info.num_classes:
        raise ValueError(f"{path} predicts {model.teacher_head.out_features} classes; {info.name} has {info.num_classes}.")
    return model.eval(), {"kind": what["kind"], "method": what["method"], **described}


def implausible(result: dict, info: DatasetInfo) -> str | None:
    """Why a score cannot be what a file recording no data set was trained for (near chance, or far
    below the best_acc it records), or None. Such a file was most likely trained on another data set
    (an official digits teacher scored on Fashion-MNIST: 14-17%, exit 0 before), which it cannot tell.
    `simkd-lite eval` refuses then; `evaluate_checkpoint` returns the sentence as the result's `warning`."""
    if "unverified" not in result:
        return None
    chance, recorded, top1 = 100.0 / info.num_classes, result.get("recorded_best_acc"), result["top1"]
    near_chance = top1 < 2 * chance
    far_below = recorded is not None and recorded - top1 > 25  # (last vs best epoch differ by a few points)
    if near_chance or far_below:
        said = (f"near chance ({chance:.0f}% for {info.num_classes} classes)" if near_chance else "")
        if recorded is not None:
            said += (", and " if said else "") + f"far below the best_acc {recorded:.2f}% the file records"
        return (f"{result['checkpoint']} scores {top1:.2f}% on {info.name}, {said}: it was most likely trained on "
                "another data set or with other inputs (the file records none, so this cannot be checked); pass the "
                "--dataset it was trained on")
    return None


def _method_predictor(method: str | None, checkpoint: dict) -> nn.Module | None:
    """The predictor a trained method builds from its checkpoint (`Distiller.predictor_from_checkpoint`), or None."""
    if method not in list_methods():  # teachers' and official files' records name no method we train
        return None
    return get_distiller_class(method).predictor_from_checkpoint(checkpoint)
