"""Experiments: the public API that turns intent into runs (the CLI and the notebooks use only this).

    runs.py          the API: Experiment (the frozen recipe; it names run folders), train_teacher, get_teacher,
                     prepare_data, train_student, compare (one after another, or together), evaluate
    results.py       RunResult: what every training call returns (StudentRun is its earlier name)
    jobs.py          the API's plumbing: build a distiller, fit a teacher or students, score a checkpoint
    profiles.py      every recipe in one table (`quick`, `paper`)
    loading.py       what a checkpoint is, and loading it for the role asked (teacher / model to score)
    pretrained.py    the teachers shipped in the package, with their provenance
    demo.py          `simkd-lite demo`: teacher vs vanilla, KD, FitNet, SimKD, with figures
    reproduction.py  `simkd-lite reproduce`: every method x seed, resumable, the table beside the paper's
    paper_table.py   the paper's published numbers (typed in once)
    export.py        `simkd-lite export`: a student as one .onnx / .pt2 file that loads without simkd_lite
    bench.py, bench_graphed.py   `simkd-lite bench`: images/s against the official-style loop
    commands.py      what the CLI needs besides the API: data sets, devices, DDP start, wording
"""
import importlib

# The API, loaded on first use: `simkd_lite.experiments.commands` (what `simkd-lite --help` imports) stays
# free of torch.
_API = {"RunResult": "results", "StudentRun": "results", "Experiment": "runs", "PreparedData": "runs",
        "compare": "runs", "evaluate": "runs", "evaluate_checkpoint": "jobs", "get_teacher": "runs",
        "prepare_data": "runs", "test_logits": "runs", "train_student": "runs", "train_teacher": "runs",
        "export_student": "export", "read_export_metadata": "export",
        "reproduce": "reproduction", "Plan": "reproduction", "Reproduction": "reproduction"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'simkd_lite.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"simkd_lite.experiments.{_API[name]}"), name)
