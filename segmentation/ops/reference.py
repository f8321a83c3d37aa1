"""Multi-scale deformable attention in plain PyTorch (``grid_sample``): always available.

Semantics (those of Deformable DETR's MSDeformAttn CUDA op, which ViT-Adapter uses): value [N,S,M,D]
with the L levels flattened, spatial_shapes [L,2] as (H,W), level_start_index [L],
sampling_locations [N,Q,M,L,P,2] as (x,y) in [0,1], attention_weights [N,Q,M,L,P] -> output [N,Q,M*D]. Bilinear sampling, zero padding,
align_corners=False, i.e. exactly ``grid_sample`` on ``2*loc-1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference multi-scale deformable attention (see module docstring for shapes)."""
    N, S, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        v = per_level[level].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        # [N, Q, M, P, 2] -> [N*M, Q, P, 2]
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [N*M, D, Q, L*P] weighted by [N*M, 1, Q, L*P]
    stacked = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Q, L * P)
    out = (stacked * weights).sum(-1).view(N, M * D, Q)
    return out.transpose(1, 2).contiguous()
