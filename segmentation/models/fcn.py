"""FCN auxiliary head (mmseg 0.x ``FCNHead``, no input concat) on one backbone level."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base_head import BaseHead
from .layers import ConvModule


class FCNHead(BaseHead):
    """``num_convs`` 3x3 ConvModules on ``inputs[in_index]`` then ``conv_seg``."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, in_index: int = 2,
                 num_convs: int = 1, kernel_size: int = 3, dropout_ratio: float = 0.1,
                 sync_bn: bool | None = None):
        super().__init__(channels, out_channels, dropout_ratio)
        self.in_index = in_index
        self.convs = nn.Sequential(*[
            ConvModule(in_channels if i == 0 else channels, channels, kernel_size, kernel_size // 2, sync_bn)
            for i in range(num_convs)])

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))
