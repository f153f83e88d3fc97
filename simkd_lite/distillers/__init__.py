"""Distillation methods behind one interface, found by name through a registry."""
from simkd_lite.distillers.base import Distiller, create_distiller, get_distiller_class, list_methods, register_distiller, total_loss
from simkd_lite.distillers.teacher import FrozenTeacher, TeacherOutputs
from simkd_lite.distillers import vanilla, kd, fitnet  # noqa: F401  (registers the methods)
from simkd_lite.distillers.projector import SimKD, SimKDProjector, projector_parameter_count
from simkd_lite.distillers.student import SimKDStudent
from simkd_lite.distillers.simkd import SimKDDistiller

__all__ = [
    "Distiller", "FrozenTeacher", "SimKD", "SimKDDistiller", "SimKDProjector", "SimKDStudent", "TeacherOutputs",
    "create_distiller", "get_distiller_class", "list_methods", "projector_parameter_count",
    "register_distiller", "total_loss",
]
