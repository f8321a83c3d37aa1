"""ViT-Adapter and BEiT-Adapter backbones: a plain ViT/BEiT plus the adapter, returning four
normalised feature maps at strides 4, 8, 16 and 32."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from prolab_cli.errors import ProlabError
from segmentation.ops import MSDeformAttn

from .adapter import InteractionBlock, SpatialPriorModule, deform_inputs
from .beit import BEiTEncoder
from .layers import batch_norm
from .vit import ViTEncoder


def _init_adapter_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d, nn.SyncBatchNorm)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class AdapterMixin:
    """The adapter half shared by ViT-Adapter and BEiT-Adapter (mixed into the encoder class so
    that parameter names are those of the released checkpoints)."""

    def _init_adapter(self, conv_inplane: int, n_points: int, deform_num_heads: int,
                      init_values: float, cffn_ratio: float, deform_ratio: float,
                      interaction_indexes: Sequence[Sequence[int]], with_cffn: bool = True,
                      add_vit_feature: bool = True, drop_rate: float = 0.0, with_cp: bool = False,
                      sync_bn: bool | None = None) -> None:
        dim = self.embed_dim
        self.interaction_indexes = [list(ix) for ix in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim, sync_bn)
        n = len(self.interaction_indexes)
        self.interactions = nn.Sequential(*[
            InteractionBlock(dim, deform_num_heads, n_points, deform_ratio, init_values, with_cffn,
                             cffn_ratio, drop_rate, self.drop_path_rate, i == n - 1, with_cp)
            for i in range(n)])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        for i in range(1, 5):
            setattr(self, f"norm{i}", batch_norm(dim, sync_bn))
        for part in (self.up, self.spm, self.interactions):
            part.apply(_init_adapter_weights)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image [B,3,H,W] (H, W multiples of 32) -> [f1, f2, f3, f4] at strides 4, 8, 16, 32."""
        B, _, h, w = x.shape
        if h % 32 or w % 32:
            raise ProlabError(f"input size {h}x{w} is not a multiple of 32 (ViT-Adapter needs it)")
        inj, ext = deform_inputs(h, w, x.device)
        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], 1)
        x, cls, H, W = self.embed(x)
        shapes = [(2 * H, 2 * W), (H, W), (H // 2, W // 2)]
        dim = x.shape[-1]
        outs = []
        for layer, (first, last) in zip(self.interactions, self.interaction_indexes):
            x, c, cls = layer(x, c, self.blocks[first:last + 1], inj, ext, shapes, cls)
            outs.append(x.transpose(1, 2).reshape(B, dim, H, W))
        c2, c3, c4 = (t.transpose(1, 2).reshape(B, dim, hh, ww)
                      for t, (hh, ww) in zip(c.split([a * b for a, b in shapes], 1), shapes))
        c1 = self.up(c2) + c1
        feats = [c1, c2, c3, c4]
        if self.add_vit_feature:
            scales = (4, 2, 1, 0.5)
            feats = [f + (o if s == 1 else F.interpolate(o, scale_factor=s, mode="bilinear",
                                                          align_corners=False))
                     for f, o, s in zip(feats, outs, scales)]
        return [self.norm1(feats[0]), self.norm2(feats[1]), self.norm3(feats[2]), self.norm4(feats[3])]


class ViTAdapter(AdapterMixin, ViTEncoder):
    """ViT-Adapter on a plain ViT/DeiT (``backbone.*`` keys of the released checkpoints)."""

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, pretrain_size: int = 224, drop_path_rate: float = 0.3,
                 conv_inplane: int = 64, n_points: int = 4, deform_num_heads: int = 12,
                 init_values: float = 0.0, cffn_ratio: float = 0.25, deform_ratio: float = 0.5,
                 interaction_indexes: Sequence[Sequence[int]] = ((0, 2), (3, 5), (6, 8), (9, 11)),
                 with_cp: bool = False, sync_bn: bool | None = None):
        ViTEncoder.__init__(self, embed_dim, depth, num_heads, mlp_ratio, pretrain_size=pretrain_size,
                            drop_path_rate=drop_path_rate, with_cp=with_cp)
        self._init_adapter(conv_inplane, n_points, deform_num_heads, init_values, cffn_ratio,
                           deform_ratio, interaction_indexes, with_cp=with_cp, sync_bn=sync_bn)


class BEiTAdapter(AdapterMixin, BEiTEncoder):
    """ViT-Adapter on BEiT / BEiTv2 (relative position bias; input size fixed to ``img_size``)."""

    def __init__(self, img_size: int = 640, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, drop_path_rate: float = 0.3,
                 conv_inplane: int = 64, n_points: int = 4, deform_num_heads: int = 16,
                 init_values: float = 1e-6, cffn_ratio: float = 0.25, deform_ratio: float = 0.5,
                 interaction_indexes: Sequence[Sequence[int]] = ((0, 5), (6, 11), (12, 17), (18, 23)),
                 with_cp: bool = False, sync_bn: bool | None = None):
        BEiTEncoder.__init__(self, img_size, embed_dim, depth, num_heads, mlp_ratio,
                             drop_path_rate=drop_path_rate, init_values=init_values, with_cp=with_cp)
        self._init_adapter(conv_inplane, n_points, deform_num_heads, init_values, cffn_ratio,
                           deform_ratio, interaction_indexes, with_cp=with_cp, sync_bn=sync_bn)
