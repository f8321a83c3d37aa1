"""Reading and writing the safetensors files that pass data between stages (embeddings, clusters)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import write_bytes
from .errors import ProlabError


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (raises ValueError on a bad header)."""
    if len(data) < 8:
        raise ValueError("file too short")
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return header.get("__metadata__", {}) or {}


def read_stage_file(path: str | os.PathLike, fmt: str, version: str, what: str
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a stage file, checked to be of format ``fmt`` at ``version``.

    ``what`` names the kind of file in errors ("embeddings", "clusters").
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        meta = safetensors_metadata(data)
    except FileNotFoundError:
        raise ProlabError(f"{path}: no such file") from None
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise ProlabError(f"{path}: not a safetensors file ({e})") from None
    if meta.get("format") != fmt:
        raise ProlabError(f"{path}: not a prolab {what} file (format {meta.get('format')!r})")
    if meta.get("format_version") != version:
        raise ProlabError(f"{path}: {what} format_version {meta.get('format_version')!r} is not supported")
    return tensors, meta


def write_stage_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], fmt: str, version: str,
                     metadata: dict[str, str]) -> Path:
    """Write ``tensors`` and ``metadata`` atomically as a stage file of format ``fmt`` at ``version``.

    safetensors writes the metadata map in a random order, so the header is written again with
    sorted keys: the same tensors and metadata always give the same bytes (the pipeline keys the
    next stage on them).
    """
    from safetensors.numpy import save

    data = save(tensors, metadata={"format": fmt, "format_version": version, **metadata})
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header_bytes = header.encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # safetensors pads the header to 8 bytes
    return write_bytes(path, len(header_bytes).to_bytes(8, "little") + header_bytes + data[8 + size :])
