"""Pretrained plain-backbone weights (DeiT/ViT/AugReg ``.pth`` as published, BEiT/BEiTv2 ``.pth``,
or timm ``.safetensors``) loaded into a ViT-Adapter / BEiT-Adapter backbone, offline."""

from __future__ import annotations

import math
import os
import re

import torch
from torch import nn
from torch.nn import functional as F

from prolab_cli.errors import ProlabError

from .backbone import BEiTAdapter
from .checkpoint_io import extract_state_dict, read_checkpoint

# classifier heads, final norms and tokens the adapter backbones do not have
_DROP = re.compile(r"^(head|head_dist|fc_norm|norm|pre_logits|dist_token|mask_token|lm_head)(\.|$)")


def resize_pos_embed(pos: torch.Tensor, grid: int, prefix_out: int = 1) -> torch.Tensor:
    """[1, prefix + s*s, D] -> [1, prefix_out + grid*grid, D]: bicubic resize of the patch grid,
    the first prefix token kept for the (unused) cls slot."""
    n = pos.shape[1]
    s = math.isqrt(n)
    prefix = n - s * s
    if s * s + prefix != n or prefix > 2:
        raise ProlabError(f"pos_embed of {n} tokens is not a square grid plus cls/dist tokens")
    patch = pos[:, prefix:]
    if s != grid:
        patch = patch.reshape(1, s, s, -1).permute(0, 3, 1, 2).float()
        patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
    head = pos[:, :prefix_out] if prefix >= prefix_out else pos.new_zeros(1, prefix_out, pos.shape[2])
    return torch.cat([head, patch], dim=1)


def resize_rel_pos_table(table: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """BEiT relative-position bias table [(2s-1)^2 + 3, H] -> the table of ``window`` (bicubic on
    the (2s-1)x(2s-1) offsets grid; the 3 cls entries kept)."""
    n_out = (2 * window[0] - 1) * (2 * window[1] - 1) + 3
    if table.shape[0] == n_out:
        return table
    side = math.isqrt(table.shape[0] - 3)
    if side * side + 3 != table.shape[0]:
        raise ProlabError(f"relative_position_bias_table of {table.shape[0]} rows is not square + 3")
    grid, extra = table[:-3], table[-3:]
    grid = grid.T.reshape(1, -1, side, side).float()
    grid = F.interpolate(grid, size=(2 * window[0] - 1, 2 * window[1] - 1), mode="bicubic",
                         align_corners=False)
    return torch.cat([grid.reshape(table.shape[1], -1).T.to(table.dtype), extra], dim=0)


def adapt_state_dict(sd: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Rename and resize a plain ViT/BEiT state dict to the backbone's names and shapes."""
    is_beit = isinstance(backbone, BEiTAdapter)
    out: dict[str, torch.Tensor] = {}
    shared_rel = None
    for key, value in sd.items():
        for prefix in ("backbone.", "encoder.", "beit."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if _DROP.match(key) or key.endswith("relative_position_index"):
            continue
        if key == "rel_pos_bias.relative_position_bias_table":
            shared_rel = value
            continue
        key = re.sub(r"\.ls([12])\.gamma$", lambda m: f".gamma_{m.group(1)}" if is_beit else f".gamma{m.group(1)}", key)
        if not is_beit:
            key = re.sub(r"\.gamma_([12])$", r".gamma\1", key)
        if key == "cls_token" and not is_beit:
            continue
        if key == "pos_embed":
            if is_beit:
                continue  # BEiT-Adapter uses relative position bias only
            value = resize_pos_embed(value, backbone.pretrain_grid)
        if key.endswith("relative_position_bias_table") and is_beit:
            value = resize_rel_pos_table(value, backbone.window)
        out[key] = value
    if shared_rel is not None and is_beit:
        table = resize_rel_pos_table(shared_rel, backbone.window)
        for i in range(len(backbone.blocks)):
            out.setdefault(f"blocks.{i}.attn.relative_position_bias_table", table)
    return out


def load_pretrained(backbone: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Load plain-backbone weights from a local file into ``backbone``; returns (missing,
    unexpected) keys. The adapter's own parameters are expected to be missing. ProlabError when
    no transformer weight matches or a shape cannot be reconciled."""
    sd = adapt_state_dict(extract_state_dict(read_checkpoint(path), str(path)), backbone)
    own = backbone.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and own[k].shape != v.shape]
    if bad:
        raise ProlabError(f"{path}: shape mismatch for {len(bad)} keys, first: {bad[0]}")
    matched = [k for k in sd if k in own and k.startswith("blocks.")]
    if not matched:
        raise ProlabError(f"{path}: no transformer block weights match this backbone "
                          f"(first keys: {list(sd)[:3]})")
    result = backbone.load_state_dict(sd, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)
