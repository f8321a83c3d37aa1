"""The one registry of named segmentation models (the published ViT-Adapter / BEiT-Adapter + UperNet
hyper-parameters) and :func:`build_model`, the one way train, eval, predict, convert, the benchmarks and
the tests build a segmentor (the MMSeg plugin builds its modules from MMSeg configs through mmseg's own
registries instead). ``prolab models`` lists the registry.

Every registered model has the state-dict key layout of the mmseg 0.x ViT-Adapter / ProLab releases
(``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``), so one ``state_dict`` format serves prolab
checkpoints and converted releases alike.
"""

from __future__ import annotations

from contextlib import nullcontext
import difflib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import logging

import torch

from prolab_cli.errors import ProlabError

from .backbone import BEiTAdapter, ViTAdapter
from .fcn import FCNHead
from .property_head import PropertyBank, as_float_tensor
from .segmentor import Segmentor
from .uper import UPerHead

log = logging.getLogger("prolab.models")

_STAGES_12 = ((0, 2), (3, 5), (6, 8), (9, 11))
_STAGES_24 = ((0, 5), (6, 11), (12, 17), (18, 23))


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the architecture (and so the state-dict keys and shapes)."""

    backbone: str = "vit"               # "vit" (ViT/DeiT/AugReg) or "beit" (BEiT/BEiTv2)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    pretrain_size: int = 224            # ViT: grid of the stored pos_embed (resized on the fly)
    img_size: int = 512                 # BEiT: the fixed input size of the relative position bias
    drop_path_rate: float = 0.3
    conv_inplane: int = 64
    n_points: int = 4
    deform_num_heads: int = 12
    init_values: float = 0.0            # injector gamma (and BEiT layer scale) initial value
    cffn_ratio: float = 0.25
    deform_ratio: float = 0.5
    interaction_indexes: tuple = _STAGES_12
    decode_channels: int = 512
    aux_channels: int = 256
    aux_in_index: int = 2
    pool_scales: tuple = (1, 2, 3, 6)
    dropout_ratio: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown fields are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ProlabError(f"model config: unknown fields {unknown}")
        d = dict(d)
        for key in ("interaction_indexes", "pool_scales"):
            if key in d:
                d[key] = tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in d[key])
        return cls(**d)


#: registered model name -> its architecture
MODELS: dict[str, ModelConfig] = {
    # tiny model for tests and CPU demos (64x64..128x128 inputs)
    "vit-adapter-nano": ModelConfig(embed_dim=96, depth=4, num_heads=3, drop_path_rate=0.0,
                                    conv_inplane=16, deform_num_heads=3, deform_ratio=1.0,
                                    interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
                                    decode_channels=64, aux_channels=32),
    "vit-adapter-t": ModelConfig(embed_dim=192, depth=12, num_heads=3, drop_path_rate=0.1,
                                 deform_num_heads=6, deform_ratio=1.0),
    "vit-adapter-s": ModelConfig(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.2,
                                 deform_num_heads=6, deform_ratio=1.0),
    "vit-adapter-b": ModelConfig(),
    "vit-adapter-l": ModelConfig(embed_dim=1024, depth=24, num_heads=16, pretrain_size=384,
                                 drop_path_rate=0.4, deform_num_heads=16,
                                 interaction_indexes=_STAGES_24),
    "beit-adapter-l": ModelConfig(backbone="beit", embed_dim=1024, depth=24, num_heads=16,
                                  img_size=640, drop_path_rate=0.3, deform_num_heads=16,
                                  init_values=1e-6, interaction_indexes=_STAGES_24,
                                  decode_channels=1024),
    "beitv2-adapter-l": ModelConfig(backbone="beit", embed_dim=1024, depth=24, num_heads=16,
                                    img_size=896, drop_path_rate=0.3, deform_num_heads=16,
                                    init_values=1e-6, interaction_indexes=_STAGES_24,
                                    decode_channels=1024),
}


#: the checkpoint key layouts each registered model loads: "prolab" (`prolab train` / `prolab convert`
#: output) and, for the sizes ViT-Adapter / ProLab released, "mmseg 0.x release" (read by `prolab convert`;
#: tests/test_model.py checks the released key lists of vit-adapter-t, vit-adapter-b and beit-adapter-l)
CHECKPOINT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "vit-adapter-nano": ("prolab",),
    "vit-adapter-t": ("prolab", "mmseg 0.x release"),
    "vit-adapter-s": ("prolab", "mmseg 0.x release"),
    "vit-adapter-b": ("prolab", "mmseg 0.x release"),
    "vit-adapter-l": ("prolab", "mmseg 0.x release"),
    "beit-adapter-l": ("prolab", "mmseg 0.x release"),
    "beitv2-adapter-l": ("prolab", "mmseg 0.x release"),
}


def model_config(name: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """The architecture of registered model ``name`` (or a config itself), with the non-None
    ``overrides`` (ModelConfig fields) applied; an unknown name or field is a one-line error."""
    if isinstance(name, ModelConfig):
        cfg = name
    elif name in MODELS:
        cfg = MODELS[name]
    else:
        raise ProlabError(f"unknown model {name!r}{_nearest(str(name), MODELS)} (known: {', '.join(MODELS)})")
    known = {f.name for f in fields(ModelConfig)}
    for key in overrides:
        if key not in known:
            raise ProlabError(f"model override {key!r} is not a model setting{_nearest(key, known)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _nearest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parameter_count(name: str | ModelConfig, num_classes: int = 150) -> int:
    """Parameters of model ``name`` with a ``num_classes`` one-hot head, counted on the meta device
    (no memory is allocated, so even the large models count in a moment)."""
    return sum(p.numel() for p in build_model(name, num_classes=num_classes, device="meta").parameters())


def build_backbone(cfg: ModelConfig, with_cp: bool = False, sync_bn: bool | None = None):
    """The ViT-Adapter / BEiT-Adapter backbone of ``cfg``."""
    common = dict(embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                  mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
                  conv_inplane=cfg.conv_inplane, n_points=cfg.n_points,
                  deform_num_heads=cfg.deform_num_heads, init_values=cfg.init_values,
                  cffn_ratio=cfg.cffn_ratio, deform_ratio=cfg.deform_ratio,
                  interaction_indexes=cfg.interaction_indexes, with_cp=with_cp, sync_bn=sync_bn)
    if cfg.backbone == "vit":
        return ViTAdapter(pretrain_size=cfg.pretrain_size, **common)
    if cfg.backbone == "beit":
        return BEiTAdapter(img_size=cfg.img_size, **common)
    raise ProlabError(f"model config: unknown backbone {cfg.backbone!r} (use 'vit' or 'beit')")


def build_model(name: str | ModelConfig = "vit-adapter-b", *, num_classes: int | None = None,
                class_rows: Any = None, centres: Any = None, temperature: float = 0.04,
                normalize_embedding: bool = False, bank_basis: str = "embedding", loss: str = "cosine",
                aux_weight: float = 0.4, with_cp: bool = False, pretrained: str | None = None, sync_bn: bool | None = None,
                device: str | torch.device | None = None, **overrides: Any) -> Segmentor:
    """Build registered model ``name`` (or a :class:`ModelConfig`): ViT-Adapter + UperNet + FCN auxiliary head.

    One-hot head: give ``num_classes``. Property head: give ``class_rows`` [C,K] and ``centres``
    [K,D] (the heads then emit D-dim embeddings, or K-dim ones with ``bank_basis="span"``:
    :class:`~.property_head.PropertyBank`). ``overrides`` are ModelConfig fields (``img_size``,
    ``drop_path_rate``, ...; None leaves the registered value). ``pretrained`` is a local DeiT/BEiT
    ``.pth`` or timm ``.safetensors`` for the plain backbone. ``device="meta"`` builds without
    allocating memory (for key/shape checks).
    """
    cfg = model_config(name, **overrides)
    with torch.device(device) if device is not None else nullcontext():
        property_bank = None
        if class_rows is not None or centres is not None:
            if class_rows is None or centres is None:
                raise ProlabError("the property head needs both class_rows and centres")
            class_rows, centres = as_float_tensor(class_rows, "class_rows"), as_float_tensor(centres, "centres")
            if num_classes is not None and num_classes != class_rows.shape[0]:
                raise ProlabError(f"num_classes={num_classes} but class_rows has {class_rows.shape[0]} rows")
            property_bank = PropertyBank(class_rows, centres, temperature, normalize_embedding, bank_basis)
            out_channels = property_bank.dim
        elif num_classes is None or num_classes < 1:
            raise ProlabError("give num_classes (one-hot head) or class_rows and centres (property head)")
        else:
            out_channels = num_classes
        backbone = build_backbone(cfg, with_cp, sync_bn)
        width = cfg.embed_dim
        decode = UPerHead([width] * 4, cfg.decode_channels, out_channels, cfg.pool_scales,
                          cfg.dropout_ratio, sync_bn)
        aux = FCNHead(width, cfg.aux_channels, out_channels, cfg.aux_in_index,
                      dropout_ratio=cfg.dropout_ratio, sync_bn=sync_bn)
        model = Segmentor(backbone, decode, aux, property_bank, aux_weight, loss, cfg)
    if pretrained is not None:
        from .pretrained import load_pretrained

        missing, unexpected = load_pretrained(model.backbone, pretrained)
        model.pretrained_report = {"path": str(pretrained), "missing": missing, "unexpected": unexpected}
        log.info("loaded %s: %d backbone keys left at init (adapter), %d unexpected %s", pretrained,
                 len(missing), len(unexpected), unexpected[:5])
    return model
