"""The model zoo: CIFAR architectures of the official SimKD code, plus small CPU models.

    from simkd_lite.models import create_model
    model = create_model("resnet8x4", num_classes=100)
    feats = model.forward_features(x)      # x: (N, 3, 32, 32) -> (N, 256, 8, 8), the map SimKD aligns
    logits = model.forward_head(feats)     # (N, 100), exactly model(x)

Every model has the same small API (after timm): ``forward_features``, ``forward_head``,
``get_classifier`` and the attributes ``num_classes``, ``in_channels``, ``feature_channels``,
``classifier_on_features``. Only models whose classifier acts directly on the pooled
``forward_features`` (``classifier_on_features=True``: the ResNets, VGG, ShuffleV1) can be
SimKD teachers; MobileNetV2 and ShuffleNetV2 can only be students.

Models of torchvision and timm, and your own nn.Module, get the same API: ``create_model("torchvision/resnet18")``,
``create_model("timm/resnet18")``, ``wrap_model(module)`` (see models/external.py for the name grammar).
"""
from .registry import (
    OFFICIAL_CIFAR_MODELS,
    count_parameters,
    create_model,
    list_models,
    list_namespaces,
    register_model,
)

# Importing the architecture files registers their models.
from . import mobilenetv2, resnet, shufflenetv1, shufflenetv2, vgg  # noqa: E402,F401
# torchvision/..., timm/..., custom/... names (torchvision and timm are imported only when used).
from .external import ExternalModel, adapt_input_channels, parse_model_name, safe_name, wrap_model  # noqa: E402
from .mobilenetv2 import MobileNetV2
from .resnet import CifarResNet
from .shufflenetv1 import ShuffleNetV1
from .shufflenetv2 import ShuffleNetV2
from .vgg import VGG

__all__ = [
    "OFFICIAL_CIFAR_MODELS",
    "count_parameters",
    "create_model",
    "list_models",
    "list_namespaces",
    "register_model",
    "ExternalModel",
    "adapt_input_channels",
    "parse_model_name",
    "safe_name",
    "wrap_model",
    "CifarResNet",
    "VGG",
    "MobileNetV2",
    "ShuffleNetV1",
    "ShuffleNetV2",
]
