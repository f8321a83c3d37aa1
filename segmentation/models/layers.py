"""Small layers shared by the backbones and heads: DropPath, Mlp, ConvModule, norms, resize."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


def batch_norm(channels: int, sync: bool | None = None) -> nn.Module:
    """SyncBatchNorm when a process group is initialised (or ``sync=True``), BatchNorm2d otherwise."""
    if sync is None:
        sync = dist.is_available() and dist.is_initialized()
    return nn.SyncBatchNorm(channels) if sync else nn.BatchNorm2d(channels)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=False`` (mmseg's ``resize``); a no-op at equal size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Transformer MLP: fc1 -> GELU (erf) -> fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LayerScaleBlock(nn.Module):
    """Pre-norm transformer block with optional layer scale and gradient checkpointing:
    x += drop_path(g1 * attn(norm1 x)); x += drop_path(g2 * mlp(norm2 x)).

    ``gamma_names`` names the two layer-scale parameters, which the released checkpoints spell
    differently (ViT-Adapter ``gamma1``, BEiT ``gamma_1``); ``init_value`` None or <= 0 means none.
    """

    def __init__(self, dim: int, attn: nn.Module, gamma_names: tuple[str, str], init_value: float | None,
                 mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.gamma_names = gamma_names
        # registration order = state_dict key order of the released checkpoints
        for name in gamma_names:
            setattr(self, name, nn.Parameter(init_value * torch.ones(dim)) if init_value and init_value > 0 else None)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        g1, g2 = (getattr(self, name) for name in self.gamma_names)
        a = self.attn(self.norm1(x))
        x = x + self.drop_path(a if g1 is None else g1 * a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path(m if g2 is None else g2 * m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class ConvModule(nn.Module):
    """mmcv's ConvModule as used by mmseg heads: conv (no bias) -> BN -> ReLU, keys ``conv``/``bn``."""

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0,
                 sync_bn: bool | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=False)
        self.bn = batch_norm(cout, sync_bn)
        self.activate = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate per block, rising linearly from 0 to ``rate``."""
    return [x.item() for x in torch.linspace(0, rate, depth, device="cpu")]


def init_transformer_weights(module: nn.Module) -> None:
    """timm-style init: truncated normal (std 0.02) linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
