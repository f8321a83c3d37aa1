"""Reading state dicts from the files people have (mmseg/DeiT/BEiT ``.pth``, safetensors) without
unpickling arbitrary objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from prolab_cli.errors import ProlabError
from prolab_cli.torch_files import load_torch_file

_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state")


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
    failure = "cannot be read as a torch checkpoint" if trust_pickle else "cannot be read as a weights-only torch checkpoint"
    obj = load_torch_file(path, failure, trust_pickle)
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
