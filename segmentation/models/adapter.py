"""ViT-Adapter modules: spatial prior module, injector, extractor (with ConvFFN) and the
interaction block that wraps one stage of ViT blocks (names as in the released checkpoints)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from segmentation.ops import MSDeformAttn

from .layers import DropPath, batch_norm

Shapes = Sequence[tuple[int, int]]


def reference_points(shapes: Shapes, device: torch.device) -> torch.Tensor:
    """Pixel-centre reference points (x, y) in [0, 1] of the given grids: [1, sum(h*w), 1, 2].

    Computed in float32 like the original, whatever the model's dtype."""
    refs = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                                indexing="ij")
        refs.append(torch.stack((xs.reshape(-1)[None] / w, ys.reshape(-1)[None] / h), -1))
    return torch.cat(refs, 1)[:, :, None]


def _level_inputs(shapes: Shapes, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    spatial = torch.as_tensor(list(shapes), dtype=torch.long, device=device)
    start = torch.cat((spatial.new_zeros((1,)), spatial.prod(1).cumsum(0)[:-1]))
    return spatial, start


def deform_inputs(h: int, w: int, device: torch.device) -> tuple[list, list]:
    """Arguments of the injector (ViT tokens query the 1/8, 1/16, 1/32 maps) and of the extractor
    (the three maps' tokens query the 1/16 ViT grid): [reference points, shapes, level starts]."""
    pyramid = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
    vit_grid = [(h // 16, w // 16)]
    inj = [reference_points(vit_grid, device), *_level_inputs(pyramid, device)]
    ext = [reference_points(pyramid, device), *_level_inputs(vit_grid, device)]
    return inj, ext


def _conv_bn_relu(cin: int, cout: int, stride: int, sync_bn: bool | None) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            batch_norm(cout, sync_bn), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Conv stem giving c1..c4 at strides 4, 8, 16, 32, each projected to the ViT width;
    c2..c4 are returned as tokens [B, h*w, D]."""

    def __init__(self, inplanes: int = 64, embed_dim: int = 768, sync_bn: bool | None = None):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, inplanes, 2, sync_bn),
                                  *_conv_bn_relu(inplanes, inplanes, 1, sync_bn),
                                  *_conv_bn_relu(inplanes, inplanes, 1, sync_bn),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2, sync_bn))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2, sync_bn))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2, sync_bn))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return (self.fc1(c1), *tokens)


class DWConv(nn.Module):
    """3x3 depth-wise conv applied to each level of a token pyramid separately (shared weight)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        B, _, C = x.shape
        parts = x.split([h * w for h, w in shapes], dim=1)
        out = [self.dwconv(p.transpose(1, 2).reshape(B, C, h, w)).flatten(2).transpose(1, 2)
               for p, (h, w) in zip(parts, shapes)]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depth-wise conv -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), shapes)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """ViT tokens attend to the spatial-prior pyramid: x + gamma * attn(norm x, norm c)."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, n_levels: int = 3,
                 deform_ratio: float = 1.0, init_values: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, deform_ratio)
        self.with_cp = with_cp

    def _forward(self, query, feat, ref, spatial, start):
        out = self.attn(self.query_norm(query), ref, self.feat_norm(feat), spatial, start)
        return query + self.gamma * out

    def forward(self, query: torch.Tensor, feat: torch.Tensor, ref: torch.Tensor,
                spatial: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        if self.with_cp and query.requires_grad:
            return checkpoint(self._forward, query, feat, ref, spatial, start, use_reentrant=False)
        return self._forward(query, feat, ref, spatial, start)


class Extractor(nn.Module):
    """Pyramid tokens attend to the ViT tokens, then a ConvFFN: c += attn(norm c, norm x);
    c += drop_path(ffn(norm c))."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, n_levels: int = 1,
                 deform_ratio: float = 1.0, with_cffn: bool = True, cffn_ratio: float = 0.25,
                 drop: float = 0.0, drop_path: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, deform_ratio)
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop)
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        else:
            self.ffn = self.ffn_norm = None
        self.drop_path = DropPath(drop_path)
        self.with_cp = with_cp

    def _forward(self, query, feat, ref, spatial, start, shapes):
        query = query + self.attn(self.query_norm(query), ref, self.feat_norm(feat), spatial, start)
        if self.ffn is not None:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), shapes))
        return query

    def forward(self, query: torch.Tensor, feat: torch.Tensor, ref: torch.Tensor,
                spatial: torch.Tensor, start: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        if self.with_cp and query.requires_grad:
            return checkpoint(self._forward, query, feat, ref, spatial, start, shapes,
                              use_reentrant=False)
        return self._forward(query, feat, ref, spatial, start, shapes)


class InteractionBlock(nn.Module):
    """injector -> this stage's ViT blocks -> extractor (-> extra extractors on the last stage).
    A cls token, when given, joins the tokens only inside the ViT blocks (BEiT-Adapter)."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, deform_ratio: float = 1.0,
                 init_values: float = 0.0, with_cffn: bool = True, cffn_ratio: float = 0.25,
                 drop: float = 0.0, drop_path: float = 0.0, extra_extractor: bool = False,
                 with_cp: bool = False):
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, 3, deform_ratio, init_values, with_cp)

        def extractor() -> Extractor:
            return Extractor(dim, num_heads, n_points, 1, deform_ratio, with_cffn, cffn_ratio, drop,
                             drop_path, with_cp)

        self.extractor = extractor()
        self.extra_extractors = nn.Sequential(extractor(), extractor()) if extra_extractor else None

    def forward(self, x: torch.Tensor, c: torch.Tensor, blocks: Sequence[nn.Module], inj: list,
                ext: list, shapes: Shapes, cls: torch.Tensor | None = None):
        """Returns (x, c, cls) after one stage."""
        x = self.injector(x, c, *inj)
        if cls is not None:
            x = torch.cat((cls, x), dim=1)
        for blk in blocks:
            x = blk(x)
        if cls is not None:
            cls, x = x[:, :1], x[:, 1:]
        for extractor in [self.extractor, *(self.extra_extractors or [])]:
            c = extractor(c, x, *ext, shapes)
        return x, c, cls
