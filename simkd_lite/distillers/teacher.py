"""The frozen teacher, kept outside the trainable module tree.

The teacher is deliberately *not* an `nn.Module` attribute of a distiller: it is never
optimised, never switched to train mode, never saved with the student, and with cached
outputs it is not needed at all while a student trains.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor, nn


class TeacherOutputs(NamedTuple):
    """What a distiller may read from the teacher for one batch.

    `hint` is present only when a distiller asks for an intermediate map (FitNet's hint layer):
    the engine caches it beside the other two so cached and live teachers give the same inputs.
    """

    features: Tensor  # (N, C_t, H_t, W_t): the map SimKD aligns (official feat[-2])
    logits: Tensor  # (N, num_classes)
    hint: Tensor | None = None  # (N, C, H, W): official feat[hint_layer], when asked for

    def select(self, index) -> "TeacherOutputs":
        """The same outputs for a subset of the batch (index: a LongTensor or slice)."""
        return TeacherOutputs(self.features[index], self.logits[index],
                              None if self.hint is None else self.hint[index])

    def to(self, device) -> "TeacherOutputs":
        return TeacherOutputs(self.features.to(device), self.logits.to(device),
                              None if self.hint is None else self.hint.to(device))


class FrozenTeacher:
    """A teacher network in eval mode with gradients off; call it on a batch."""

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    # no_grad rather than inference_mode: the outputs become targets of losses that autograd
    # tracks, which inference-mode tensors cannot be.
    @torch.no_grad()
    def __call__(self, x: Tensor, hint_layer: int | None = None) -> TeacherOutputs:
        """One frozen forward; with `hint_layer`, also the map at that index of the official feature list."""
        if hint_layer is None:
            features = self.model.forward_features(x)
            return TeacherOutputs(features, self.model.forward_head(features))
        feats, logits = self.model.forward_feature_list(x)
        return TeacherOutputs(feats[-2], logits, feats[hint_layer])

    def to(self, *args, **kwargs) -> "FrozenTeacher":
        self.model.to(*args, **kwargs)
        return self

    @property
    def feature_channels(self) -> int:
        return self.model.feature_channels

    def classifier_copy(self) -> nn.Linear:
        """A frozen copy of the teacher's final Linear, for SimKD's reused head.

        Raises ValueError for models whose classifier does not read the pooled
        `forward_features` map (MobileNetV2, ShuffleNetV2): they cannot be SimKD teachers.
        """
        if not getattr(self.model, "classifier_on_features", False):
            name = getattr(self.model, "model_name", type(self.model).__name__)
            why = getattr(self.model, "head_note", None)  # external models say what they computed
            raise ValueError(
                f"{name} cannot be a SimKD teacher: its classifier does not act on the pooled "
                f"forward_features map ({why or 'there is a conv between them'}). It can still be a student. "
                "Choose a teacher whose final Linear reads the pooled map: a ResNet, VGG or ShuffleV1 of the zoo, "
                "or e.g. torchvision/resnet18."
            )
        head = copy.deepcopy(self.model.get_classifier())
        for p in head.parameters():
            p.requires_grad_(False)
        return head

    def feature_size(self, image_size: int, in_channels: int) -> int:
        """Spatial size H_t of the teacher's feature map for square inputs of `image_size`."""
        device = next(self.model.parameters()).device
        probe = torch.zeros(1, in_channels, image_size, image_size, device=device)
        return self(probe).features.shape[-1]
