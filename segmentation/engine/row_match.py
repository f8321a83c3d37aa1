"""Which paper row (``segmentation.zoo``) a released checkpoint is: from its keys and shapes, its label
space (K, classes) and what mmseg wrote in its ``meta`` (CLASSES, config file name, dataset type)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from prolab_cli.errors import ProlabError

from ..models.registry import build_model, model_config
from .config import load_config

#: the first evidence of a row the caller named (rather than one inferred)
NAMED = "named by the caller"

#: words in a config name / dataset type / data root -> dataset
_DATASET_WORDS = (
    ("ade20k", re.compile(r"ade20k|adechallenge|(^|[^a-z])ade([^a-z]|$)")),
    ("coco-stuff", re.compile(r"coco.?stuff")),
    ("pascal-context-59", re.compile(r"pascal.?context")),
    ("cityscapes", re.compile(r"cityscapes")),
    ("bdd100k", re.compile(r"bdd")),
)


@dataclass
class RowMatch:
    """The row a checkpoint was found to be, and the evidence used."""

    row: Any                    # segmentation.zoo.Row
    evidence: list[str] = field(default_factory=list)
    inferred: bool = True       # False: named by the caller (and checked)


def state_shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """{key: shape} of a state dict, without the BEiT relative_position_index buffers (rebuilt from the model)."""
    return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("relative_position_index")}


def row_architecture(row_id: str) -> tuple[str, Any]:
    """(registered model name, ModelConfig) of a row's training config."""
    model = load_config(row_id)["model"]
    return model["preset"], model_config(model["preset"], img_size=model.get("img_size"))


@lru_cache(maxsize=8)
def _arch_shapes(cfg: Any, out_channels: int) -> tuple:
    model = build_model(cfg, num_classes=out_channels, device="meta")
    return tuple(sorted(state_shapes(model.state_dict()).items()))


def fits_keys(row: Any, sd: dict[str, torch.Tensor]) -> bool:
    """Whether the state dict has exactly the keys and shapes of ``row``'s model (its heads emitting
    the label space's D channels; class rows and centres are not in a state dict)."""
    _, cfg = row_architecture(row.id)
    head, patch = sd.get("decode_head.conv_seg.weight"), sd.get("backbone.patch_embed.proj.weight")
    if head is None or patch is None or tuple(head.shape[:2]) != (row.embed_dim, cfg.decode_channels) \
            or patch.shape[0] != cfg.embed_dim:
        return False  # decided without building the model
    return tuple(sorted(state_shapes(sd).items())) == _arch_shapes(cfg, row.embed_dim)


def dataset_hints(meta: dict) -> set[str]:
    """Datasets named by an mmseg checkpoint's meta: the config file name (``exp_name``) and the
    config text's ``dataset_type`` / ``data_root``. Empty when nothing (or something ambiguous) is there."""
    sources = [str(meta.get("exp_name") or "")]
    config = str(meta.get("config") or "")
    for key in ("dataset_type", "data_root"):
        m = re.search(rf"^{key}\s*=\s*['\"]([^'\"]+)['\"]", config, re.M)
        if m:
            sources.append(m.group(1))
    found: set[str] = set()
    for text in sources:
        named = {name for name, pattern in _DATASET_WORDS if pattern.search(text.lower())}
        if len(named) == 1:
            found |= named
    return found if len(found) == 1 else set()


def _evidence_filters(space: Any, meta: dict, bank_entries: dict[str, tuple[int, int]] | None = None,
                      bank_key: str | None = None) -> list[tuple[str, Any]]:
    """(description, predicate on a row) for every piece of evidence besides the keys."""
    filters: list[tuple[str, Any]] = []
    if bank_entries is not None:
        shapes = [bank_entries[bank_key]] if bank_key in bank_entries else list(bank_entries.values())
        what = f"bank entry {bank_key}" if bank_key in bank_entries else "bank entries"
        filters.append((f"{what} (K, classes) {', '.join(map(str, shapes)) or 'none'}",
                        lambda r: (r.num_properties, r.num_classes) in shapes))
    if space is not None:
        filters.append((f"label space {space.name!r} K={space.num_properties}, {space.num_classes} classes",
                        lambda r: r.num_properties == space.num_properties and r.num_classes == space.num_classes))
    names = meta.get("CLASSES")
    if names:
        filters.append((f"meta.CLASSES ({len(names)} classes)", lambda r: r.num_classes == len(names)))
    hints = dataset_hints(meta)
    if hints:
        (hint,) = hints
        filters.append((f"mmseg meta names dataset {hint}", lambda r: r.dataset == hint))
    return filters


def match_row(sd: dict[str, torch.Tensor], where: str, row_id: str | None = None, space: Any = None,
              meta: dict | None = None, bank_entries: dict[str, tuple[int, int]] | None = None,
              bank_key: str | None = None) -> RowMatch | None:
    """The paper row of a checkpoint.

    With ``row_id`` that row is checked against every piece of evidence (keys and shapes, label space
    K and class count, a bank's entries ``{key: (K, C)}``, mmseg meta) and any contradiction is an error. Without it the rows the evidence
    allows are listed: one is the answer, several are an error naming them, none means the checkpoint
    is no paper row (None).
    """
    from segmentation.zoo import ROWS, get_row

    meta = meta or {}
    if bank_key is not None and bank_entries is not None and bank_key not in bank_entries:
        raise ProlabError(f"bank has no entry {bank_key!r} (entries: {', '.join(sorted(bank_entries)) or 'none'})")
    filters = _evidence_filters(space, meta, bank_entries, bank_key)
    if row_id is not None:
        row = get_row(row_id)
        if not fits_keys(row, sd):
            fitting = [r.id for r in ROWS.values() if fits_keys(r, sd)]
            raise ProlabError(f"{where}: keys/shapes do not fit row {row.id} ({describe_rows_model(row)}); "
                              f"rows they fit: {', '.join(fitting) or 'none'}")
        for what, ok in filters:
            if not ok(row):
                raise ProlabError(f"{where}: {what} contradicts row {row.id} (K={row.num_properties}, "
                                  f"{row.num_classes} classes, dataset {row.dataset})")
        return RowMatch(row, [NAMED, "keys and shapes fit", *(w for w, _ in filters)], inferred=False)

    candidates = [r for r in ROWS.values() if fits_keys(r, sd)]
    if not candidates:
        return None
    evidence = [f"keys and shapes fit {', '.join(r.id for r in candidates)}"]
    for what, ok in filters:
        candidates = [r for r in candidates if ok(r)]
        evidence.append(what)
    if not candidates:
        return None
    if len(candidates) > 1:
        raise ProlabError(f"{where}: ambiguous, the checkpoint fits rows {', '.join(r.id for r in candidates)}; "
                          f"name one with convert.row")
    return RowMatch(candidates[0], evidence)


def describe_rows_model(row: Any) -> str:
    """``model at img_size, D outputs`` of a row, for messages."""
    model, cfg = row_architecture(row.id)
    return f"{model}, img_size {cfg.img_size}, heads emitting {row.embed_dim} channels"
