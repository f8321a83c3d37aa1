"""AdamW with layer-wise learning-rate decay, and the poly schedule with linear warm-up.

Layer ids (the released ViT-Adapter/BEiT recipe): patch and position embeddings (and the cls
token) get id 0, ViT block i gets id i + 1, everything else (adapter, level embeddings, heads)
gets num_layers + 1. A parameter with id ``l`` has lr scale ``decay ** (num_layers + 1 - l)``.
1-D parameters (norms, biases) and the pos/cls/level embeddings get no weight decay.
"""

from __future__ import annotations

import re

import torch
from torch import nn


_NO_DECAY_NAMES = ("pos_embed", "cls_token", "level_embed", "relative_position_bias_table", "gamma")
_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")


def layer_id(name: str, num_layers: int) -> int:
    """The layer id of parameter ``name`` (see the module docstring)."""
    if name.startswith(("backbone.patch_embed", "backbone.pos_embed", "backbone.cls_token")):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True for 1-D parameters and the embedding tables the recipe exempts."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or leaf in _NO_DECAY_NAMES or name.endswith(_NO_DECAY_NAMES)


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, layer_decay: float, num_layers: int
) -> list[dict]:
    """Optimiser groups, one per (layer id, decay or not), each with ``lr_scale`` for the schedule."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, num_layers)
        exempt = no_weight_decay(name, param)
        key = (lid, exempt)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - lid)
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if exempt else weight_decay,
                "layer_id": lid,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def count_layers(model: nn.Module) -> int:
    """Number of ViT blocks (``backbone.blocks.i``) in ``model``."""
    ids = {int(m.group(1)) for n, _ in model.named_parameters() if (m := _BLOCK.match(n))}
    return max(ids) + 1 if ids else 0


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` from the ``optim`` section of a config."""
    lr, wd, decay = float(cfg["lr"]), float(cfg["weight_decay"]), float(cfg["layer_decay"])
    betas = tuple(float(b) for b in cfg["betas"])  # types checked by config.check_config
    groups = param_groups(model, lr, wd, decay, count_layers(model))
    for g in groups:
        del g["names"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


class PolyWarmup:
    """lr factor at iteration ``it``: linear warm-up from ``warmup_ratio`` over ``warmup_iters``
    (MMCV's: factor (1 - (1 - it / warmup) * (1 - ratio)) applied to the poly lr), then
    ``(base - min_lr) * (1 - it / max_iters) ** power + min_lr``."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, warmup_iters: int = 0,
                 warmup_ratio: float = 1e-6, power: float = 1.0, min_lr: float = 0.0, base_lr: float | None = None):
        self.optimizer = optimizer
        self.max_iters, self.warmup_iters = max_iters, warmup_iters
        self.warmup_ratio, self.power, self.min_lr = warmup_ratio, power, min_lr
        self.base_lr = base_lr if base_lr is not None else optimizer.defaults["lr"]
        self.iteration = 0
        self.step_to(0)

    def lr_at(self, it: int) -> float:
        """The unscaled learning rate at iteration ``it``."""
        progress = min(it, self.max_iters) / max(self.max_iters, 1)
        lr = (self.base_lr - self.min_lr) * (1 - progress) ** self.power + self.min_lr
        if it < self.warmup_iters:
            lr *= 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        return lr

    def step_to(self, it: int) -> None:
        """Set every group's lr for iteration ``it`` (times its layer-decay ``lr_scale``)."""
        self.iteration = it
        lr = self.lr_at(it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def state_dict(self) -> dict:
        """What a checkpoint keeps."""
        return {k: getattr(self, k) for k in ("iteration", "max_iters", "warmup_iters", "warmup_ratio", "power", "min_lr", "base_lr")}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        for key, value in state.items():
            setattr(self, key, value)
        self.step_to(self.iteration)
