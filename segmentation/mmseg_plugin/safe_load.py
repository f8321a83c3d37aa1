"""The torch.load allow-list for mmengine checkpoints.

mmengine 0.10.7 reads checkpoints with a plain ``torch.load`` (no ``weights_only``), so on
torch >= 2.6 the default ``weights_only=True`` refuses what a Runner checkpoint holds besides
tensors: the ``message_hub``'s ``HistoryBuffer`` records (numpy arrays and scalars inside, and
``getattr(HistoryBuffer, 'mean')``-style references to its statistics methods). This adds exactly
those globals, with ``getattr`` replaced by one that resolves only those methods, and only while
mmengine reads a local checkpoint (its local-file loader is wrapped), so the protection stays on for
everything else and for every other ``torch.load``.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from prolab_cli.torch_files import numpy_array_globals


def _numpy_core():
    return np._core if hasattr(np, "_core") else np.core


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for unpickling: only ``HistoryBuffer.<statistics method>``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({getattr(obj, '__name__', type(obj).__name__)}, "
                                 f"{name!r}), which the prolab allow-list does not permit")


def mmengine_checkpoint_globals() -> list:
    """The globals a checkpoint written by mmengine's Runner (CheckpointHook, ``--resume``) needs
    beyond tensors and plain containers (numpy 1 names listed beside numpy 2's)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    scalar = _numpy_core().multiarray.scalar
    # BUILD on a numpy dtype instance checks its class (numpy.dtypes.Float64DType, ...)
    dtype_classes = [type(np.dtype(c)) for c in ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                                  "f2", "f4", "f8")]
    return [HistoryBuffer, *numpy_array_globals(), np.dtype, *dtype_classes,
            scalar, (scalar, "numpy.core.multiarray.scalar"),
            (history_buffer_getattr, "builtins.getattr")]


@contextmanager
def mmengine_safe_globals() -> Iterator[list]:
    """``torch.load`` inside this block accepts mmengine checkpoints (weights-only, with
    :func:`mmengine_checkpoint_globals`); the allow-list is removed again on exit."""
    allowed = mmengine_checkpoint_globals()
    with torch.serialization.safe_globals(allowed):
        yield allowed


_WRAPPED_MARK = "_prolab_allow_list"


def install_allow_list() -> bool:
    """Wrap mmengine's local-file checkpoint loader (``load_from``, ``--resume``, tools/test.py)
    so that it reads inside :func:`mmengine_safe_globals`; idempotent. True when wrapped now."""
    from mmengine.runner.checkpoint import CheckpointLoader

    original = CheckpointLoader._schemes[""]
    if getattr(original, _WRAPPED_MARK, False):
        return False

    def load_from_local(filename, map_location):
        with mmengine_safe_globals():
            return original(filename, map_location)

    setattr(load_from_local, _WRAPPED_MARK, True)
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
    return True
