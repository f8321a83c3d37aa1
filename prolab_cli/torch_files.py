"""The one ``torch.load`` of prolab: a ``.pth`` read on the CPU without running pickled code.

Checkpoints (prolab's and released mmseg ones) and ProLab's embedding banks are all read here, with
``weights_only=True`` (tensors, containers, numpy scalars and dtypes) unless the caller passes
``trust_pickle`` for a file from a trusted source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from .errors import MissingDependencyError, ProlabError, exception_line


def _multiarray():
    import numpy as np

    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes, which mmcv checkpoints carry in ``meta`` (e.g. best scores);
    listed under both their numpy 2 and numpy 1 pickle names."""
    import numpy as np

    scalar = _multiarray().scalar
    out: list = [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    out += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")]
    return out


def numpy_array_globals() -> list:
    """What a pickled numpy array needs under ``weights_only`` (mmengine checkpoints hold some):
    ``ndarray`` and its reconstructor, under both its numpy 2 and numpy 1 pickle names."""
    import numpy as np

    reconstruct = _multiarray()._reconstruct
    return [np.ndarray, reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct")]


def load_torch_file(path: str | os.PathLike, failure: str, trust_pickle: bool = False,
                    allowed_globals: Iterable = (), offer_trust: bool = True) -> Any:
    """``torch.load(path)`` on the CPU, weights-only unless ``trust_pickle``; ``allowed_globals`` adds
    to the numpy types always allowed. Any failure is one :class:`ProlabError`:
    ``"{path}: {failure} ({exception})"``, with a ``--trust-pickle`` hint (when ``offer_trust``) if the
    file was refused only for holding more than tensors."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"reading {path} needs torch: pip install 'prolab[seg]'", "seg") from None
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals() + list(allowed_globals)):
            return torch.load(Path(path), map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        refused = "Weights only load failed" in str(exc)
        hint = ("; it holds more than tensors: if you trust its source, retry with trust_pickle"
                if refused and offer_trust and not trust_pickle else "")
        raise ProlabError(f"{path}: {failure} ({exception_line(exc, 200)}){hint}") from None
