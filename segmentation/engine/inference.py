"""Whole-image and sliding-window inference (MMSegmentation's), with optional horizontal flip
averaged as mmseg's ``aug_test`` does, and the test settings (mode, window, scale, flip) that
`prolab eval` and `prolab predict` both run it with."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.nn import functional as F

from ..data.transforms import TestPipeline, check_positive_or_none
from ..data.transforms import pad_short_side as pad_to_short_side

Scorer = Callable[[torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]

#: ViT-Adapter needs input sides divisible by 32: inputs are zero-padded and outputs cropped back
SIZE_DIVISOR = 32


def padded(score_fn: Scorer, x: torch.Tensor, divisor: int = SIZE_DIVISOR) -> torch.Tensor:
    """``score_fn`` on ``x`` zero-padded (bottom/right) to multiples of ``divisor``, cropped back."""
    h, w = x.shape[-2:]
    ph, pw = -h % divisor, -w % divisor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return score_fn(x)[..., :h, :w]


def slide_scores(
    score_fn: Scorer, img: torch.Tensor, num_out: int, crop: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Scores [B,num_out,H,W] averaged over overlapping ``crop`` windows moved by ``stride``
    (the last window of a row/column is shifted back to fit; windows are padded when the image
    is smaller than ``crop``)."""
    b, _, h, w = img.shape
    ch, cw = crop
    sh, sw = stride
    rows = max(math.ceil((h - ch) / sh), 0) + 1
    cols = max(math.ceil((w - cw) / sw), 0) + 1
    total = img.new_zeros((b, num_out, h, w))
    count = img.new_zeros((b, 1, h, w))
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh + ch, h), min(c * sw + cw, w)
            y0, x0 = max(y1 - ch, 0), max(x1 - cw, 0)
            window = img[:, :, y0:y1, x0:x1]
            ph, pw = ch - window.shape[2], cw - window.shape[3]
            if ph > 0 or pw > 0:
                window = F.pad(window, (0, max(pw, 0), 0, max(ph, 0)))
            out = padded(score_fn, window)[:, :, : y1 - y0, : x1 - x0]
            total[:, :, y0:y1, x0:x1] += out
            count[:, :, y0:y1, x0:x1] += 1
    return total / count


def class_probabilities(num_classes: int) -> Transform:
    """Softmax over the first ``num_classes`` channels (class scores); any channels after them
    (property scores) pass unchanged. This is what mmseg's ``inference`` returns per pass."""

    def probs(scores: torch.Tensor) -> torch.Tensor:
        classes = F.softmax(scores[:, :num_classes], dim=1)
        return torch.cat([classes, scores[:, num_classes:]], dim=1) if scores.shape[1] > num_classes else classes

    return probs


def infer_scores(
    score_fn: Scorer,
    img: torch.Tensor,
    num_out: int,
    out_size: tuple[int, int],
    mode: str = "whole",
    crop: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    flip: bool = False,
    to_probs: Transform | None = None,
    pad_short_side: int | None = None,
) -> torch.Tensor:
    """Scores [B,num_out,*out_size]: slide or whole on ``img``, resized (bilinear) to the label's
    ``out_size`` and passed through ``to_probs`` (e.g. :func:`class_probabilities`; identity when
    None). With ``flip`` the same is done for the horizontally flipped image, flipped back, and the
    two are averaged: mmseg's aug_test averages softmax(resized scores) of each pass.
    ``pad_short_side`` pads each pass's image (after its flip, as the original pipeline does) to that
    short side; the padded scores are resized to ``out_size`` whole, as mmseg 0.x does."""

    def once(x: torch.Tensor) -> torch.Tensor:
        x = pad_to_short_side(x, pad_short_side)
        if mode == "slide":
            out = slide_scores(score_fn, x, num_out, crop, stride)
        elif mode == "whole":
            out = padded(score_fn, x)
        else:
            raise ValueError(f"inference mode {mode!r}: expected slide or whole")
        if tuple(out.shape[-2:]) != tuple(out_size):
            out = F.interpolate(out, size=out_size, mode="bilinear", align_corners=False)
        return to_probs(out) if to_probs is not None else out

    scores = once(img)
    if flip:
        scores = (scores + once(img.flip(-1)).flip(-1)) / 2
    return scores


#: full-resolution scores larger than this are never made whole: :func:`labels_for` works in bands of rows
FULL_SCORES_MAX_BYTES = 2**30
#: the size of one band's scores
BAND_BYTES = 64 * 2**20


def upsample_rows(low: torch.Tensor, out_size: tuple[int, int], r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of ``F.interpolate(low, out_size, mode="bilinear", align_corners=False)``, made from
    the few source rows they need: F.interpolate across, then the same blend down (equal to the whole
    resize up to float rounding, ~5e-7)."""
    h, (big_h, big_w) = low.shape[-2], out_size
    scale = float(torch.tensor(h / big_h, dtype=torch.float32))  # the float32 scale torch's kernel uses
    src = (scale * (torch.arange(r0, r1, dtype=torch.float64) + 0.5) - 0.5).clamp(min=0).float()
    top = src.long().clamp(max=h - 1)
    bottom = torch.where(top < h - 1, top + 1, top)
    weight = (src - top.float()).clamp(0, 1).view(1, 1, -1, 1).to(low.device)
    rows = torch.unique(torch.cat([top, bottom]))
    across = F.interpolate(low[:, :, rows.to(low.device)], size=(len(rows), big_w), mode="bilinear",
                           align_corners=False)
    upper = across[:, :, torch.searchsorted(rows, top).to(low.device)]
    lower = across[:, :, torch.searchsorted(rows, bottom).to(low.device)]
    return upper * (1 - weight) + lower * weight


def low_resolution_scores(score_fn: Scorer, img: torch.Tensor, num_out: int, mode: str = "whole",
                          crop: tuple[int, int] = (512, 512), stride: tuple[int, int] = (341, 341),
                          pad_short_side: int | None = None) -> torch.Tensor:
    """Scores [B,num_out,h,w] at the resolution the model ran at (slide or whole), before any resize."""
    x = pad_to_short_side(img, pad_short_side)
    if mode == "slide":
        return slide_scores(score_fn, x, num_out, crop, stride)
    if mode == "whole":
        return padded(score_fn, x)
    raise ValueError(f"inference mode {mode!r}: expected slide or whole")


def labels_for(settings: dict, score_fn: Scorer, img: torch.Tensor, num_out: int, out_size: tuple[int, int],
               num_classes: int | None = None, keep: list[int] | None = None,
               full_max_bytes: int | None = None,
               band_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(labels, full, low). ``labels`` [B,*out_size]: the argmax over the ``keep`` classes (all by default)
    of :func:`scores_for`. When the full-resolution scores fit in ``full_max_bytes`` (default
    :data:`FULL_SCORES_MAX_BYTES`) they are computed as
    :func:`scores_for` does and returned as ``full`` (``low`` None): labels exactly as before. Above it the
    labels are computed band by band (each band's scores about ``band_bytes``), so memory stays bounded
    whatever the image size; ``full`` is then None and ``low`` [B,num_out,h,w] holds the scores at the
    model's resolution (class probabilities, then any property channels)."""
    num_classes = num_out if num_classes is None else num_classes
    keep = list(range(num_classes)) if keep is None else list(keep)
    full_max_bytes = FULL_SCORES_MAX_BYTES if full_max_bytes is None else full_max_bytes
    band_bytes = BAND_BYTES if band_bytes is None else band_bytes
    flip = bool(settings["flip"])
    big_h, big_w = out_size
    if num_out * big_h * big_w * 4 * (2 if flip else 1) <= full_max_bytes:
        scores = scores_for(settings, score_fn, img, num_out, out_size, num_classes)
        return scores[:, keep].argmax(1), scores, None
    probs = class_probabilities(num_classes)
    passes = [low_resolution_scores(score_fn, img, num_out, settings["mode"], tuple(settings["crop_size"]),
                                    tuple(settings["stride"]), settings.get("pad_short_side"))]
    if flip:
        passes.append(low_resolution_scores(score_fn, img.flip(-1), num_out, settings["mode"],
                                            tuple(settings["crop_size"]), tuple(settings["stride"]),
                                            settings.get("pad_short_side")))
    rows = max(1, band_bytes // (num_out * big_w * 4))
    labels = torch.empty((img.shape[0], big_h, big_w), dtype=torch.int64 if len(keep) > 32767 else torch.int16)
    index = torch.tensor(keep, device=passes[0].device)
    for r0 in range(0, big_h, rows):
        r1 = min(r0 + rows, big_h)
        band = [probs(upsample_rows(low, out_size, r0, r1))[:, index] for low in passes]
        if flip:
            band = [(band[0] + band[1].flip(-1)) / 2]
        labels[:, r0:r1] = band[0].argmax(1).to(labels.dtype).cpu()
    low = probs(passes[0]) if not flip else (probs(passes[0]) + probs(passes[1]).flip(-1)) / 2
    return labels, None, low


def inference_settings(config: dict | None, overrides: dict[str, Any]) -> dict:
    """The ``test`` section of the checkpoint's config, updated by non-None ``overrides``."""
    settings = {"mode": "whole", "crop_size": [512, 512], "stride": [341, 341], "scale": [2048, 512],
                "size_divisor": None, "pad_short_side": None, "flip": False}
    settings.update((config or {}).get("test", {}))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def pipeline_for(settings: dict) -> TestPipeline:
    """The test-time resize (and ResizeToMultiple, ``size_divisor``) and normalisation of
    :func:`inference_settings` (whose ``pad_short_side`` :func:`scores_for` applies)."""
    check_positive_or_none(settings.get("pad_short_side"), "test.pad_short_side")
    return TestPipeline(scale=tuple(settings["scale"]) if settings["scale"] else None,
                        size_divisor=settings.get("size_divisor"))


def scores_for(settings: dict, score_fn, img: torch.Tensor, num_out: int, out_size: tuple[int, int],
               num_classes: int | None = None) -> torch.Tensor:
    """:func:`infer_scores` run as :func:`inference_settings` say (mode, window, flip,
    the BEiTv2 row's short-side padding): class probabilities (softmax over the first
    ``num_classes`` channels, all by default; the rest pass unchanged) at ``out_size``, averaged
    over the flips as mmseg does."""
    probs = class_probabilities(num_out if num_classes is None else num_classes)
    return infer_scores(score_fn, img, num_out, out_size, settings["mode"], tuple(settings["crop_size"]),
                        tuple(settings["stride"]), bool(settings["flip"]), probs,
                        pad_short_side=settings.get("pad_short_side"))
