"""The model registry: a name -> factory dictionary, and `create_model`.

Every architecture file registers its models here, either with a decorator::

    @register_model("MobileNetV2")
    def mobilenetv2_half(num_classes=100, in_channels=3):
        return MobileNetV2(width_mult=0.5, num_classes=num_classes, in_channels=in_channels)

or in one line, with any callable that accepts ``num_classes`` and ``in_channels``::

    register_model("resnet8x4", partial(CifarResNet, depth=8, num_filters=(32, 64, 128, 256)))

`create_model(name)` then looks the name up in the dictionary. There is deliberately no
if/elif chain on names: adding a model never touches this file.
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

class ZooModel(nn.Module):
    """The uniform (timm-style) API of every zoo model.

    Subclasses define `forward_stages(x)` (the list of spatial maps of the official feature list,
    stem first, ending with the map SimKD aligns), `forward_head(features, pre_logits=False)` and
    `get_classifier()`. From these:

    - `forward_features(x)` = the last stage map (official `feat[-2]`);
    - `forward(x)` = `forward_head(forward_features(x))`;
    - `forward_feature_list(x)` = (official `feat` list, logits): what the official models return
      for `model(x, is_feat=True)`, so an index such as FitNet's `--hint_layer 1` means the same map.
    """

    def forward_stages(self, x) -> list:
        raise NotImplementedError

    def forward_features(self, x):
        """(N, in_channels, H, W) -> the last spatial map (N, feature_channels, h, w)."""
        return self.forward_stages(x)[-1]

    def forward(self, x):
        """(N, in_channels, H, W) -> logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def forward_feature_list(self, x):
        """(N, in_channels, H, W) -> ([f0, f1, ..., feat[-2], pooled], logits), in one pass.

        The official feature list: every stage's spatial map (stem first; ResNet: stem, layer1,
        layer2, layer3), then the pooled vector the classifier reads (official `feat[-1]`).
        For ResNet-32x4 / ResNet-8x4 at 32x32, index 1 is layer1's output, (N, 64, 32, 32).
        """
        maps = self.forward_stages(x)
        pooled = self.forward_head(maps[-1], pre_logits=True)
        return [*maps, pooled], self.get_classifier()(pooled)


# A factory builds a fresh, randomly initialised model: factory(num_classes=..., in_channels=...).
ModelFactory = Callable[..., nn.Module]

_MODEL_REGISTRY: dict[str, ModelFactory] = {}

# Models from other libraries, by prefix: "torchvision/resnet18" -> _NAMESPACES["torchvision"]("resnet18", ...).
# A namespace builder takes (rest_of_the_name, num_classes=..., in_channels=...) and returns a ZooModel
# whose `model_name` fully describes the architecture (see models/external.py).
_NAMESPACES: dict[str, ModelFactory] = {}


def register_namespace(prefix: str, builder: ModelFactory) -> None:
    """Route every name `prefix/REST` of `create_model` to `builder(REST, num_classes=..., in_channels=...)`."""
    if not prefix or "/" in prefix:
        raise ValueError(f"a namespace is a name without '/', got {prefix!r}")
    _NAMESPACES[prefix] = builder


def list_namespaces() -> list[str]:
    """The prefixes `create_model` understands besides the zoo's names (torchvision, timm, custom)."""
    return sorted(_NAMESPACES)

# The 17 CIFAR-100 model names of the official SimKD code (its `models.model_dict`), kept verbatim
# (including the capitals) so that official checkpoints and scripts map onto ours one to one.
OFFICIAL_CIFAR_MODELS: tuple[str, ...] = (
    "resnet8x4", "resnet14x4", "resnet32x4", "resnet38x4",
    "resnet14x2", "resnet38x2", "resnet110x2",
    "resnet38", "resnet110", "resnet116",
    "vgg8", "vgg13",
    "MobileNetV2", "MobileNetV2_1_0",
    "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5",
)


def register_model(name: str, factory: ModelFactory | None = None):
    """Register `factory` under `name`.

    Two spellings:
      * ``register_model("name", factory)`` registers at once and returns the factory;
      * ``@register_model("name")`` above a function registers that function.

    Registering the same name twice is an error: a silent overwrite would make
    `create_model` depend on import order.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def _register(fn: ModelFactory) -> ModelFactory:
        if not callable(fn):
            raise TypeError(f"factory for {name!r} must be callable, got {type(fn).__name__}")
        if name in _MODEL_REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _MODEL_REGISTRY[name] = fn
        return fn

    if factory is not None:
        return _register(factory)
    return _register


def list_models() -> list[str]:
    """All registered zoo model names, sorted (Python's default order: capitals first).

    `create_model` also builds models of other libraries by prefix (models/external.py):
    ``torchvision/ARCH`` for any name of ``torchvision.models.list_models(module=torchvision.models)``,
    ``timm/ARCH`` for any name of ``timm.list_models()`` (``pip install "simkd_lite[timm]"``), and
    ``custom/NAME`` for a module wrapped with ``simkd_lite.models.wrap_model(module, name=NAME)``.
    """
    return sorted(_MODEL_REGISTRY)


def _check_positive_int(value, what: str) -> None:
    # bool is a subclass of int; `num_classes=True` is surely a mistake, so refuse it too.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def create_model(name: str, num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """Build a freshly initialised model by name.

    Args:
        name: a name from `list_models()`, e.g. ``"resnet8x4"`` (official names keep their case), or
            another library's model: ``"torchvision/resnet18"``, ``"timm/resnet18"``,
            ``"torchvision/resnet18:layer3,stem=cifar"`` (grammar: models/external.py).
        num_classes: size of the final Linear layer (100 for CIFAR-100).
        in_channels: channels of the input image (3 for RGB, 1 for Fashion-MNIST); only the
            first convolution changes.

    Returns:
        an ``nn.Module`` with the uniform API: ``model(x)`` -> logits (N, num_classes),
        ``forward_features``, ``forward_head``, ``get_classifier``, and the attributes
        ``num_classes``, ``in_channels``, ``feature_channels``, ``classifier_on_features``.

    Raises:
        ValueError: unknown name (the message lists close matches) or a non-positive size.
    """
    prefix, slash, rest = name.partition("/") if isinstance(name, str) else ("", "", "")
    factory = _MODEL_REGISTRY.get(name)
    if factory is None and not (slash and prefix in _NAMESPACES):
        raise ValueError(_unknown_model_message(name))
    _check_positive_int(num_classes, "num_classes")
    _check_positive_int(in_channels, "in_channels")
    if factory is None:  # another library's model: its builder names it (the name may be normalised)
        return _NAMESPACES[prefix](rest, num_classes=num_classes, in_channels=in_channels)
    model = factory(num_classes=num_classes, in_channels=in_channels)
    model.model_name = name  # lets checkpoints and SimKDStudent record the architecture by name
    return model


def _unknown_model_message(name) -> str:
    names = list_models()
    text = str(name)
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.6)
    # Case slips ("mobilenetv2", "shufflev2") are the commonest typo with the official names.
    close += [n for n in names if n.lower() == text.lower() and n not in close]
    hint = f" Did you mean: {', '.join(close)}?" if close else " No registered name is close."
    prefixes = ", ".join(f"{p}/..." for p in list_namespaces())
    return (f"Unknown model name {name!r}.{hint} "
            f"Call simkd_lite.models.list_models() to see all {len(names)} zoo names"
            + (f" (other libraries: {prefixes})." if prefixes else "."))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
