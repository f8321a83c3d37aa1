"""Label maps in class ids: their element type and the id that marks "ignore", decided by the class count.

Up to 255 classes a label map is uint8 and 255 means ignore (MMSegmentation's convention, which
every training path keeps). Above that (ADE20K-847, Pascal Context-459) a label map is int32 and the
ignore id is 65535, the value the open-vocabulary benchmarks write into their uint16 TIFFs, so no
class id ever wraps round or lands on the ignore id.
"""

from __future__ import annotations

import numpy as np

from prolab_cli.errors import ProlabError

IGNORE_INDEX = 255
WIDE_IGNORE_INDEX = 65535
#: the most classes a uint8 label map holds besides its ignore id
NARROW_MAX_CLASSES = 255


def is_wide(num_classes: int) -> bool:
    """Whether label maps over ``num_classes`` classes need more than uint8."""
    if num_classes >= WIDE_IGNORE_INDEX:
        raise ProlabError(f"{num_classes} classes: at most {WIDE_IGNORE_INDEX - 1} fit a label map")
    return num_classes > NARROW_MAX_CLASSES


def ignore_index_for(num_classes: int) -> int:
    """The ignore id of label maps over ``num_classes`` classes: 255, or 65535 above 255 classes."""
    return WIDE_IGNORE_INDEX if is_wide(num_classes) else IGNORE_INDEX


def label_dtype_for(num_classes: int) -> np.dtype:
    """The element type of label maps over ``num_classes`` classes: uint8, or int32 above 255 classes."""
    return np.dtype(np.int32) if is_wide(num_classes) else np.dtype(np.uint8)


def ignore_index_of(label: np.ndarray) -> int:
    """The ignore id of a label map made by :func:`label_dtype_for`: 255 for uint8, else 65535."""
    return IGNORE_INDEX if label.dtype == np.uint8 else WIDE_IGNORE_INDEX
