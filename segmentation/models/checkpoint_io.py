"""Reading state dicts from the files people have (mmseg/DeiT/BEiT ``.pth``, safetensors) without
unpickling arbitrary objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from prolab_cli.errors import ProlabError

_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state")


def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes, which mmcv checkpoints carry in ``meta`` (e.g. best scores);
    listed under both their numpy 2 and numpy 1 pickle names."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    out: list = [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    out += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")]
    return out


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` in one line for an error message: its type and the first line of its text (the
    "Unsupported global" line when torch names one), or only its type when the text is empty."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else "")
    return f"{type(exc).__name__}: {line[:limit]}" if line else type(exc).__name__


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    """Load a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file as a dict. Torch files are read
    with ``weights_only=True`` (tensors, containers, numpy scalars) unless ``trust_pickle`` (runs
    arbitrary pickled code: only for files from a trusted source); ProlabError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ProlabError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # safetensors raises several types
            raise ProlabError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        hint = "" if trust_pickle else "; if you trust its source, retry with --trust-pickle"
        raise ProlabError(f"{path}: cannot be read as a weights-only torch checkpoint ({error_line(exc)}){hint}") from None
    if not isinstance(obj, dict):
        raise ProlabError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def extract_state_dict(ckpt: dict[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (``state_dict``/``model``/... or the dict itself), with
    DataParallel/DDP ``module.`` prefixes removed."""
    sd = ckpt
    for key in _CONTAINER_KEYS:
        if isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ProlabError(f"{where}: no tensors found (looked in {', '.join(_CONTAINER_KEYS)})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in tensors.items()}
