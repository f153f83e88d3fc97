"""Experiments: the public API that turns intent into runs, and the jobs the CLI runs with it.

    runs.py      Experiment (the frozen recipe), get_teacher, prepare_data, train_student, compare, evaluate
"""
from simkd_lite.experiments.runs import (Experiment, PreparedData, StudentRun, compare, evaluate, get_teacher,
                                         prepare_data, test_logits, train_student)

__all__ = ["Experiment", "PreparedData", "StudentRun", "compare", "evaluate", "get_teacher", "prepare_data",
           "test_logits", "train_student"]
