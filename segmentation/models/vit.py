"""Plain ViT / DeiT pieces (names as in ViT-Adapter's checkpoints): patch embedding, blocks with
layer scale (``gamma1``/``gamma2``) and the learned position embedding resized on the fly."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import LayerScaleBlock, drop_path_rates, init_transformer_weights


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens [B, H*W, D] (row-major)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return x.flatten(2).transpose(1, 2), h, w


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class Block(LayerScaleBlock):
    """Pre-norm transformer block with layer scale ``gamma1``/``gamma2`` (initialised to 1)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale: bool = True, with_cp: bool = False):
        super().__init__(dim, Attention(dim, num_heads, qkv_bias, attn_drop, drop), ("gamma1", "gamma2"),
                         1.0 if layer_scale else None, mlp_ratio, drop, drop_path, with_cp)


class ViTEncoder(nn.Module):
    """The plain-ViT part of ViT-Adapter: ``pos_embed`` (with an unused cls slot, at the
    pre-training grid), ``patch_embed`` and ``blocks``; no cls token, no final norm."""

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_size: int = 16,
                 pretrain_size: int = 224, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, layer_scale: bool = True, with_cp: bool = False):
        super().__init__()
        self.embed_dim, self.patch_size = embed_dim, patch_size
        self.pretrain_grid = pretrain_size // patch_size
        self.drop_path_rate = drop_path_rate
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid ** 2 + 1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dp,
                  layer_scale, with_cp)
            for dp in drop_path_rates(drop_path_rate, depth))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks.apply(init_transformer_weights)

    def pos_embed_for(self, h: int, w: int) -> torch.Tensor:
        """The position embedding (cls slot dropped) bicubic-resized to an h x w grid: [1, h*w, D]."""
        g = self.pretrain_grid
        pos = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.reshape(1, -1, h * w).permute(0, 2, 1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """Image -> (tokens + position embedding, cls token (None), H, W)."""
        tokens, h, w = self.patch_embed(x)
        return self.pos_drop(tokens + self.pos_embed_for(h, w)), None, h, w
