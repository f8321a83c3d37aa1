"""Dataset pieces mmseg lacks: a folder dataset whose classes come from a class-list file or a
prolab label-space artifact (prolab's ``generic`` layout and ``prolab data synth`` output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from prolab_cli.errors import ProlabError


def read_class_file(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ProlabError(f"{path}: class list not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ProlabError(f"{path}: no class names")
    return names


@DATASETS.register_module()
class ProLabFolderDataset(BaseSegDataset):
    """``img_dir``/``ann_dir`` folders of images and train-id PNG masks (255 = ignore). Classes
    from ``classes_file`` (relative to ``data_root``), or ``label_space`` (an artifact), or
    ``metainfo=dict(classes=...)``."""

    def __init__(self, classes_file: str | None = None, label_space: str | None = None,
                 img_suffix: str = ".png", seg_map_suffix: str = ".png", **kwargs: Any):
        names = None
        if classes_file is not None:
            root = kwargs.get("data_root") or ""
            names = read_class_file(Path(root) / classes_file)
        elif label_space is not None:
            from segmentation.label_space import load_label_space

            names = list(load_label_space(label_space).classes)
        if names is not None:
            kwargs["metainfo"] = {**(kwargs.get("metainfo") or {}), "classes": tuple(names)}
        if not (kwargs.get("metainfo") or {}).get("classes"):
            raise ProlabError("ProLabFolderDataset: give classes_file, label_space or metainfo.classes")
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
