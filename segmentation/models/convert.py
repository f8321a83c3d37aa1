"""Converting released mmseg 0.x checkpoints (ViT-Adapter / ProLab) into prolab checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from prolab_cli.errors import ProlabError

from .checkpoint_io import extract_state_dict, read_checkpoint
from .presets import PRESETS, ModelConfig, build_segmentor

_MMSEG_META_KEYS = ("CLASSES", "mmcv_version", "mmseg_version", "iter", "epoch", "time")


@dataclass
class ConvertReport:
    """What ``convert_checkpoint`` did: the model it built and the keys it could not place."""

    output: Path
    preset: str | None
    config: ModelConfig
    head: str
    classes: list[str]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        name = self.preset or "custom config"
        out = [f"wrote {self.output} ({name}, {self.head} head, {len(self.classes)} classes)",
               f"filled {len(self.filled)} relative_position_index buffers from the model" if self.filled else None,
               f"missing keys ({len(self.missing)}): {', '.join(self.missing)}" if self.missing else "missing keys: none",
               f"unexpected keys ({len(self.unexpected)}, dropped): {', '.join(self.unexpected)}"
               if self.unexpected else "unexpected keys: none"]
        return [line for line in out if line]


def _plain_meta(meta: dict) -> dict:
    """The informative mmseg meta fields as plain Python values (numpy scalars would make our
    checkpoint unreadable with ``weights_only=True``)."""
    out: dict[str, Any] = {}
    for key in _MMSEG_META_KEYS:
        value = meta.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int, float)):
            out[key] = value if isinstance(value, str) else (int(value) if isinstance(value, int) else float(value))
        elif hasattr(value, "item") and getattr(value, "shape", None) == ():
            out[key] = value.item()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = [str(v) for v in value]
    return out


class _MMEngineRecord:
    """Stands in for the mmengine objects an MMSeg 1.x checkpoint pickles (the message hub's
    HistoryBuffer records), so its weights read without mmengine and without trusting pickle."""


def _mmengine_record_getattr(obj: Any, name: str) -> Any:
    if obj is _MMEngineRecord and name in ("min", "max", "current", "mean"):
        return name  # a HistoryBuffer statistics method; convert needs only the weights
    raise ProlabError(f"checkpoint asks for getattr({type(obj).__name__}, {name!r}); not allowed")


def _mmseg1_globals() -> list:
    """What torch.load(weights_only=True) needs for an MMSeg 1.x (mmengine) checkpoint."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [(_MMEngineRecord, "mmengine.logging.history_buffer.HistoryBuffer"),
            (_mmengine_record_getattr, "builtins.getattr"), np.ndarray, multiarray._reconstruct,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("relative_position_index")}


def _fit_beit_window(cfg: ModelConfig, sd: dict[str, torch.Tensor], patch_size: int = 16) -> ModelConfig:
    """A BEiT ``cfg`` with the input size whose window gives the state dict's relative-position
    table ((2w-1)^2 + 3 rows); other configs, or a state dict without the table, unchanged."""
    table = sd.get("backbone.blocks.0.attn.relative_position_bias_table")
    if cfg.backbone != "beit" or table is None:
        return cfg
    return replace(cfg, img_size=(int(round((table.shape[0] - 3) ** 0.5)) + 1) // 2 * patch_size)


def _head_channels(sd: dict[str, torch.Tensor], where: str) -> int:
    w = sd.get("decode_head.conv_seg.weight")
    if w is None:
        raise ProlabError(f"{where}: no decode_head.conv_seg.weight (not a UperNet segmentor checkpoint)")
    return int(w.shape[0])


def infer_config(sd: dict[str, torch.Tensor], where: str = "checkpoint") -> tuple[str, ModelConfig]:
    """The preset whose keys and shapes equal the state dict's (BEiT window size read from the
    relative position table)."""
    is_beit = "backbone.blocks.0.attn.relative_position_bias_table" in sd
    out = _head_channels(sd, where)
    want = _shapes(sd)
    for name, cfg in PRESETS.items():
        if is_beit != (cfg.backbone == "beit"):
            continue
        cfg = _fit_beit_window(cfg, sd)
        model = build_segmentor(cfg, num_classes=out, device="meta")
        if _shapes(model.state_dict()) == want:
            return name, cfg
    raise ProlabError(f"{where}: keys/shapes match no preset ({', '.join(PRESETS)}); give --preset")


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, preset: str | ModelConfig | None = None,
                       label_space: str | os.PathLike | None = None, classes: list[str] | None = None,
                       temperature: float = 0.04, normalize_embedding: bool = False,
                       allow_missing: bool = False, trust_pickle: bool = False) -> ConvertReport:
    """Load an mmseg 0.x or 1.x ``.pth`` (``state_dict``/``meta``, optional ``module.`` prefixes, BEiT
    ``relative_position_index`` buffers possibly absent) into our model and write a prolab
    checkpoint (``segmentation.engine.checkpoint`` format). A label space makes it a property-head
    model (its D must equal the head's output channels). Missing keys are an error unless
    ``allow_missing``; unexpected keys are reported and dropped. ``trust_pickle`` allows
    unpickling arbitrary objects (trusted files only)."""
    from segmentation.engine.checkpoint import bank_of, make_meta, save_checkpoint

    where = str(src)
    with torch.serialization.safe_globals(_mmseg1_globals()):
        ckpt = read_checkpoint(src, trust_pickle)
    sd = extract_state_dict(ckpt, where)
    mmseg_meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    out_channels = _head_channels(sd, where)
    if preset is None:
        preset_name, cfg = infer_config(sd, where)
    elif isinstance(preset, ModelConfig):
        preset_name, cfg = None, preset
    else:
        preset_name, cfg = preset, PRESETS.get(preset)
        if cfg is None:
            raise ProlabError(f"unknown model preset {preset!r} (known: {', '.join(PRESETS)})")
        cfg = _fit_beit_window(cfg, sd)

    space = None
    kwargs: dict[str, Any] = {}
    if label_space is not None:
        from prolab_cli.artifact import LabelSpace

        space = LabelSpace.load(label_space)
        if space.dim != out_channels:
            raise ProlabError(f"{where}: decode_head.conv_seg emits {out_channels} channels but label "
                              f"space {space.name!r} has D={space.dim}")
        head, names = "property", list(space.classes)
        kwargs = {"temperature": temperature, "normalize_embedding": normalize_embedding}
        model = build_segmentor(cfg, class_rows=space.multi_hot, centres=space.centres, **kwargs)
    else:
        head = "onehot"
        mmseg1_classes = (mmseg_meta.get("dataset_meta") or {}).get("classes")  # MMSeg 1.x
        names = list(classes) if classes else [str(c) for c in (mmseg_meta.get("CLASSES") or mmseg1_classes or [])]
        if not names:
            names = [f"class_{i}" for i in range(out_channels)]
        if len(names) != out_channels:
            raise ProlabError(f"{where}: {len(names)} class names for a head with {out_channels} outputs "
                              "(a ProLab embedding head? give --label-space)")
        model = build_segmentor(cfg, num_classes=out_channels)

    own = model.state_dict()
    filled = [k for k in own if k.endswith("relative_position_index") and k not in sd]
    sd = dict(sd)
    for k in filled:
        sd[k] = own[k]
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ProlabError(f"{where}: {len(bad)} shapes differ from the model, first: {bad[0]}")
    result = model.load_state_dict(sd, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing and not allow_missing:
        raise ProlabError(f"{where}: {len(missing)} model keys missing from the checkpoint, first: "
                          f"{missing[:3]} (use --allow-missing to keep their fresh initialisation)")

    if cfg.backbone == "beit":
        kwargs["img_size"] = cfg.img_size
    meta = make_meta(preset_name or "custom", kwargs, head, names, space)
    meta["model_config"] = cfg.to_dict()
    meta["source"] = {"path": str(Path(src).resolve()), "missing": missing, "unexpected": unexpected,
                      **_plain_meta(mmseg_meta)}
    payload: dict[str, Any] = {"state_dict": model.state_dict(), "meta": meta}
    if space is not None:
        payload["bank"] = bank_of(space)
    path = save_checkpoint(dst, payload)
    return ConvertReport(path, preset_name, cfg, head, names, missing, unexpected, filled)
