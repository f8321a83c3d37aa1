"""The train and test pipelines of the paper's MMSegmentation configs, in OpenCV + numpy + torch.

Train: random resize (ratio 0.5-2.0 of ``scale``, aspect kept) -> random crop with
``cat_max_ratio`` -> horizontal flip -> photometric distortion -> normalise -> pad (image 0,
label 255, or 65535 for the int32 labels of more than 255 classes). Test: resize to ``scale``
(aspect kept) -> resize up to multiples of ``size_divisor`` (mmseg's ResizeToMultiple) -> normalise -> for the BEiTv2 row pad to a short side of
``pad_short_side`` (ViT-Adapter's PadShortSide, applied at inference: :func:`pad_short_side`); the
label stays at its original size, as MMSegmentation evaluates at the original resolution.
Resizing is mmcv's: its rescale rule and cv2's bilinear (images) / nearest (labels) results, which
Pillow does not reproduce (it antialiases when shrinking and rounds differently).
All randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from prolab_cli.errors import ProlabError

from ..labels import ignore_index_of

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(new_h, new_w) fitting (h, w) inside ``scale`` (long edge, short edge) with aspect kept:
    mmcv.rescale_size's factor min(long/max(h, w), short/min(h, w)) and its int(x * factor + 0.5)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def multiple_size(h: int, w: int, divisor: int) -> tuple[int, int]:
    """(h, w) rounded up to multiples of ``divisor`` (mmcv.imresize_to_multiple at scale 1)."""
    return math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor


def check_positive_or_none(value: Any, key: str) -> int | None:
    """``value`` if it is a positive integer or None, else a one-line error naming the ``key``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ProlabError(f"{key} must be a positive integer or null, got {value!r}")
    return value


def pad_short_side(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """ViT-Adapter's ``PadShortSide(size, pad_val=0)`` on a normalised [..., H, W] image: when a side
    is under ``size``, zeros (the mean colour: it runs after Normalize) are added at the bottom and
    right until both sides are at least ``size`` (mmcv.impad); otherwise the image is unchanged.
    The original then resizes the whole padded prediction to the image's size (mmseg 0.x
    slide_inference), so no crop follows: the caller resizes the padded scores as they are."""
    check_positive_or_none(size, "test.pad_short_side")
    if size is None:
        return x
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return x
    return torch.nn.functional.pad(x, (0, max(size - w, 0), 0, max(size - h, 0)), value=0.0)


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ProlabError(f"resizing as MMSegmentation does needs OpenCV: pip install opencv-python-headless "
                          f"(import cv2 failed: {exc})") from exc
    return cv2


def resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an [H,W(,C)] uint8 array to ``size`` = (h, w) as mmcv.imresize does: cv2 bilinear
    (INTER_LINEAR), or nearest (INTER_NEAREST) for labels."""
    if img.shape[:2] == tuple(size):
        return img
    cv2 = _cv2()
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (size[1], size[0]), interpolation=interpolation)


def random_crop_box(
    label: np.ndarray, crop: tuple[int, int], cat_max_ratio: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a crop; up to 10 tries to find one where no class covers more than
    ``cat_max_ratio`` of the labelled pixels (MMSegmentation's RandomCrop)."""
    h, w = label.shape
    ch, cw = crop

    def draw() -> tuple[int, int, int, int]:
        y0 = int(rng.integers(0, max(h - ch, 0) + 1))
        x0 = int(rng.integers(0, max(w - cw, 0) + 1))
        return y0, min(y0 + ch, h), x0, min(x0 + cw, w)

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            patch = label[box[0] : box[1], box[2] : box[3]]
            _, counts = np.unique(patch[patch != ignore_index_of(label)], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            box = draw()
    return box


def photometric_distortion(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MMSegmentation's PhotoMetricDistortion: brightness +-32, contrast 0.5-1.5 (before or after
    the HSV steps), saturation 0.5-1.5, hue +-18 degrees/2; each applied with probability 1/2."""
    out = img.astype(np.float32)
    if rng.integers(2):
        out = np.clip(out + rng.uniform(-32, 32), 0, 255)
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        out = np.clip(out * rng.uniform(0.5, 1.5), 0, 255)
    do_sat, do_hue = bool(rng.integers(2)), bool(rng.integers(2))
    sat = rng.uniform(0.5, 1.5) if do_sat else 1.0
    hue = int(rng.integers(-18, 19)) if do_hue else 0
    if do_sat or do_hue:
        hsv = np.asarray(Image.fromarray(out.astype(np.uint8)).convert("HSV")).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue * 256.0 / 180.0, 256.0)
        out = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")).astype(np.float32)
    if not contrast_first and rng.integers(2):
        out = np.clip(out * rng.uniform(0.5, 1.5), 0, 255)
    return out.astype(np.uint8)


def normalise_image(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 [H,W,3] RGB -> float32 [3,H,W], (x - mean) / std."""
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@dataclass
class TrainPipeline:
    """The training augmentation of the paper's configs."""

    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 512)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True

    def __call__(self, img: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        size = rescale_size(*img.shape[:2], target)
        img, label = resize(img, size), resize(label, size, nearest=True)
        y0, y1, x0, x1 = random_crop_box(label, self.crop_size, self.cat_max_ratio, rng)
        img, label = img[y0:y1, x0:x1], label[y0:y1, x0:x1]
        if rng.random() < self.flip_prob:
            img, label = img[:, ::-1], label[:, ::-1]
        if self.photometric:
            img = photometric_distortion(img, rng)
        x = normalise_image(img)
        ch, cw = self.crop_size
        pad_h, pad_w = max(ch - x.shape[1], 0), max(cw - x.shape[2], 0)
        y = torch.from_numpy(np.array(label)).long()
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = torch.nn.functional.pad(y, (0, pad_w, 0, pad_h), value=ignore_index_of(label))
        return {"img": x, "label": y}


@dataclass
class TestPipeline:
    """Resize (aspect kept), then up to multiples of ``size_divisor`` when set (the released rows'
    ResizeToMultiple), and normalise; the label keeps the original size (mmseg's test pipeline
    loads no label: metrics are taken at the original resolution). The BEiTv2 row's PadShortSide
    comes after the flip in the original pipeline, so inference applies it (:func:`pad_short_side`)."""

    __test__ = False  # not a pytest class

    scale: tuple[int, int] | None = (2048, 512)
    size_divisor: int | None = None

    def __post_init__(self) -> None:
        check_positive_or_none(self.size_divisor, "test.size_divisor")

    def __call__(self, img: np.ndarray, label: np.ndarray | None, rng: np.random.Generator | None = None) -> dict[str, Any]:
        if self.scale is not None:
            img = resize(img, rescale_size(*img.shape[:2], self.scale))
        if self.size_divisor is not None:
            img = resize(img, multiple_size(*img.shape[:2], self.size_divisor))
        return {"img": normalise_image(img), "label": None if label is None else torch.from_numpy(np.array(label)).long()}


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack same-sized samples (training crops); keep lists for anything else."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if isinstance(values[0], torch.Tensor) and all(v.shape == values[0].shape for v in values):
            out[key] = torch.stack(values)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
