"""The ProLab property losses as mmseg loss modules (``loss_decode=dict(type=...)``).

They take the head's D-dim pixel embedding and the label map, and compute prolab's own
:meth:`segmentation.models.property_head.PropertyBank.loss` (mean over valid pixels, label 255
ignored), so both engines train on the same number.
"""

from __future__ import annotations

import torch
from torch import nn

from mmseg.registry import MODELS

from segmentation.models.property_head import PropertyBank


@MODELS.register_module()
class PropertyCosineLoss(nn.Module):
    """``loss_weight`` * mean over valid pixels of 1 - cos(sigmoid(z/T), y_label)."""

    kind = "cosine"

    def __init__(self, loss_weight: float = 1.0, loss_name: str = "loss_prop"):
        super().__init__()
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """The key of this loss in the losses dict (mmseg logs keys starting with ``loss``)."""
        return self._loss_name

    def forward(self, embedding: torch.Tensor, label: torch.Tensor, bank: PropertyBank) -> torch.Tensor:
        """Embedding [B,D,h,w] (any resolution), label [B,H,W] -> scalar loss."""
        return self.loss_weight * bank.loss(embedding, label.long(), self.kind)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, loss_name={self._loss_name!r}"


@MODELS.register_module()
class PropertyBCELoss(PropertyCosineLoss):
    """The paper's ablation: binary cross-entropy between sigmoid(z/T) and y_label."""

    kind = "bce"

    def __init__(self, loss_weight: float = 1.0, loss_name: str = "loss_prop_bce"):
        super().__init__(loss_weight, loss_name)
