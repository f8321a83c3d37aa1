"""The segmentation stack's one door to label-space artifacts.

Every ``segmentation`` module that needs a label space (training, evaluation, prediction, conversion,
the MMSeg plugin, synthetic data) imports it from here, and no other ``segmentation`` module imports
the label-space library (:mod:`prolab_cli.artifact`, :mod:`prolab_cli.interop`); the rest of
``segmentation`` uses only the base utilities (errors, atomic, paths, progress, classes).
``tests/test_layering.py`` holds that rule.
"""

from __future__ import annotations

import os
from pathlib import Path

from prolab_cli.artifact import LabelSpace, array_hash, resolve_artifact_path

__all__ = ["LabelSpace", "array_hash", "label_space_from_bank", "load_label_space", "read_released_bank",
           "resolve_artifact_path"]


def load_label_space(path: str | os.PathLike | None) -> LabelSpace | None:
    """The verified LabelSpace artifact at ``path`` (a directory, or a shipped artifact's bare name), or None."""
    if path is None:
        return None
    return LabelSpace.load(path)


def read_released_bank(path: str | Path, trust_pickle: bool = False) -> dict:
    """A ProLab embedding-bank ``.pth`` as released with the paper's checkpoints (weights-only unless trusted)."""
    from prolab_cli.interop import load_bank

    return load_bank(path, trust_pickle)


def label_space_from_bank(bank: dict, name: str, key: str | None = None, classes: list[str] | None = None,
                          source: str = "bank") -> LabelSpace:
    """The LabelSpace held by entry ``key`` of a released bank (see :func:`prolab_cli.interop.bank_to_label_space`)."""
    from prolab_cli.interop import bank_to_label_space

    return bank_to_label_space(bank, name, key=key, classes=classes, source=source)
