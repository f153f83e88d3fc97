"""`--fit-teacher-head`: a teacher trained on other classes gets a new classifier for this data set, once.

    path = fit_teacher_head(teacher, exp, log=print)     # RUNS/fitted_teachers/<model>_<dataset>_<key>.pt

The teacher network stays frozen; only a new nn.Linear(num_classes) is trained on its pooled features of
the training images (`training.head_fit`), its test top-1 is printed, and the teacher with that head is
saved atomically as an ordinary teacher checkpoint (kind "teacher", `model_name`, `dataset`), so students
distil from a file like any other. The file is named by the teacher file's sha256, the data set, its
subset and seed, and the probe's recipe: the next call with the same inputs reuses it.
RGB teachers on grey images get their first conv summed over R, G, B (`models.adapt_input_channels`: exact).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from torch import nn

from simkd_lite.checkpoints import save_teacher
from simkd_lite.data import load_dataset
from simkd_lite.experiments.pretrained import sha256
from simkd_lite.models import adapt_input_channels, safe_name
from simkd_lite.training.head_fit import HeadFitConfig, linear_probe, pooled_features
from simkd_lite.training.loop import materialize, predict, top1
from simkd_lite.training.runtime import select_device


def fitted_teacher_path(exp, teacher: nn.Module, config: HeadFitConfig) -> Path:
    """RUNS/fitted_teachers/<model>_<dataset>_<12 hex>.pt: the key covers the teacher file's bytes, the data
    set, its training subset and seed, and the probe's recipe."""
    source = getattr(teacher, "source", None)
    if not source or not Path(source).is_file():
        raise ValueError("--fit-teacher-head needs a teacher loaded from a file (its sha256 names the fitted one).")
    key = json.dumps({"teacher_sha256": sha256(Path(source)), "dataset": exp.dataset, **exp.data_identity(), "subset": exp.train_subset,
                      "seed": exp.seed, "head_fit": asdict(config)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(exp.runs_root) / "fitted_teachers" / f"{safe_name(teacher.model_name)}_{exp.dataset}_{digest}.pt"


def fit_teacher_head(teacher: nn.Module, exp, config: HeadFitConfig | None = None, log=print) -> Path:
    """The fitted teacher's checkpoint for `exp`'s data set: reused when it exists, else made now (see module)."""
    config = config or HeadFitConfig(seed=exp.seed)
    say = log or (lambda message: None)
    path = fitted_teacher_path(exp, teacher, config)
    if path.is_file():
        say(f"fit-teacher-head: reusing {path}")
        return path
    bundle = load_dataset(exp.dataset, exp.data_root, train_subset=exp.train_subset, seed=exp.seed, augment=False)
    info = bundle.info
    if getattr(teacher, "in_channels", info.in_channels) != info.in_channels:
        if not hasattr(teacher, "first_conv"):
            raise ValueError(f"The teacher takes {teacher.in_channels}-channel images, {info.name} has "
                             f"{info.in_channels}: it cannot see these images.")
        adapt_input_channels(teacher, info.in_channels)
        say(f"fit-teacher-head: {teacher.model_name}'s RGB first conv summed over R, G, B for grey images (exact)")
    device = select_device(exp.device)
    x, y = materialize(bundle.train)
    say(f"fit-teacher-head: {teacher.model_name} ({teacher.num_classes} classes) -> a new {info.num_classes}-class "
        f"head on {len(x)} {info.name} training images' frozen features")
    head = linear_probe(pooled_features(teacher, x, device), y, info.num_classes, config, log=say)
    replace_classifier(teacher, head)
    test_x, test_y = materialize(bundle.test)
    accuracy = top1(predict(teacher.to(device), test_x, device), test_y)
    say(f"fit-teacher-head: test top-1 {accuracy:.2f}% ({len(test_y)} {info.name} test images) -> {path}")
    save_teacher(path, teacher.cpu(), model_name=teacher.model_name, epoch=0, best_acc=accuracy, kind="teacher",
                 dataset=asdict(info), fitted_head={"from": str(teacher.source), "recipe": asdict(config),
                                                    "test_top1": accuracy})
    return path


def replace_classifier(model: nn.Module, head: nn.Linear) -> None:
    """Put `head` where the model's classifier was (`get_classifier()`), and update `num_classes`."""
    if hasattr(model, "replace_classifier"):
        model.replace_classifier(head.out_features).load_state_dict(head.state_dict())
    else:  # a zoo model: the classifier is one attribute of some module
        old = model.get_classifier()
        name = next(n for n, m in model.named_modules() if m is old)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, head.to(old.weight.device))
        model.num_classes = head.out_features
    model.get_classifier().requires_grad_(False)
