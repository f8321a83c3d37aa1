"""The encoder-decoder segmentor (mmseg's EncoderDecoder layout: ``backbone``, ``decode_head``,
``auxiliary_head``) with either a one-hot class head or the ProLab property head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prolab_cli.errors import ProlabError

from .layers import resize
from .property_head import PropertyBank, cross_entropy_loss


class Segmentor(nn.Module):
    """Backbone -> UperNet (+ FCN auxiliary head while training).

    With ``bank`` (a :class:`PropertyBank`) the heads emit D-dim embeddings scored against
    property centres; without it they emit class logits.
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head: nn.Module | None,
                 bank: PropertyBank | None = None, aux_weight: float = 0.4, loss: str = "cosine",
                 config: Any = None):
        super().__init__()
        if loss not in ("cosine", "bce"):
            raise ProlabError(f"unknown property loss {loss!r} (use 'cosine' or 'bce')")
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.bank = bank
        self.aux_weight = float(aux_weight)
        self.loss_kind = loss
        self.config = config

    @property
    def is_property_head(self) -> bool:
        return self.bank is not None

    @property
    def num_classes(self) -> int:
        return self.bank.num_classes if self.bank is not None else self.decode_head.out_channels

    def extract_feat(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features f1..f4 at strides 4, 8, 16, 32."""
        return self.backbone(img)

    def head_output(self, img: torch.Tensor) -> torch.Tensor:
        """Decode-head output at 1/4 resolution: class logits, or the pixel embedding e."""
        return self.decode_head(self.extract_feat(img))

    def encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        """Class scores [B,C,H,W] at the input size (logits, or cos(p, y_c) for the property
        head; computed at head resolution, then resized bilinearly; no softmax)."""
        out = self.head_output(img)
        if self.bank is not None:
            out = self.bank.class_scores(self.bank.scores(out))
        return resize(out, img.shape[-2:])

    def forward(self, img: torch.Tensor, label: torch.Tensor | None = None):
        """:meth:`encode_decode` without a label, :meth:`forward_train` with one (so a DDP wrapper's
        ``__call__`` can run the training step and synchronise gradients)."""
        return self.encode_decode(img) if label is None else self.forward_train(img, label)

    def property_scores(self, img: torch.Tensor, resize_to_input: bool = True) -> torch.Tensor:
        """Property scores sigmoid(z/T) [B,K,H,W]: z resized to the input size before the
        sigmoid, or at head resolution with ``resize_to_input=False``."""
        if self.bank is None:
            raise ProlabError("property_scores needs a model built with class_rows and centres")
        e = self.head_output(img)
        if not resize_to_input:
            return self.bank.scores(e)
        return torch.sigmoid(self.bank.logits_at(e, img.shape[-2:]) / self.bank.temperature)

    def scores_with_properties(self, img: torch.Tensor) -> torch.Tensor:
        """:meth:`encode_decode` and :meth:`property_scores` from one head pass, concatenated
        along channels: [B, C + K, H, W]."""
        if self.bank is None:
            raise ProlabError("scores_with_properties needs a model built with class_rows and centres")
        e = self.head_output(img)
        classes = resize(self.bank.class_scores(self.bank.scores(e)), img.shape[-2:])
        props = torch.sigmoid(self.bank.logits_at(e, img.shape[-2:]) / self.bank.temperature)
        return torch.cat([classes, props], dim=1)

    def forward_train(self, img: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted losses {"decode.loss", "aux.loss"} for images [B,3,H,W] and labels [B,H,W]
        (255 = ignore); the auxiliary loss is multiplied by ``aux_weight``."""
        if label.ndim == 4 and label.shape[1] == 1:
            label = label[:, 0]
        if label.ndim != 3 or label.shape[0] != img.shape[0]:
            raise ProlabError(f"label must be [B,H,W] matching img {tuple(img.shape)}, got {tuple(label.shape)}")
        label = label.long()
        feats = self.extract_feat(img)
        losses = {"decode.loss": self._loss(self.decode_head(feats), label)}
        if self.auxiliary_head is not None and self.aux_weight > 0:
            losses["aux.loss"] = self.aux_weight * self._loss(self.auxiliary_head(feats), label)
        return losses

    def _loss(self, out: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.bank is not None:
            return self.bank.loss(out, label, self.loss_kind)
        return cross_entropy_loss(out, label)

    def set_class_rows(self, rows: Any) -> None:
        """Swap the class rows [C', K] over the same centres (inference on other classes)."""
        if self.bank is None:
            raise ProlabError("set_class_rows needs a model built with class_rows and centres")
        self.bank.set_class_rows(rows)
