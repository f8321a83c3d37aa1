"""A stand-in for ``mmcv._ext`` (the compiled ops of full mmcv) when only mmcv-lite is installed.

mmseg 1.x imports ``mmcv.ops`` while importing its models and datasets; with mmcv-lite that import
fails on the missing extension although none of the ops the plugin uses is compiled. The stand-in
lets the imports succeed; calling a compiled op raises a clear error. It is installed only when no
real ``mmcv._ext`` can be found, never over a full mmcv.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

STANDIN_NAME = "mmcv._ext"


class _StandinExt(types.ModuleType):
    """Any public attribute is a function that raises: the op needs full mmcv."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing_op(*args, **kwargs):
            raise RuntimeError(f"mmcv op {name!r} is compiled code that mmcv-lite lacks; install full "
                               "mmcv (mmcv>=2.0,<2.2) to use it")

        missing_op.__name__ = name
        return missing_op


def full_mmcv_available() -> bool:
    """True when a real compiled ``mmcv._ext`` is importable (full mmcv)."""
    module = sys.modules.get(STANDIN_NAME)
    if module is not None:
        return not isinstance(module, _StandinExt)
    try:
        return importlib.util.find_spec(STANDIN_NAME) is not None
    except (ImportError, ValueError):
        return False


def install_standin() -> bool:
    """Put the stand-in into ``sys.modules`` unless full mmcv is there; True when installed now
    or earlier. ``__spec__`` is set (with no loader, so mmengine's ``mmcv_full_available()`` stays
    False instead of raising)."""
    if isinstance(sys.modules.get(STANDIN_NAME), _StandinExt):
        return True
    if full_mmcv_available():
        return False
    module = _StandinExt(STANDIN_NAME, "prolab stand-in for the compiled ops of full mmcv")
    module.__spec__ = importlib.machinery.ModuleSpec(STANDIN_NAME, None)
    sys.modules[STANDIN_NAME] = module
    import mmcv

    mmcv._ext = module
    return True
