"""Experiments: the public API that turns intent into runs, and the jobs the CLI runs with it.

    runs.py          the public API: Experiment (the frozen recipe), train_teacher, get_teacher, prepare_data,
                     train_student, compare, evaluate
    profiles.py      every recipe in one table (`quick`, `paper`)
    jobs.py          the jobs runs.py calls: train a teacher, distil one student or several together, evaluate
    loading.py       what a checkpoint is, and loading it for the role asked (teacher / model to score)
    pretrained.py    the teachers shipped in the package, with their provenance
    demo.py          `simkd-lite demo`: teacher vs vanilla, KD, FitNet, SimKD, with figures
    reproduce.py     `simkd-lite reproduce`: every method x seed, resumable, the table beside the paper's
    paper_table.py   the paper's published numbers (typed in once)
    bench.py, bench_graphed.py   `simkd-lite bench`: images/s against the official-style loop
"""
from simkd_lite.experiments.runs import (Experiment, PreparedData, StudentRun, compare, evaluate, get_teacher,
                                         prepare_data, test_logits, train_student, train_teacher)
from simkd_lite.experiments.reproduce import Plan, Reproduction, reproduce

__all__ = ["Experiment", "PreparedData", "StudentRun", "compare", "evaluate", "get_teacher", "prepare_data",
           "test_logits", "train_student", "train_teacher", "reproduce", "Plan", "Reproduction"]
