"""simkd_lite: SimKD ("Knowledge Distillation with the Reused Teacher Classifier", CVPR 2022), taught and reproduced."""
from simkd_lite.models import create_model, list_models
from simkd_lite.distillers import SimKD, SimKDProjector, SimKDStudent, create_distiller, list_methods

__version__ = "0.1.0"
__all__ = ["SimKD", "SimKDProjector", "SimKDStudent", "create_distiller", "create_model", "list_methods", "list_models", "__version__"]
