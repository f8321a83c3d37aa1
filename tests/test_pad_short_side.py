"""The BEiTv2 row's test-time PadShortSide, against a hand-written copy of the original's logic:
ViT-Adapter's pipeline (Resize keep-ratio -> ResizeToMultiple -> RandomFlip -> Normalize ->
PadShortSide(pad_val=0)) and ProLab's EncoderDecoder_cluster_embed.slide_inference, which resizes the
whole padded prediction to the image's original shape (no crop of the padded area) before the softmax,
and flips it back afterwards."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prolab_cli.errors import ProlabError
from segmentation.data.transforms import pad_short_side
from segmentation.engine.inference import inference_settings, pipeline_for, scores_for

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
NUM_OUT = 5


# --- the original's logic, written out from its sources ------------------------------------------------

def _ref_resize_keep_ratio(img: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """mmcv.imrescale: factor min(long/max(h, w), short/min(h, w)), size int(x * factor + 0.5), cv2 bilinear."""
    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def _ref_resize_to_multiple(img: np.ndarray, divisor: int) -> np.ndarray:
    """mmcv.imresize_to_multiple(size_divisor=divisor, scale_factor=1): ceil each side, cv2 bilinear."""
    h, w = img.shape[:2]
    size = (math.ceil(w / divisor) * divisor, math.ceil(h / divisor) * divisor)
    return img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def _ref_pad_short_side(img: np.ndarray, size: int) -> np.ndarray:
    """PadShortSide: skipped when both sides >= size, else mmcv.impad(shape=(max(h, size), max(w, size)),
    pad_val=0): zeros at the bottom and right."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    return np.pad(img, ((0, max(h, size) - h), (0, max(w, size) - w), (0, 0)), constant_values=0)


def _ref_slide_inference(encode_decode, img: torch.Tensor, crop: int, stride: int, ori_shape) -> torch.Tensor:
    """EncoderDecoder_cluster_embed.slide_inference (rescale=True): windows are never padded, the
    averaged prediction is resized to ori_shape as it is."""
    _, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, NUM_OUT, h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out = encode_decode(img[:, :, y1:y2, x1:x2])
            preds += F.pad(out, (x1, preds.shape[3] - x2, y1, preds.shape[2] - y2))
            count[:, :, y1:y2, x1:x2] += 1
    assert (count == 0).sum() == 0
    return F.interpolate(preds / count, size=ori_shape, mode="bilinear", align_corners=False)


def _ref_scores(encode_decode, rgb: np.ndarray, scale, divisor, pad, crop, stride, flip: bool) -> torch.Tensor:
    """MultiScaleFlipAug's passes, each through ``inference`` (softmax, then flip back), averaged (aug_test)."""
    passes = []
    for flipped in ([False, True] if flip else [False]):
        img = _ref_resize_to_multiple(_ref_resize_keep_ratio(rgb, scale), divisor)
        if flipped:
            img = img[:, ::-1]
        img = (img.astype(np.float32) - MEAN) / STD
        if pad is not None:
            img = _ref_pad_short_side(img, pad)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        out = F.softmax(_ref_slide_inference(encode_decode, x, crop, stride, rgb.shape[:2]), dim=1)
        passes.append(out.flip(3) if flipped else out)
    return sum(passes) / len(passes)


# -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encode_decode():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, NUM_OUT, 5, padding=2)  # sees the window's border: the padded area changes it
    conv.requires_grad_(False)
    return conv


def _settings(pad: int | None, flip: bool) -> dict:
    return inference_settings({"test": {"mode": "slide", "crop_size": [64, 64], "stride": [40, 40],
                                        "scale": [256, 64], "size_divisor": 8, "pad_short_side": pad}}, {"flip": flip})


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("h,w", [(37, 301), (301, 37), (20, 131), (45, 61), (3, 7)])
def test_eval_path_equals_the_original_pipeline_and_slide_inference(encode_decode, h, w, flip):
    rgb = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    settings = _settings(64, flip)
    x = pipeline_for(settings)(rgb, np.zeros((h, w), np.uint8))["img"][None]
    with torch.no_grad():
        ours = scores_for(settings, encode_decode, x, NUM_OUT, (h, w))
        want = _ref_scores(encode_decode, rgb, (256, 64), 8, 64, 64, 40, flip)
    assert ours.shape == (1, NUM_OUT, h, w)
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-5)
    assert torch.equal(ours.argmax(1), want.argmax(1))


@pytest.mark.parametrize("h,w", [(37, 301), (20, 131)])
def test_padding_changes_the_numbers_of_long_images_and_is_not_cropped(encode_decode, h, w):
    """The wrong alternatives (no pad; pad then crop the padded area before resizing, as mmseg 1.x
    does) give other scores, so the equality above is not vacuous."""
    rgb = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
    settings = _settings(64, False)
    x = pipeline_for(settings)(rgb, np.zeros((h, w), np.uint8))["img"][None]
    with torch.no_grad():
        ours = scores_for(settings, encode_decode, x, NUM_OUT, (h, w))
        unpadded = scores_for(_settings(None, False), encode_decode, x, NUM_OUT, (h, w))
        padded_x = pad_short_side(x, 64)
        full = scores_for(_settings(None, False), encode_decode, padded_x, NUM_OUT, tuple(padded_x.shape[-2:]))
        cropped = F.interpolate(full[..., : x.shape[2], : x.shape[3]], size=(h, w), mode="bilinear", align_corners=False)
    assert x.shape[2] < 64 and (ours - unpadded).abs().max() > 1e-3
    assert (ours - cropped).abs().max() > 1e-3


def test_pad_short_side_pads_zeros_bottom_right_only_when_a_side_is_short():
    x = torch.randn(1, 3, 30, 100)
    out = pad_short_side(x, 64)
    assert out.shape == (1, 3, 64, 100)
    assert torch.equal(out[:, :, :30], x) and (out[:, :, 30:] == 0).all()
    tall = pad_short_side(torch.randn(3, 90, 10), 64)
    assert tall.shape == (3, 90, 64) and (tall[:, :, 10:] == 0).all()
    big = torch.randn(1, 3, 64, 70)
    assert pad_short_side(big, 64) is big and pad_short_side(x, None) is x


@pytest.mark.parametrize("bad", [0, -3, 8.5, True, "896"])
def test_a_bad_pad_short_side_is_a_one_line_error(bad):
    with pytest.raises(ProlabError, match="test.pad_short_side must be a positive integer or null"):
        pipeline_for(_settings(bad, False))
