"""The ProLab property heads for mmseg: UperNet and FCN whose 1x1 ``conv_seg`` emits a D-dim pixel
embedding scored against the property centres of a prolab label-space artifact.

``num_classes``/``out_channels`` are the artifact's class count (what ``predict`` returns: class
scores cos(p, y_c), which mmseg's slide/whole inference and argmax consume unchanged); ``conv_seg``
has D outputs. Parameter names are mmseg's, so prolab checkpoints load as they are.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from mmseg.models.decode_heads import FCNHead, SegformerHead, UPerHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from prolab_cli.errors import ProlabError
from segmentation.models.property_head import PropertyBank

from .losses import PropertyCosineLoss


def load_property_bank(label_space: str, temperature: float, normalize_embedding: bool):
    """(LabelSpace, PropertyBank) of a prolab artifact directory."""
    from segmentation.label_space import load_label_space

    space = load_label_space(label_space)
    bank = PropertyBank(space.multi_hot, space.centres, temperature, normalize_embedding)
    return space, bank


class PropertyHeadMixin:
    """Turns an mmseg decode head into a ProLab property head (mixed in before the head class)."""

    def _property_init(self, cls_name: str, label_space: str, temperature: float,
                       normalize_embedding: bool, num_properties: int | None, embed_dim: int | None,
                       kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any, PropertyBank]:
        """Load and check the artifact; the head's keyword arguments, the space and its bank."""
        if not label_space:
            raise ProlabError(f"{cls_name}: label_space=<prolab artifact directory> is required")
        space, bank = load_property_bank(label_space, temperature, normalize_embedding)
        where = f"{cls_name} (label_space={label_space})"
        if num_properties is not None and int(num_properties) != space.num_properties:
            raise ProlabError(f"{where}: the config says num_properties={num_properties} but the "
                              f"artifact has K={space.num_properties}")
        if embed_dim is not None and int(embed_dim) != space.dim:
            raise ProlabError(f"{where}: the config says embed_dim={embed_dim} but the artifact has "
                              f"D={space.dim}")
        given = kwargs.pop("num_classes", None)
        if given is not None and int(given) != space.num_classes:
            raise ProlabError(f"{where}: the config says num_classes={given} but the artifact has "
                              f"{space.num_classes} classes")
        if kwargs.get("out_channels") not in (None, space.num_classes):
            raise ProlabError(f"{where}: out_channels is the class count ({space.num_classes}); the "
                              "embedding width comes from the artifact")
        kwargs.setdefault("loss_decode", dict(type="PropertyCosineLoss", loss_weight=1.0))
        return dict(kwargs, num_classes=space.num_classes), space, bank

    def _property_finish(self, space: Any, bank: PropertyBank) -> None:
        self.label_space = space
        self.class_names = list(space.classes)
        self.bank = bank
        self.conv_seg = nn.Conv2d(self.channels, bank.dim, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)
        losses = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        wrong = [type(loss).__name__ for loss in losses if not isinstance(loss, PropertyCosineLoss)]
        if wrong:
            raise ProlabError(f"{type(self).__name__}: loss_decode {wrong} cannot train a property head "
                              "(use PropertyCosineLoss or PropertyBCELoss)")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        weight = state_dict.get(prefix + "conv_seg.weight")
        if weight is not None and tuple(weight.shape) != tuple(self.conv_seg.weight.shape):
            raise ProlabError(f"{type(self).__name__}: checkpoint {prefix}conv_seg emits {weight.shape[0]} "
                              f"channels but label space {self.label_space.name!r} has D={self.bank.dim}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def class_scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """Embedding [B,D,h,w] -> class scores cos(sigmoid(z/T), y_c) [B,C,h,w]."""
        return self.bank.class_scores(self.bank.scores(embedding))

    def predict_by_feat(self, seg_logits: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        """Class scores at head resolution, resized to the (padded) input like mmseg's heads."""
        return super().predict_by_feat(self.class_scores(seg_logits), batch_img_metas)

    def loss_by_feat(self, seg_logits: torch.Tensor, batch_data_samples: Sequence) -> dict:
        """Property loss(es) on the embedding and ``acc_seg`` from the class scores."""
        label = self._stack_batch_gt(batch_data_samples).squeeze(1)
        losses = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        out: dict[str, torch.Tensor] = {}
        for loss in losses:
            value = loss(seg_logits, label, self.bank)
            out[loss.loss_name] = out[loss.loss_name] + value if loss.loss_name in out else value
        with torch.no_grad():
            scores = resize(self.class_scores(seg_logits), label.shape[-2:], mode="bilinear",
                            align_corners=self.align_corners)
            out["acc_seg"] = accuracy(scores, label, ignore_index=self.ignore_index)
        return out


@MODELS.register_module()
class ProLabUPerHead(PropertyHeadMixin, UPerHead):
    """UperNet with the ProLab property classifier. ``label_space``: prolab artifact directory;
    ``temperature`` T; ``normalize_embedding``: L2-normalise e before scoring; optional
    ``num_properties``/``embed_dim`` are checked against the artifact."""

    def __init__(self, label_space: str = "", temperature: float = 0.04, normalize_embedding: bool = False,
                 num_properties: int | None = None, embed_dim: int | None = None, **kwargs: Any):
        kwargs, space, bank = self._property_init("ProLabUPerHead", label_space, temperature, normalize_embedding,
                                     num_properties, embed_dim, kwargs)
        super().__init__(**kwargs)
        self._property_finish(space, bank)


@MODELS.register_module()
class ProLabFCNHead(PropertyHeadMixin, FCNHead):
    """FCN (auxiliary) head with the ProLab property classifier; same arguments as
    :class:`ProLabUPerHead` plus FCNHead's."""

    def __init__(self, label_space: str = "", temperature: float = 0.04, normalize_embedding: bool = False,
                 num_properties: int | None = None, embed_dim: int | None = None, **kwargs: Any):
        kwargs, space, bank = self._property_init("ProLabFCNHead", label_space, temperature, normalize_embedding,
                                     num_properties, embed_dim, kwargs)
        super().__init__(**kwargs)
        self._property_finish(space, bank)


@MODELS.register_module()
class ProLabSegformerHead(PropertyHeadMixin, SegformerHead):
    """SegFormer's all-MLP head with the ProLab property classifier (the head on an mmseg-native
    backbone such as MiT); same arguments as :class:`ProLabUPerHead` plus SegformerHead's."""

    def __init__(self, label_space: str = "", temperature: float = 0.04, normalize_embedding: bool = False,
                 num_properties: int | None = None, embed_dim: int | None = None, **kwargs: Any):
        kwargs, space, bank = self._property_init("ProLabSegformerHead", label_space, temperature,
                                                  normalize_embedding, num_properties, embed_dim, kwargs)
        super().__init__(**kwargs)
        self._property_finish(space, bank)
