"""Segmentation datasets in their users' folder layouts: finding samples, reading and checking masks.

Every bad input (missing folder, image without its mask, mask of another size than its image,
label out of range, unreadable file) raises :class:`InputError` naming the file, unless the
dataset was opened with ``skip_bad=True``: then all samples are checked up front and the bad ones
are left out and counted (``dataset.skipped``).
"""

from __future__ import annotations

import struct
import zlib

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from prolab_cli.classes import load_classes, reconcile_class_names
from prolab_cli.errors import InputError, ProlabError
from prolab_cli.progress import track

from ..labels import IGNORE_INDEX, ignore_index_for, label_dtype_for
from .layouts import SPLITS, Layout, get_layout

__all__ = ["IGNORE_INDEX", "Sample", "SegDataset", "class_lookup", "find_samples", "index_seed", "read_image",
           "read_mask", "reduce_zero_label", "resolve_classes"]


@dataclass(frozen=True)
class Sample:
    """One image and its label map."""

    image: Path
    mask: Path
    name: str


def resolve_classes(layout: Layout, root: Path, classes: str | Path | None = None) -> list[str]:
    """The dataset's class list: ``classes`` when given, else ``<root>/classes.txt`` when the data
    root carries one (synthetic and generic datasets), else the layout's built-in list. A layout with
    a ``class_count`` (the open-vocabulary sets) takes ``classes`` or its built-in list, of exactly
    that length."""
    if layout.class_count is not None:
        source = classes if classes is not None else layout.classes
        names = load_classes(Path(source) if Path(str(source)).exists() else str(source))
        if len(names) != layout.class_count:
            raise ProlabError(f"{classes}: {len(names)} classes, but the {layout.name} layout has {layout.class_count}")
        return names
    if classes is not None:
        return load_classes(Path(classes) if Path(str(classes)).exists() else str(classes))
    own = root / "classes.txt"
    if own.is_file():
        return load_classes(own)
    if layout.classes is None:
        raise ProlabError(f"{own}: the {layout.name} layout needs a class list (classes.txt or the classes setting)")
    return load_classes(layout.classes)


def find_samples(layout: Layout, root: Path, split: str) -> tuple[list[Sample], list[Path]]:
    """(samples, images without a mask) of ``split`` under ``root``, sorted by image path."""
    if split not in SPLITS:
        raise ProlabError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split not in layout.img_dirs:
        raise ProlabError(f"the {layout.name} layout has no {split} split (only {', '.join(layout.img_dirs)}: "
                          "it is an evaluation set)")
    if not root.is_dir():
        raise ProlabError(f"{root}: data root not found")
    img_dir = root / layout.img_dirs[split]
    ann_dir = root / layout.ann_dirs[split]
    for folder in (img_dir, ann_dir):
        if not folder.is_dir():
            raise ProlabError(f"{folder}: folder not found (expected the {layout.name} layout: {layout.description})")
    if split in layout.split_files:
        images = _images_from_split_file(root / layout.split_files[split], img_dir, layout)
    else:
        pattern = "**/*" if layout.recursive else "*"
        images = sorted(
            p for p in img_dir.glob(pattern) if p.is_file() and p.name.endswith(layout.img_suffixes)
        )
    samples: list[Sample] = []
    orphans: list[Path] = []
    for image in images:
        suffix = next(s for s in layout.img_suffixes if image.name.endswith(s))
        rel = image.relative_to(img_dir)
        stem = str(rel)[: -len(suffix)]
        mask = ann_dir / (stem + layout.seg_suffix)
        if mask.is_file():
            samples.append(Sample(image, mask, stem))
        else:
            orphans.append(image)
    return samples, orphans


def _images_from_split_file(split_file: Path, img_dir: Path, layout: Layout) -> list[Path]:
    if not split_file.is_file():
        raise ProlabError(f"{split_file}: split file not found")
    images = []
    for number, line in enumerate(split_file.read_text().splitlines(), start=1):
        stem = line.strip()
        if not stem:
            continue
        image = img_dir / (stem + layout.img_suffixes[0])
        if not image.is_file():
            raise ProlabError(f"{split_file}: line {number}: image {image} not found")
        images.append(image)
    return images


_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC, which close every PNG


def _check_png_end(path: Path, image: Image.Image) -> None:
    """A PNG cut short after its last pixel row still decodes; its missing IEND chunk gives it away."""
    if image.format != "PNG":
        return
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 65536))
        tail = f.read()
    if _PNG_END not in tail:
        raise InputError(f"{path}: truncated PNG (the file ends before its IEND chunk)")


#: the most pixels an image or label map may have (``--max-pixels`` raises it): a tiny compressed file can
#: declare a huge canvas, and decoding it is what costs memory. Pillow's own bomb check is replaced by this one.
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = None
#: what Pillow raises on a broken file (its PNG reader raises SyntaxError for a bad chunk, others
#: struct or zlib errors): each becomes one InputError naming the file
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error,
                  zlib.error, Image.DecompressionBombError)


def _check_pixels(path: Path, im: Image.Image, max_pixels: int) -> None:
    """Refuse, before decoding, an image whose header declares more than ``max_pixels``."""
    w, h = im.size
    if w * h > max_pixels:
        raise InputError(f"{path}: {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of"
                         f" {max_pixels / 1e6:g} (max_pixels raises it)")


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An RGB image as uint8 [H,W,3]; one of more than ``max_pixels`` is refused before it is decoded."""
    try:
        with Image.open(path) as im:
            _check_pixels(path, im, max_pixels)
            _check_png_end(path, im)
            return np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def read_mask(path: Path, max_value: int = IGNORE_INDEX, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A single-channel label map (mode L, P or I;16) holding raw label values: uint8 [H,W] when
    ``max_value`` (the layout's ignore value) is 255, else int32 [H,W]; a value above ``max_value``
    is an error naming the file."""
    try:
        with Image.open(path) as im:
            _check_pixels(path, im, max_pixels)
            if im.mode not in ("L", "P", "I;16", "I"):
                raise InputError(f"{path}: mask has mode {im.mode}, expected a single-channel PNG (L or P)")
            _check_png_end(path, im)
            mask = np.asarray(im)
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(f"{path}: cannot read mask ({type(exc).__name__}: {exc})") from None
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > max_value:
            raise InputError(f"{path}: label {int(mask.max())} out of range (at most {max_value})")
        if mask.min(initial=0) < 0:
            raise InputError(f"{path}: label {int(mask.min())} out of range (negative)")
    return mask.astype(np.uint8 if max_value <= IGNORE_INDEX else np.int32, copy=False)


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """MMSegmentation's reduce_zero_label: 0 (unlabelled) -> 255, every other label minus one."""
    out = mask.astype(np.int16) - 1
    out[mask == 0] = IGNORE_INDEX
    out[mask == IGNORE_INDEX] = IGNORE_INDEX
    return out.astype(np.uint8)


def class_lookup(dataset_classes: Sequence[str], target_classes: Sequence[str],
                 raw_ignore: int = IGNORE_INDEX) -> np.ndarray:
    """A table of ``raw_ignore + 1`` entries mapping dataset train ids to the target class list's ids
    by name (:func:`~prolab_cli.classes.reconcile_class_names`: exact, case-folded, aliases), in the
    target's label type (:func:`~segmentation.labels.label_dtype_for`); dataset classes the target
    lacks, and ``raw_ignore``, become the target's ignore id (255, or 65535 above 255 classes)."""
    rec = reconcile_class_names(list(target_classes), list(dataset_classes), source="target classes", partial=True)
    if len(dataset_classes) > raw_ignore:
        raise ProlabError(f"{len(dataset_classes)} dataset classes do not fit labels whose ignore value is "
                          f"{raw_ignore}")
    lut = np.full(raw_ignore + 1, ignore_index_for(len(target_classes)), dtype=label_dtype_for(len(target_classes)))
    for i, j in enumerate(rec.mapping):
        if j is not None:
            lut[j] = i
    return lut


class SegDataset:
    """A split of a segmentation dataset: ``ds[i]`` runs ``pipeline`` on sample i.

    ``ds[(i, seed)]`` passes a per-sample random seed to the pipeline, so augmentation depends
    only on (seed, sample), not on worker order: that is what makes resumed runs exact.
    """

    def __init__(
        self,
        dataset: str,
        root: str | Path,
        split: str = "train",
        pipeline: Callable[[np.ndarray, np.ndarray, np.random.Generator], dict[str, Any]] | None = None,
        classes: str | Path | None = None,
        target_classes: Sequence[str] | None = None,
        skip_bad: bool = False,
        reduce_zero_label: bool | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.max_pixels = max_pixels
        self.layout = get_layout(dataset)
        self.root = Path(root)
        self.split = split
        self.pipeline = pipeline
        self.classes = resolve_classes(self.layout, self.root, classes)
        self.target_classes = list(target_classes) if target_classes is not None else list(self.classes)
        self.reduce_zero_label = (
            self.layout.reduce_zero_label if reduce_zero_label is None else reduce_zero_label
        )
        if self.reduce_zero_label and self.layout.ignore_value != IGNORE_INDEX:
            raise ProlabError(f"reduce_zero_label applies to 8-bit masks; the {self.layout.name} layout's are 16-bit")
        self.lut = class_lookup(self.classes, self.target_classes, self.layout.ignore_value)
        #: the ignore id of the labels this dataset returns (255, or 65535 above 255 target classes)
        self.ignore_index = ignore_index_for(len(self.target_classes))
        samples, orphans = find_samples(self.layout, self.root, split)
        self.skipped: list[tuple[Path, str]] = []
        if orphans and not skip_bad:
            raise ProlabError(f"{orphans[0]}: image without a mask ({len(orphans)} such images; skip_bad leaves them out)")
        self.skipped.extend((p, "image without a mask") for p in orphans)
        if skip_bad:
            good = []
            for sample in track(samples, f"check {split}", "img"):
                try:
                    self.load(sample)
                except InputError as exc:
                    self.skipped.append((sample.image, exc.message))
                else:
                    good.append(sample)
            samples = good
        if not samples:
            raise ProlabError(f"{self.root / self.layout.img_dirs[split]}: no usable {split} samples")
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """(RGB image uint8 [H,W,3], label [H,W] in target class ids, checked): uint8 with 255 =
        ignore, or int32 with 65535 = ignore when the target has more than 255 classes."""
        image = read_image(sample.image, self.max_pixels)
        raw = read_mask(sample.mask, self.layout.ignore_value, self.max_pixels)
        if raw.shape != image.shape[:2]:
            raise InputError(
                f"{sample.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        label = reduce_zero_label(raw) if self.reduce_zero_label else raw
        valid = label[label != self.layout.ignore_value]
        if valid.size and int(valid.max()) >= len(self.classes):
            raw_value = int(valid.max()) + (1 if self.reduce_zero_label else 0)
            raise InputError(
                f"{sample.mask}: label {raw_value} out of range ({len(self.classes)} classes"
                f"{', reduce_zero_label' if self.reduce_zero_label else ''})"
            )
        return image, self.lut[label]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, index_seed(key))
        sample = self.samples[index]
        image, label = self.load(sample)
        rng = np.random.default_rng(seed)
        out = self.pipeline(image, label, rng) if self.pipeline else {"img": image, "label": label}
        out["index"] = index
        return out


def index_seed(index: int) -> int:
    """The fixed seed of a sample read without one (evaluation)."""
    return int(index)
