"""UperNet decode head (mmseg 0.x ``UPerHead``): pyramid pooling on the last level plus an FPN."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base_head import BaseHead
from .layers import ConvModule, resize


class PPM(nn.ModuleList):
    """Pyramid pooling: adaptive average pool to each scale, 1x1 ConvModule, resize back."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int,
                 sync_bn: bool | None = None):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1, sync_bn=sync_bn))
                         for s in pool_scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(m(x), x.shape[2:]) for m in self]


class UPerHead(BaseHead):
    """Inputs f1..f4 -> [B, out_channels, H/4, W/4]."""

    def __init__(self, in_channels: Sequence[int], channels: int, out_channels: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout_ratio: float = 0.1,
                 sync_bn: bool | None = None):
        super().__init__(channels, out_channels, dropout_ratio)
        in_channels = list(in_channels)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels, sync_bn)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, 1, sync_bn)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1, sync_bn=sync_bn) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, 1, sync_bn) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, 1, sync_bn)

    def features(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The fused FPN features before dropout and ``conv_seg``: [B, channels, H/4, W/4]."""
        top = inputs[-1]
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        size = outs[0].shape[2:]
        return self.fpn_bottleneck(torch.cat([resize(o, size) for o in outs], dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.features(inputs))
