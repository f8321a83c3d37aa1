"""prolab's ViT-Adapter and BEiT-Adapter registered as mmseg backbones.

They are prolab's own classes (same parameter names, so ``backbone.*`` keys of prolab and
released checkpoints load as they are) and run prolab's deformable-attention op, never mmcv's, so
they work on CPU and CUDA with mmcv-lite or full mmcv.
"""

from __future__ import annotations

from typing import Any

from mmseg.registry import MODELS

from prolab_cli.errors import ProlabError
from segmentation.models import backbone as prolab_backbone
from segmentation.models.registry import MODELS as PROLAB_MODELS
from segmentation.models.registry import ModelConfig

_BACKBONE_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "drop_path_rate", "conv_inplane",
                    "n_points", "deform_num_heads", "init_values", "cffn_ratio", "deform_ratio",
                    "interaction_indexes")


def registered_kwargs(arch: str | None, kind: str) -> dict[str, Any]:
    """The constructor arguments of registered prolab model ``arch`` (e.g. ``vit-adapter-b``;
    :data:`segmentation.models.MODELS`) for a backbone of ``kind`` ("vit" or "beit"); {} without one."""
    if arch is None:
        return {}
    cfg: ModelConfig | None = PROLAB_MODELS.get(arch)
    if cfg is None:
        raise ProlabError(f"backbone arch {arch!r} is not a registered prolab model (known: {', '.join(PROLAB_MODELS)})")
    if cfg.backbone != kind:
        raise ProlabError(f"backbone arch {arch!r} is a {cfg.backbone} model, not a {kind} one")
    out = {name: getattr(cfg, name) for name in _BACKBONE_FIELDS}
    out["pretrain_size" if kind == "vit" else "img_size"] = cfg.pretrain_size if kind == "vit" else cfg.img_size
    return out


class _PretrainedMixin:
    """``pretrained``: a local DeiT/BEiT ``.pth`` or timm ``.safetensors`` loaded into the plain
    ViT part by ``init_weights`` (which mmengine's Runner calls once after building)."""

    def _set_pretrained(self, pretrained: str | None) -> None:
        self.pretrained = pretrained
        self.pretrained_report: dict | None = None

    def init_weights(self) -> None:
        if self.pretrained:
            from segmentation.models.pretrained import load_pretrained

            missing, unexpected = load_pretrained(self, self.pretrained)
            self.pretrained_report = {"path": self.pretrained, "missing": missing, "unexpected": unexpected}


@MODELS.register_module(name="ViTAdapter")
class MMSegViTAdapter(_PretrainedMixin, prolab_backbone.ViTAdapter):
    """ViT-Adapter (T/S/B/L or any width): ``arch`` names a registered prolab model (``vit-adapter-t``,
    ``-s``, ``-b``, ``-l``, ``-nano``); explicit keyword arguments override it."""

    def __init__(self, arch: str | None = "vit-adapter-b", pretrained: str | None = None,
                 init_cfg: Any = None, **kwargs: Any):
        if init_cfg is not None:
            raise ProlabError("ViTAdapter: use pretrained=<file> instead of init_cfg")
        super().__init__(**{**registered_kwargs(arch, "vit"), **kwargs})
        self._set_pretrained(pretrained)


@MODELS.register_module(name="BEiTAdapter")
class MMSegBEiTAdapter(_PretrainedMixin, prolab_backbone.BEiTAdapter):
    """BEiT/BEiTv2-Adapter-L (``arch`` ``beit-adapter-l`` or ``beitv2-adapter-l``; ``img_size``
    is the crop the relative position bias is built for)."""

    def __init__(self, arch: str | None = "beit-adapter-l", pretrained: str | None = None,
                 init_cfg: Any = None, **kwargs: Any):
        if init_cfg is not None:
            raise ProlabError("BEiTAdapter: use pretrained=<file> instead of init_cfg")
        super().__init__(**{**registered_kwargs(arch, "beit"), **kwargs})
        self._set_pretrained(pretrained)
