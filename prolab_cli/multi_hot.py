"""Facts about a class x property multi-hot matrix that clustering, building and the artifact share."""

from __future__ import annotations

import numpy as np


def collision_groups(classes: list[str], multi_hot: np.ndarray) -> list[list[str]]:
    """Groups (size >= 2) of classes whose multi-hot rows are identical, in class order."""
    groups: dict[bytes, list[str]] = {}
    for name, row in zip(classes, np.asarray(multi_hot)):
        groups.setdefault(np.asarray(row, dtype=np.uint8).tobytes(), []).append(name)
    return [g for g in groups.values() if len(g) > 1]
