"""Models from other libraries (torchvision, timm) and the user's own nn.Module, with the zoo's API.

    create_model("torchvision/resnet18", num_classes=10, in_channels=1)
    create_model("torchvision/resnet18:layer3,stem=cifar", 10)      # another aligned map, a small-image stem
    create_model("timm/resnet18", 10)                               # pip install "simkd_lite[timm]"
    student = wrap_model(my_module, feature_layer="body.4", name="mynet")   # then also "custom/mynet"

The name grammar (what `model_name` records in every checkpoint, so it must rebuild the same network)::

    SOURCE/ARCH[:ITEM,ITEM,...]      SOURCE: torchvision | timm | custom
    ITEM := LAYER                    the feature map SimKD aligns: a node name of
          | features=LAYER             torchvision.models.feature_extraction.get_graph_node_names
          | classifier=MODULE        the final nn.Linear, if not found automatically
          | stem=cifar               torchvision ResNets only: 3x3 stride-1 conv1 and no max-pool, the common
                                       CIFAR variant (ImageNet ResNets shrink 32x32 input 32x, to a 1x1 map)

e.g. ``torchvision/resnet18:layer3,stem=cifar``. Defaults are not written out, so the recorded name is what
the user asked for. A teacher *source* may also name torchvision weights: ``torchvision/resnet18.IMAGENET1K_V1``
(or ``.DEFAULT``), read only from the torch hub cache (`cached_weights`); the model name drops the weights.

How the adapter (`ExternalModel`) works:
- the wrapped network is `self.net`; state_dict keys are the network's own (no `net.` prefix), so a
  torchvision state_dict loads as is and a saved `model` entry loads back into plain torchvision;
- the feature map is read with `torchvision.models.feature_extraction.create_feature_extractor` (timm's
  version for timm models); the traced code addresses submodules by name, so BatchNorm folding and
  `replace_classifier` act on it. Networks fx cannot trace fall back to forward hooks on a named module;
- default feature map: the last 4-D map with more than 1x1 pixels (at a 64x64 probe) that is not a
  pooling layer; default classifier: the last nn.Linear called (timm: `get_classifier()`);
- `classifier_on_features` is computed, not assumed: in eval mode, on a random input, global average
  pool -> classifier must reproduce the network's own logits. Otherwise (mobilenet_v3, vgg: a conv or an
  MLP in between) `forward_head` runs the rest of the traced network instead, so the model can be a
  student of any method, but never a SimKD teacher;
- `in_channels != 3`: the first Conv2d is replaced by a freshly initialised one of the same shape that
  takes `in_channels` (timm: its own `in_chans`); `adapt_input_channels` turns pretrained RGB weights
  into 1-channel ones exactly (sum over R, G, B = feeding the grey image three times).
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ZooModel, register_namespace

SOURCES = ("torchvision", "timm", "custom")
PROBE_SIZES = (64, 32, 28, 8)  # square probe inputs tried in turn (a network may need a minimum size)
_POOL_NAME = re.compile(r"(^|[._])(avgpool|maxpool|global_pool|pool|adaptive_avg_pool2d|adaptive_max_pool2d|mean|"
                        r"flatten)(_\d+)?$")
_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)


# ------------------------------------------------------------------------------------------ the name
@dataclass(frozen=True)
class ModelSpec:
    """A parsed external model name (see the module docstring for the grammar)."""

    source: str
    arch: str
    features: str | None = None
    classifier: str | None = None
    stem: str | None = None
    weights: str | None = None  # torchvision weights (a teacher source only), e.g. "IMAGENET1K_V1"

    @property
    def model_name(self) -> str:
        """The canonical architecture name (no weights): what checkpoints record."""
        items = [f"{k}={v}" for k, v in (("features", self.features), ("classifier", self.classifier),
                                          ("stem", self.stem)) if v]
        return f"{self.source}/{self.arch}" + (":" + ",".join(items) if items else "")


def parse_model_name(name: str) -> ModelSpec:
    """'torchvision/resnet18.DEFAULT:layer3,stem=cifar' -> ModelSpec; a malformed name -> one-line ValueError."""
    source, slash, rest = str(name).partition("/")
    if not slash or source not in SOURCES or not rest:
        raise ValueError(f"{name!r} is not an external model name: write SOURCE/ARCH with SOURCE one of "
                         f"{', '.join(SOURCES)}, e.g. torchvision/resnet18.")
    arch, _, options = rest.partition(":")
    weights = None
    if source == "torchvision" and "." in arch:  # torchvision names have no dots; timm's pretrained tags do
        arch, weights = arch.split(".", 1)
    values = {"features": None, "classifier": None, "stem": None}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, eq, value = item.partition("=")
        key, value = (key, value) if eq else ("features", key)
        if key not in values or not value:
            raise ValueError(f"{name!r}: unknown option {item!r}; options are LAYER, features=LAYER, "
                             "classifier=MODULE, stem=cifar (comma-separated after ':').")
        values[key] = value
    if values["stem"] not in (None, "cifar"):
        raise ValueError(f"{name!r}: stem={values['stem']} is not known; the only stem option is stem=cifar.")
    return ModelSpec(source, arch, weights=weights, **values)


def safe_name(model_name: str) -> str:
    """A model name usable inside a file or folder name ('torchvision/resnet18:layer3' -> 'torchvision-resnet18-layer3')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip("-")


def _close(word: str, names, what: str) -> str:
    close = difflib.get_close_matches(word, list(names), n=6, cutoff=0.5)
    return f" Close {what}: {', '.join(close)}." if close else ""


# ------------------------------------------------------------------------------------------ tracing
def _fx_tools(source: str):
    """(create_feature_extractor, get_graph_node_names): timm's versions know timm's untraceable leaves."""
    if source == "timm":
        from timm.models._features_fx import create_feature_extractor, get_graph_node_names
    else:
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    return create_feature_extractor, get_graph_node_names


def _graph_functions(gm: nn.Module) -> dict[bool, Callable]:
    """{training mode: the traced forward as a plain function of (root, x)}.

    The generated code looks submodules up by name on the root it is called with (`self.layer1`...), so
    calling it on the wrapped network itself keeps it in step with any module replaced later.
    """
    functions = {}
    for mode in (True, False):
        gm.train(mode)  # a DualGraphModule swaps in the train or the eval graph and recompiles
        functions[mode] = type(gm).forward
    return functions


def _copy_constants(gm: nn.Module, net: nn.Module) -> None:
    """Tensors fx made attributes of the traced module (`_tensor_constant0`) become buffers of `net`."""
    for node in gm.graph.nodes:
        if node.op == "get_attr" and "." not in node.target and not hasattr(net, node.target):
            net.register_buffer(node.target, getattr(gm, node.target), persistent=False)


def _strip_net_prefix(module, state_dict, prefix, local_metadata) -> None:
    # state_dict hook: the wrapped network's own keys (`conv1.weight`), not `net.conv1.weight`.
    inner = prefix + "net."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)


def _add_net_prefix(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "net.")]:
        state_dict[prefix + "net." + key[len(prefix):]] = state_dict.pop(key)


class _Stop(Exception):
    """Raised by a forward hook once the maps asked for are captured (hooks mode: skip the rest)."""


# ------------------------------------------------------------------------------------------ the adapter
class ExternalModel(ZooModel):
    """Any classification nn.Module with the zoo's API (forward_stages / forward_features / forward_head /
    get_classifier, num_classes, in_channels, feature_channels, classifier_on_features, model_name).

    Args:
        net: the network; x (N, C, H, W) -> logits (N, K) through a final nn.Linear.
        feature_layer: the map SimKD aligns, a node name (fx) or module name (hooks); None: found.
        classifier: the module name of the final nn.Linear; None: found.
        model_name: what checkpoints record (create_model sets it).
        source: "timm" uses timm's fx helpers; anything else torchvision's.
        stage_layers: names of earlier maps for `forward_stages` (FitNet's hint_layer indexes them).
        probe_size: the square input size used to inspect the network; None tries PROBE_SIZES in turn.
    """

    def __init__(self, net: nn.Module, feature_layer: str | None = None, classifier: str | None = None, *,
                 model_name: str | None = None, source: str = "custom", stage_layers: tuple[str, ...] = (),
                 probe_size: int | None = None):
        super().__init__()
        self.net = net
        self.model_name = model_name or f"custom/{type(net).__name__}"
        self._register_state_dict_hook(_strip_net_prefix)
        self.register_load_state_dict_pre_hook(_add_net_prefix)
        first_conv = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
        if first_conv is None:
            raise ValueError(f"{self.model_name} has no Conv2d: it produces no spatial feature map to align.")
        self.first_conv, self.in_channels = first_conv[0], first_conv[1].in_channels
        was_training = net.training
        net.eval()
        try:
            probe = self._probe(probe_size)
            self._inspect(probe, feature_layer, classifier, source, stage_layers)
        finally:
            net.train(was_training)
            self.train(was_training)

    # -------------------------------------------------- inspection (once, at construction)
    def _probe(self, size: int | None) -> Tensor:
        """A seeded random batch (2, C, s, s) the network accepts (the global RNG is not touched)."""
        generator = torch.Generator().manual_seed(0)
        errors = []
        for s in (size,) if size else PROBE_SIZES:
            x = torch.randn(2, self.in_channels, s, s, generator=generator)
            try:
                with torch.no_grad():
                    self._reference = self.net(x)
                return x
            except Exception as err:  # noqa: BLE001 - try the next size; reported below if none fits
                errors.append(f"{s}x{s}: {str(err).splitlines()[0][:120]}")
        raise ValueError(f"{self.model_name} did not accept a random {self.in_channels}-channel input of any of the "
                         f"sizes tried ({'; '.join(errors)}); pass probe_size=... to wrap_model.")

    def _inspect(self, x: Tensor, feature_layer, classifier, source, stage_layers) -> None:
        if not (torch.is_tensor(self._reference) and self._reference.dim() == 2):
            raise ValueError(f"{self.model_name} returns {type(self._reference).__name__} "
                             f"{getattr(self._reference, 'shape', '')}, not logits (N, classes): wrap a classifier.")
        try:
            self._trace(x, feature_layer, classifier, source, stage_layers)
        except _Untraceable:
            self.net.eval()  # a failed trace may leave the network in train mode (it traces both)
            self._hook_mode(x, feature_layer, classifier, stage_layers)
        self.net.eval()
        head = self.get_classifier()
        self.num_classes = head.out_features
        with torch.no_grad():
            features = self.forward_stages(x)[-1]
            self.feature_channels = features.shape[1]
            simple = (head.in_features == self.feature_channels
                      and torch.allclose(self._pool_classify(features), self._reference, rtol=1e-4, atol=1e-5))
        self.classifier_on_features = bool(simple)
        if not simple:
            self.head_note = (f"global average pool -> {self.classifier_name} does not reproduce its logits from the "
                              f"{self.feature_layer} map {list(features.shape[1:])}: there are more layers in between")
            with torch.no_grad():
                if self._head is not None and not torch.allclose(self._head[False](self.net, features)[1], self._reference, rtol=1e-4, atol=1e-5):
                    raise ValueError(f"{self.model_name}: the traced head does not reproduce its logits from "
                                     f"{self.feature_layer}; choose another feature layer.")
        del self._reference

    def _trace(self, x, feature_layer, classifier, source, stage_layers) -> None:
        """fx: node names, the feature node (given or found), the classifier, the stage and head functions."""
        try:
            extract, node_names = _fx_tools(source)
            names = node_names(self.net)[1]
            shapes = {k: getattr(v, "shape", None) for k, v in extract(self.net, names)(x).items()}
        except Exception as err:  # noqa: BLE001 - fx cannot trace every Python forward
            raise _Untraceable(str(err)) from None
        linears = [n for n in names if isinstance(self._module_or_none(n), nn.Linear)]
        self.classifier_name = self._choose_classifier(classifier, linears)
        self.feature_layer = feature_layer or _module_of(self._find_features(names, shapes), names)
        if _position(self.feature_layer, names) < 0:
            modules = [n for n, _ in self.net.named_modules() if n]
            raise ValueError(f"{self.model_name} has no layer {self.feature_layer!r}." + _close(
                self.feature_layer, dict.fromkeys([*modules, *names]), "layer names")
                + " All: torchvision.models.feature_extraction.get_graph_node_names(model)[1].")
        end = _position(self.feature_layer, names)
        self.stage_layers = tuple(s for s in stage_layers if -1 < _position(s, names) < end)
        nodes = {f"s{i}": n for i, n in enumerate((*self.stage_layers, self.feature_layer))}
        gm = extract(self.net, {n: k for k, n in nodes.items()})
        _copy_constants(gm, self.net)
        self._stages, self._stage_keys = _graph_functions(gm), list(nodes)
        self._head = self._split_head(extract, names[-1])

    def _split_head(self, extract, last: str) -> dict[bool, Callable] | None:
        """{mode: fn(net, features) -> (classifier input, logits)}: the traced network after the feature map."""
        try:
            gm = extract(self.net, {self.feature_layer: "features", last: "logits"})
            functions = {}
            for mode in (True, False):
                gm.train(mode)
                graph = gm.graph
                output = next(n for n in graph.nodes if n.op == "output")
                feature_node, logits = output.args[0]["features"], output.args[0]["logits"]
                classify = _classifier_node(graph, self.classifier_name)
                with graph.inserting_before(next(iter(graph.nodes))):
                    placeholder = graph.placeholder("features")
                feature_node.replace_all_uses_with(placeholder)
                output.args = ((classify.args[0], logits),)
                graph.eliminate_dead_code()
                for node in [n for n in graph.nodes if n.op == "placeholder" and n is not placeholder]:
                    if node.users:  # the head reads the input image too: it is not a function of the map
                        return None
                    graph.erase_node(node)
                gm.recompile()
                functions[mode] = type(gm).forward
            _copy_constants(gm, self.net)
            return functions
        except Exception:  # noqa: BLE001 - no traced head: the model may still be a SimKD student
            return None

    def _hook_mode(self, x, feature_layer, classifier, stage_layers) -> None:
        """No fx: find maps and the classifier by running the network with forward hooks on its modules."""
        seen: list[tuple[str, nn.Module, object]] = []
        handles = [m.register_forward_hook(lambda mod, args, out, name=name: seen.append((name, mod, out)))
                   for name, m in self.net.named_modules() if name]
        try:
            with torch.no_grad():
                self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        names = list(dict.fromkeys(name for name, _, _ in seen))
        self.classifier_name = self._choose_classifier(classifier, [n for n, m, _ in seen if isinstance(m, nn.Linear)])
        shapes = {name: getattr(out, "shape", None) for name, _, out in seen}
        self.feature_layer = feature_layer or self._find_features(names, shapes)
        if self._module_or_none(self.feature_layer) is None:
            raise ValueError(f"{self.model_name} has no module {self.feature_layer!r} (it cannot be traced by fx, so "
                             "the feature map must be a module's output)." + _close(self.feature_layer, names,
                                                                                     "module names"))
        self.stage_layers = tuple(s for s in stage_layers if s != self.feature_layer)
        self._stages, self._head = None, None

    def _module_or_none(self, name: str) -> nn.Module | None:
        try:
            return self.net.get_submodule(name)
        except AttributeError:
            return None

    def _choose_classifier(self, given: str | None, linears: list[str]) -> str:
        if given is None:
            get = getattr(self.net, "get_classifier", None)  # timm's API
            found = get() if callable(get) else None
            names = [n for n, m in self.net.named_modules() if m is found and isinstance(m, nn.Linear)]
            if names or linears:
                return names[0] if names else linears[-1]
            raise ValueError(f"{self.model_name} calls no nn.Linear: name its classifier (classifier=MODULE).")
        if not isinstance(self._module_or_none(given), nn.Linear):
            every = [n for n, m in self.net.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(f"{self.model_name}: classifier {given!r} is not an nn.Linear of the model."
                             + (f" Its Linear layers: {', '.join(every)}." if every else " It has no nn.Linear."))
        return given

    def _find_features(self, names: list[str], shapes: dict) -> str:
        """The last 4-D map larger than 1x1 that is not a pooling layer (SimKD's map before global pooling)."""
        for name in reversed(names):
            shape = shapes.get(name)
            pooling = _POOL_NAME.search(name) or isinstance(self._module_or_none(name), _POOL_MODULES)
            if shape is not None and len(shape) == 4 and shape[-1] * shape[-2] > 1 and not pooling:
                return name
        for name in reversed(names):  # tiny probes: accept a 1x1 map
            shape = shapes.get(name)
            if shape is not None and len(shape) == 4 and not _POOL_NAME.search(name):
                return name
        raise ValueError(f"{self.model_name} produces no 4-D feature map (N, C, H, W): SimKD aligns spatial maps, "
                         "so it cannot be used (a vision transformer's tokens are not one).")

    # -------------------------------------------------- the zoo API
    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """[earlier stage maps (ResNets: stem, layer1, layer2, layer3)..., the aligned map (N, C_f, h, w)]."""
        if self._stages is not None:
            maps = self._stages[self.training](self.net, x)
            return [maps[k] for k in self._stage_keys]
        return self._run_hooked(x, [*self.stage_layers, self.feature_layer])

    def _run_hooked(self, x: Tensor, names: list[str]) -> list[Tensor]:
        found: dict[str, Tensor] = {}

        def keep(name):
            def hook(module, args, output):
                found[name] = output
                if len(found) == len(names):
                    raise _Stop
            return hook

        handles = [self.net.get_submodule(n).register_forward_hook(keep(n)) for n in names]
        try:
            self.net(x)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [found[n] for n in names]

    def _pool_classify(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        return pooled if pre_logits else self.get_classifier()(pooled)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """(N, C_f, h, w) -> logits (N, num_classes); `pre_logits`: the vector the classifier reads.

        Global average pool -> classifier when that is the network (`classifier_on_features`), else the
        traced rest of the network (a conv head, an MLP).
        """
        if self.classifier_on_features:
            return self._pool_classify(features, pre_logits)
        if self._head is None:
            raise ValueError(f"{self.model_name}: {self.head_note}, and fx cannot trace its head, so it cannot "
                             "predict from the feature map alone; choose the map its classifier reads (features=LAYER).")
        pre, logits = self._head[self.training](self.net, features)
        return pre if pre_logits else logits

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes), exactly the wrapped network's."""
        if self.classifier_on_features or self._head is not None:
            return self.forward_head(self.forward_features(x))
        return self.net(x)

    def get_classifier(self) -> nn.Linear:
        """The final nn.Linear (looked up by name: a replaced classifier is the one used)."""
        return self.net.get_submodule(self.classifier_name)

    def replace_classifier(self, num_classes: int) -> nn.Linear:
        """A new nn.Linear(in_features, num_classes) in place of the classifier (fitting a teacher's head)."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight.device)
        _set_module(self.net, self.classifier_name, new)
        self.num_classes = num_classes
        return new


def _classifier_node(graph, name: str):
    """The node that applies the classifier: a call of the module, or F.linear on its weight (timm traces it so)."""
    for node in graph.nodes:
        if node.op == "call_module" and node.target == name:
            return node
        if node.op == "call_function" and node.target is F.linear and len(node.args) > 1 \
                and getattr(node.args[1], "target", None) == f"{name}.weight":
            return node
    raise LookupError(name)


def _position(name: str, names: list[str]) -> int:
    """Index in the node list of `name`, or of the last node of the module `name` (fx accepts both); -1: none."""
    if name in names:
        return names.index(name)
    inside = [i for i, n in enumerate(names) if n.startswith(name + ".")]
    return inside[-1] if inside else -1


def _module_of(node: str, names: list[str]) -> str:
    """The shortest module name whose last node is `node` ('layer4.1.relu_1' -> 'layer4'), else `node`."""
    parts = node.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if _position(prefix, names) == names.index(node):
            return prefix
    return node


class _Untraceable(Exception):
    """fx could not trace the network: use forward hooks."""


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def adapt_input_channels(model: ExternalModel, in_channels: int) -> ExternalModel:
    """Pretrained RGB weights for grey images: the first conv's weights summed over R, G, B (exact: the same
    as feeding the grey image as three equal channels). Only 3 -> 1 is exact, so only it is offered."""
    conv = model.net.get_submodule(model.first_conv)
    if conv.in_channels == in_channels:
        return model
    if (conv.in_channels, in_channels) != (3, 1):
        raise ValueError(f"{model.model_name} takes {conv.in_channels}-channel images, the data {in_channels}: only "
                         "RGB weights on grey images (3 -> 1) can be adapted exactly.")
    with torch.no_grad():
        conv.weight = nn.Parameter(conv.weight.sum(dim=1, keepdim=True))
    conv.in_channels = 1
    model.in_channels = 1
    return model


# ------------------------------------------------------------------------------------------ builders
RESNET_STAGES = ("maxpool", "layer1", "layer2", "layer3", "layer4")


def _replace_first_conv(net: nn.Module, in_channels: int) -> None:
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups if conv.groups == 1 else in_channels, conv.bias is not None, conv.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's conv init
    _set_module(net, name, new)


def _cifar_stem(net: nn.Module, spec: ModelSpec, in_channels: int) -> None:
    """3x3 stride-1 conv1, no max-pool: a 32x32 image keeps 32x32 until layer2 (the common CIFAR ResNet stem)."""
    if not (isinstance(getattr(net, "conv1", None), nn.Conv2d) and isinstance(getattr(net, "maxpool", None), nn.Module)):
        raise ValueError(f"{spec.model_name}: stem=cifar applies to ResNet-style models (conv1 + maxpool); "
                         f"{spec.arch} has none.")
    net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()


def torchvision_arch_names() -> list[str]:
    """Every classification architecture of torchvision (`torchvision.models.list_models`)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def build_torchvision(rest: str, num_classes: int = 1000, in_channels: int = 3) -> ExternalModel:
    """`create_model("torchvision/REST")`: torchvision.models.get_model(arch, weights=None), adapted."""
    import torchvision

    spec = parse_model_name("torchvision/" + rest)
    _no_weights_in_name(spec)
    names = torchvision_arch_names()
    if spec.arch not in names:
        raise ValueError(f"Unknown torchvision model {spec.arch!r}." + _close(spec.arch, names, "names")
                         + " All: torchvision.models.list_models(module=torchvision.models).")
    net = torchvision.models.get_model(spec.arch, weights=None, num_classes=num_classes)
    if spec.stem:
        _cifar_stem(net, spec, in_channels)
    _replace_first_conv(net, in_channels)
    stages = RESNET_STAGES if all(hasattr(net, s) for s in RESNET_STAGES) else ()
    if spec.stem and stages:
        stages = ("relu", *stages[1:])  # no max-pool: the stem's output is its ReLU
    return ExternalModel(net, spec.features, spec.classifier, model_name=spec.model_name, source="torchvision",
                         stage_layers=stages)


def build_timm(rest: str, num_classes: int = 1000, in_channels: int = 3) -> ExternalModel:
    """`create_model("timm/REST")`: timm.create_model(arch, pretrained=False, num_classes, in_chans)."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"timm/{rest} needs timm, which is not installed: pip install \"simkd_lite[timm]\"") from None
    spec = parse_model_name("timm/" + rest)
    if spec.stem:
        raise ValueError(f"{spec.model_name}: stem=cifar is offered for torchvision ResNets only.")
    names = timm.list_models()
    if spec.arch.split(".")[0] not in names:
        raise ValueError(f"Unknown timm model {spec.arch!r}." + _close(spec.arch, names, "names")
                         + " All: timm.list_models().")
    net = timm.create_model(spec.arch, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    return ExternalModel(net, spec.features, spec.classifier, model_name=spec.model_name, source="timm")


def _no_weights_in_name(spec: ModelSpec) -> None:
    if spec.weights:
        raise ValueError(f"{spec.source}/{spec.arch}.{spec.weights}: weights are a teacher source "
                         f"(--teacher {spec.source}/{spec.arch}.{spec.weights}), not part of a model name; "
                         f"the architecture is {spec.model_name}.")


# ------------------------------------------------------------------------------------------ own modules
_WRAPPED: dict[str, tuple[nn.Module, int | None]] = {}  # name -> (template module, probe size)


def wrap_model(module: nn.Module, feature_layer: str | None = None, classifier: str | None = None,
               name: str | None = None, *, probe_size: int | None = None) -> ExternalModel:
    """Your own classification nn.Module (e.g. defined in a notebook) as a simkd_lite model.

    feature_layer: the map SimKD aligns (a node name of get_graph_node_names, or a module name); None: the
    last spatial map before global pooling. classifier: the final nn.Linear's name; None: found.
    name: registers the architecture as ``custom/NAME`` (default: the class name), so that
    `create_model("custom/NAME", ...)`, checkpoints and `SimKDStudent.load` rebuild it in this Python
    process (a copy of `module` as it is now; the weights are then loaded). `module` itself is wrapped, not copied.
    """
    if isinstance(module, ZooModel):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"wrap_model needs an nn.Module, got {type(module).__name__}")
    key = name or type(module).__name__
    spec = ModelSpec("custom", key, feature_layer, classifier)
    model = ExternalModel(module, feature_layer, classifier, model_name=spec.model_name, probe_size=probe_size)
    _WRAPPED[key] = (copy.deepcopy(module), probe_size)
    return model


def build_custom(rest: str, num_classes: int = 1000, in_channels: int = 3) -> ExternalModel:
    """`create_model("custom/NAME")`: a copy of the module `wrap_model(module, name=NAME)` registered."""
    spec = parse_model_name("custom/" + rest)
    if spec.arch not in _WRAPPED:
        raise ValueError(f"custom/{spec.arch} is a model wrapped in Python: call simkd_lite.models.wrap_model("
                         f"your_module, name={spec.arch!r}) in this process first." + _close(spec.arch, _WRAPPED,
                                                                                              "wrapped names"))
    template, probe_size = _WRAPPED[spec.arch]
    model = ExternalModel(copy.deepcopy(template), spec.features, spec.classifier, model_name=spec.model_name,
                          probe_size=probe_size)
    if (model.num_classes, model.in_channels) != (num_classes, in_channels):
        raise ValueError(f"custom/{spec.arch} was wrapped with {model.num_classes} classes and {model.in_channels} "
                         f"input channels, not {num_classes} and {in_channels}: wrap a module of that shape.")
    return model


register_namespace("torchvision", build_torchvision)
register_namespace("timm", build_timm)
register_namespace("custom", build_custom)


# ------------------------------------------------------------------------------------------ cached weights
def cached_weights(source: str):
    """'torchvision/resnet18.IMAGENET1K_V1' -> (ModelSpec, the weights enum member, the file in the torch hub cache).

    Never downloads: the file is `torch.hub.get_dir()/checkpoints/<basename of weights.url>`, where
    torchvision's own download would put it. Whether it exists is the caller's to check
    (`missing_weights_message`).
    """
    import os

    import torchvision

    spec = parse_model_name(source)
    if spec.source != "torchvision" or not spec.weights:
        raise ValueError(f"{source!r} names no torchvision weights: write torchvision/ARCH.WEIGHTS, "
                         "e.g. torchvision/resnet18.IMAGENET1K_V1 or torchvision/resnet18.DEFAULT.")
    if spec.arch not in torchvision_arch_names():
        raise ValueError(f"Unknown torchvision model {spec.arch!r}." + _close(spec.arch, torchvision_arch_names(),
                                                                              "names"))
    enum = torchvision.models.get_model_weights(spec.arch)
    members = {m.name: m for m in enum}
    weights = enum.DEFAULT if spec.weights == "DEFAULT" else members.get(spec.weights)
    if weights is None:
        raise ValueError(f"{spec.arch} has no weights {spec.weights!r}; it has: {', '.join(members)} (or DEFAULT).")
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return spec, weights, path


def missing_weights_message(source: str, weights, path: str) -> str:
    return (f"{source}: the weights file is not in the torch hub cache and simkd_lite never downloads: put "
            f"{path} there, fetched on a machine with internet from {weights.url}")
