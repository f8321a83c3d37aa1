"""BEiT / BEiTv2 pieces (names as in BEiT-Adapter's checkpoints): attention with separate q/v
biases and a per-block relative position bias over a fixed window, layer scale ``gamma_1/2``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from prolab_cli.errors import ProlabError

from .layers import LayerScaleBlock, drop_path_rates, init_transformer_weights
from .vit import PatchEmbed


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """BEiT's [(Wh*Ww+1), (Wh*Ww+1)] index into the bias table; the last 3 entries of the table
    are cls->token, token->cls and cls->cls."""
    wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    n = (2 * wh - 1) * (2 * ww - 1) + 3
    index = torch.zeros((wh * ww + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = n - 3
    index[0:, 0] = n - 2
    index[0, 0] = n - 1
    return index


class RelPosAttention(nn.Module):
    """Self-attention with a bias-free ``qkv`` plus ``q_bias``/``v_bias`` (k has none) and a
    learned relative position bias for a ``window`` of patches plus one cls token."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads, self.window = num_heads, window
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        n = (2 * window[0] - 1) * (2 * window[1] - 1) + 3
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        n_pos = self.window[0] * self.window[1] + 1
        if N != n_pos:
            raise ProlabError(f"BEiT attention built for {n_pos} tokens (window {self.window} + cls), "
                             f"got {N}: the input size must equal the model's img_size")
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        rel = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        rel = rel.view(N, N, -1).permute(2, 0, 1).unsqueeze(0).to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=rel,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class BEiTBlock(LayerScaleBlock):
    """BEiT block: relative-position attention, layer scale ``gamma_1``/``gamma_2`` at ``init_values``."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, init_values: float | None = 1e-6, with_cp: bool = False):
        super().__init__(dim, RelPosAttention(dim, num_heads, window, qkv_bias, attn_drop, drop),
                         ("gamma_1", "gamma_2"), init_values, mlp_ratio, drop, drop_path, with_cp)


class BEiTEncoder(nn.Module):
    """The BEiT part of BEiT-Adapter: ``cls_token``, ``patch_embed``, ``blocks`` with per-block
    relative position bias for ``img_size // patch_size`` windows; no absolute position embedding."""

    def __init__(self, img_size: int = 640, embed_dim: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 patch_size: int = 16, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, init_values: float | None = 1e-6,
                 with_cp: bool = False):
        super().__init__()
        self.embed_dim, self.patch_size = embed_dim, patch_size
        self.window = (img_size // patch_size, img_size // patch_size)
        self.drop_path_rate = drop_path_rate
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(
            BEiTBlock(embed_dim, num_heads, self.window, mlp_ratio, qkv_bias, drop_rate,
                      attn_drop_rate, dp, init_values, with_cp)
            for dp in drop_path_rates(drop_path_rate, depth))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for blk in self.blocks:
            for m in (blk.norm1, blk.norm2, blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                init_transformer_weights(m)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """Image -> (patch tokens, cls token [B,1,D], H, W)."""
        tokens, h, w = self.patch_embed(x)
        return self.pos_drop(tokens), self.cls_token.expand(tokens.shape[0], -1, -1), h, w
