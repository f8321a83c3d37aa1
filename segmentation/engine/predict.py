"""`prolab predict`: colour masks, overlays and per-property activation maps for images.

For each image ``<stem>``: ``<stem>_mask.png`` (a colour per class), ``<stem>_overlay.png`` (the mask
blended over the image, with a legend of the classes it shows) and, for a property model, for each of the
largest predicted regions the maps of its top properties ``<stem>_<class>_p<k>.png`` (the paper's "banana
chair" figure), each stretched over its own range in the image (written on it) so that maps differ even
where the sigmoid scores all sit near 1; ``<stem>.json`` lists the regions, their top properties and those
ranges. ``labels/<stem>.png`` holds the raw class ids (16-bit beyond 256 classes) for programs: it looks
black in an image viewer.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from prolab_cli.atomic import write_bytes, write_json
from prolab_cli.classes import check_class_list, load_classes, normalise
from prolab_cli.errors import ProlabError
from prolab_cli.progress import track

from ..data.datasets import MAX_PIXELS, read_image
from ..label_space import load_label_space
from .builder import model_from_checkpoint, pick_device
from .checkpoint import load_checkpoint
from .inference import inference_settings, labels_for, pipeline_for

_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)


def palette(classes: list[str]) -> np.ndarray:
    """A fixed colour per class name (uint8 [C,3]), independent of class order."""
    out = np.zeros((len(classes), 3), np.uint8)
    for i, name in enumerate(classes):
        digest = hashlib.sha256(normalise(name).encode()).digest()
        out[i] = np.frombuffer(digest[:3], np.uint8) // 2 + 64
    return out


def heatmap(values: np.ndarray) -> np.ndarray:
    """Values in [0,1] [H,W] -> an inferno-like RGB image uint8 [H,W,3]."""
    x = np.clip(values, 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_HEAT) - 2)
    frac = (x - lo)[..., None]
    return (_HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac).astype(np.uint8)


LEGEND_ROWS = 12


def with_legend(image: np.ndarray, names: list[str], colours: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """``image`` with a panel on its right listing the classes it shows (largest first): swatch, name, area."""
    from PIL import ImageDraw, ImageFont

    shown = [int(c) for c in np.argsort(-areas) if areas[c] > 0][:LEGEND_ROWS]
    font = ImageFont.load_default()
    row = 14
    width = 8 + 12 + 6 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(f"{names[c]} 100%", font=font))
                             for c in shown) + 8
    height = max(image.shape[0], 8 + row * len(shown))
    canvas = Image.new("RGB", (image.shape[1] + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(shown):
        x, y = image.shape[1] + 8, 4 + i * row
        draw.rectangle([x, y + 1, x + 11, y + 11], fill=tuple(int(v) for v in colours[c]), outline=(0, 0, 0))
        draw.text((x + 18, y), f"{names[c]} {100 * areas[c]:.0f}%", fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def property_picture(rgb: np.ndarray, values: np.ndarray, caption: str) -> tuple[np.ndarray, list[float]]:
    """A property map blended over the image, stretched from its minimum to its maximum in this image
    (the range is returned and written on the picture with ``caption``)."""
    from PIL import ImageDraw

    lo, hi = float(values.min()), float(values.max())
    stretched = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    picture = Image.fromarray((rgb * 0.35 + heatmap(stretched) * 0.65).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    text = f"{caption}  [{lo:.3f}, {hi:.3f}]"
    draw.rectangle([0, 0, int(draw.textlength(text)) + 6, 13], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(picture), [lo, hi]


#: the longest side of the overlay and property pictures of an image too large for whole-image scores
DISPLAY_SIDE = 2048
#: pictures of smaller images are enlarged (nearest neighbour, whole factors) to about this side
MIN_DISPLAY_SIDE = 256


def _fit(array: np.ndarray, limit_or_size) -> np.ndarray:
    """``array`` (an image or a label map) resized by nearest neighbour to a size (h, w), or to fit
    ``limit`` pixels on its longest side."""
    h, w = array.shape[:2]
    if isinstance(limit_or_size, int):
        factor = min(1.0, limit_or_size / max(h, w))
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
    else:
        size = tuple(int(v) for v in limit_or_size)
    if size == (h, w):
        return array
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(np.int64)
    return array[rows][:, cols]


def _class_counts(labels: np.ndarray, num_classes: int, rows: int = 512) -> np.ndarray:
    """Pixels per class of a label map, counted a band of rows at a time (np.bincount would first
    copy the whole map to 64-bit integers)."""
    counts = np.zeros(num_classes, np.int64)
    for r0 in range(0, labels.shape[0], rows):
        counts += np.bincount(labels[r0:r0 + rows].ravel(), minlength=num_classes)[:num_classes]
    return counts


def _stretch_to(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h,w] map resized (bilinear) to ``size``."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _png(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", normalise(name)).strip("-") or "class"


@torch.no_grad()
def predict(
    images: list[str | Path],
    checkpoint: str | Path,
    *,
    out_dir: str | Path,
    label_space: str | Path | None = None,
    classes: str | Path | None = None,
    mode: str | None = None,
    flip: bool | None = None,
    regions: int = 3,
    top_properties: int = 3,
    min_area: float = 0.02,
    alpha: float = 0.5,
    device: str = "auto",
    map_classes_by_name: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> list[dict]:
    """Predict every image; returns one summary dict per image (also written as ``<stem>.json``).

    A ``label_space`` whose class list differs from the checkpoint's (the model's dataset) is
    refused unless it extends it (the trained classes first, as ``prolab extend`` writes) or
    ``map_classes_by_name``: the label ids then number the label space's classes."""
    _check_stems(images, out_dir)
    device = pick_device(device)
    run = _prepare(checkpoint, label_space, classes, mode, flip, map_classes_by_name, device)
    return [_predict_one(run, Path(image_path), Path(out_dir), regions, top_properties, min_area, alpha, max_pixels)
            for image_path in track(images, "predict", "img")]


def _check_stems(images: list[str | Path], out_dir: str | Path) -> None:
    """Refuse no images, and two images whose outputs would have the same names."""
    if not images:
        raise ProlabError("give at least one image")
    stems: dict[str, Path] = {}
    for image in map(Path, images):
        if stems.setdefault(image.stem, image) != image:
            raise ProlabError(f"{stems[image.stem]} and {image}: both would write {image.stem}_*.png "
                              f"and {image.stem}.json in {out_dir}; predict them into separate out_dir folders")


@dataclass
class _Run:
    """The model and what every image's pictures are drawn with."""

    model: torch.nn.Module
    device: str
    model_classes: list[str]
    keep: list[int]          # the model classes the labels choose among (``classes``), as indices
    names: list[str]         # their names: label id i is names[i]
    colours: np.ndarray
    property_names: list[str]
    settings: dict
    pipeline: Any

    @property
    def property_head(self) -> bool:
        return getattr(self.model, "is_property_head", False)


def _prepare(checkpoint, label_space, classes, mode, flip, map_classes_by_name: bool, device: str) -> _Run:
    """The checkpoint's model (over ``label_space``, checked), the classes kept and the test pipeline."""
    ckpt = load_checkpoint(checkpoint)
    space = load_label_space(label_space)
    model, model_classes, _ = model_from_checkpoint(ckpt, space)
    if space is not None and not map_classes_by_name:
        check_class_list(model_classes, ckpt["meta"]["classes"], what=f"label space {space.name!r}",
                         where=f"the classes of {ckpt['path']}", extension_ok=True,
                         by_name_field="predict.map_classes_by_name")
    model.to(device)
    keep = list(range(len(model_classes)))
    if classes is not None:
        rec = check_class_list(load_classes(Path(classes)), model_classes, what=str(classes), where="the model",
                               map_by_name=True)
        for line in rec.report_lines()[: len(rec.matches)]:
            print(line, file=sys.stderr)
        keep = [j for j in rec.mapping if j is not None]
    names = [model_classes[i] for i in keep]
    property_names = (space.property_names if space is not None else ckpt["meta"].get("property_names")) or []
    settings = inference_settings(ckpt.get("config"), {"mode": mode, "flip": flip})
    return _Run(model, device, model_classes, keep, names, palette(names), list(property_names), settings,
                pipeline_for(settings))


def _predict_one(run: _Run, image_path: Path, out_dir: Path, regions: int, top_properties: int, min_area: float,
                 alpha: float, max_pixels: int) -> dict:
    """Label one image, write its label map, mask, overlay, property maps and summary JSON."""
    if not image_path.is_file():
        raise ProlabError(f"{image_path}: image not found")
    rgb = read_image(image_path, max_pixels)
    x = run.pipeline(rgb, None)["img"].unsqueeze(0).to(run.device)
    size = rgb.shape[:2]
    n_classes = len(run.model_classes)
    model = run.model
    n = n_classes + (model.bank.num_properties if run.property_head else 0)  # class and property scores, one pass
    score_fn = model.scores_with_properties if run.property_head else model.encode_decode
    labels, full, low = labels_for(run.settings, score_fn, x, n, size, n_classes, run.keep)
    pred = labels[0].numpy()
    scores = full if full is not None else low  # full resolution, or the model's when that did not fit
    props = scores[0, n_classes:].cpu().numpy() if run.property_head else None
    stem = image_path.stem
    areas = _class_counts(pred, len(run.names)) / pred.size
    # pictures at the image's size (a small one enlarged to be seen); a huge image's at a display size
    # (its scores never existed whole)
    if full is not None:
        up = max(1, MIN_DISPLAY_SIDE // max(size))
        shown, shown_pred = _fit(rgb, (size[0] * up, size[1] * up)), _fit(pred, (size[0] * up, size[1] * up))
    else:
        shown, shown_pred = _fit(rgb, DISPLAY_SIDE), _fit(pred, DISPLAY_SIDE)
    del rgb  # a huge image's pixels are not needed past this point
    _png(out_dir / "labels" / f"{stem}.png", pred.astype(np.uint8 if len(run.names) <= 256 else np.uint16))
    _png(out_dir / f"{stem}_mask.png", run.colours[pred])
    overlay = (shown * (1 - alpha) + run.colours[shown_pred] * alpha).astype(np.uint8)
    _png(out_dir / f"{stem}_overlay.png", with_legend(overlay, run.names, run.colours, areas))
    region_pred = pred if full is not None else _fit(pred, props.shape[1:] if props is not None else (1, 1))
    order = [int(c) for c in np.argsort(-areas) if areas[c] >= min_area][:regions]
    summary = {"image": str(image_path), "classes": run.names, "regions": []}
    for c in order:
        region = {"class": run.names[c], "area": float(areas[c])}
        if props is not None:
            mask = region_pred == c
            if not mask.any():  # a region too thin to show at the model's resolution
                continue
            region["top_properties"] = _explain_region(run, props, mask, shown, full is not None, out_dir,
                                                       f"{stem}_{_slug(run.names[c])}", top_properties)
        summary["regions"].append(region)
    write_json(out_dir / f"{stem}.json", summary)
    return summary


def _explain_region(run: _Run, props: np.ndarray, mask: np.ndarray, shown: np.ndarray, at_image_size: bool,
                    out_dir: Path, prefix: str, top_properties: int) -> list[dict]:
    """The region's strongest properties (mean score over its pixels), each drawn as a map."""
    mean = props[:, mask].mean(1)
    found = []
    for k in np.argsort(-mean)[:top_properties]:
        name = run.property_names[k] if k < len(run.property_names) else f"property {k}"
        file = out_dir / f"{prefix}_p{int(k)}.png"
        values = _fit(props[k], shown.shape[:2]) if at_image_size else _stretch_to(props[k], shown.shape[:2])
        picture, shown_range = property_picture(shown, values, f"p{int(k)} {name[:48]}")
        _png(file, picture)
        found.append({"id": int(k), "name": name, "score": float(mean[k]), "map": file.name,
                      "display_range": shown_range})
    return found
