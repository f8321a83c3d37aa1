"""What every decode head ends with (mmseg's BaseDecodeHead): Dropout2d then a 1x1 ``conv_seg``
emitting class logits (one-hot head) or a D-dim pixel embedding (property head)."""

from __future__ import annotations

import torch
from torch import nn


class BaseHead(nn.Module):
    """Holds ``conv_seg`` (registered first, as in mmseg, so key order matches) and the dropout."""

    def __init__(self, channels: int, out_channels: int, dropout_ratio: float = 0.1):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels
        self.conv_seg = nn.Conv2d(channels, out_channels, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout then the final 1x1 conv."""
        return self.conv_seg(self.dropout(x))
