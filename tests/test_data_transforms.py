"""The train and test pipelines: shapes, padding, determinism, crop rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from prolab_cli.errors import ProlabError
from segmentation.data.transforms import (TestPipeline, TrainPipeline, multiple_size, normalise_image, random_crop_box,
                                          rescale_size, resize)


def _sample(h=40, w=60):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    label = np.zeros((h, w), np.uint8)
    label[:, w // 2 :] = 1
    return img, label


def test_rescale_size_keeps_aspect_inside_long_short_edges():
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(100, 400, (2048, 512)) == (512, 2048)
    assert rescale_size(1024, 2048, (1024, 512)) == (512, 1024)


def test_train_pipeline_crops_pads_and_is_deterministic_per_seed():
    img, label = _sample()
    pipe = TrainPipeline(scale=(64, 32), ratio_range=(0.5, 0.5), crop_size=(48, 48))
    out = pipe(img, label, np.random.default_rng(3))
    assert out["img"].shape == (3, 48, 48) and out["label"].shape == (48, 48)
    assert out["img"].dtype == torch.float32 and out["label"].dtype == torch.int64
    # the resized image is 16x24: the rest is padding, 0 for the image and 255 for the label
    assert (out["label"][16:] == 255).all() and (out["label"][:, 24:] == 255).all()
    assert (out["img"][:, 16:] == 0).all()
    assert set(out["label"][:16, :24].unique().tolist()) <= {0, 1}
    again = pipe(img, label, np.random.default_rng(3))
    assert torch.equal(out["img"], again["img"]) and torch.equal(out["label"], again["label"])
    other = pipe(img, label, np.random.default_rng(4))
    assert not torch.equal(out["img"], other["img"])


def test_crop_respects_cat_max_ratio():
    label = np.zeros((100, 100), np.uint8)
    label[:, 90:] = 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        y0, y1, x0, x1 = random_crop_box(label, (20, 20), 0.75, rng)
        # a crop with both classes exists; when found it is kept, else the 10th try is used
        assert (y1 - y0, x1 - x0) == (20, 20)
    found = sum(
        len(np.unique(label[b[0] : b[1], b[2] : b[3]])) > 1
        for b in (random_crop_box(label, (20, 20), 0.75, rng) for _ in range(50))
    )
    unconstrained = sum(
        len(np.unique(label[b[0] : b[1], b[2] : b[3]])) > 1
        for b in (random_crop_box(label, (20, 20), 1.0, rng) for _ in range(50))
    )
    assert found > unconstrained


def test_test_pipeline_resizes_image_keeps_label():
    img, label = _sample(40, 60)
    out = TestPipeline(scale=(64, 32))(img, label)
    assert out["img"].shape == (3, 32, 48) and out["label"].shape == (40, 60)
    mean = out["img"].mean(dim=(1, 2))
    assert mean.abs().max() < 2.5


# --- the test-time pipeline equals mmseg's (mmcv.imrescale + cv2, ResizeToMultiple) -------------

def test_rescale_size_rounds_half_up_like_mmcv():
    # factor min(100/5, 10/4) = 2.5: 5 * 2.5 = 12.5 -> int(12.5 + 0.5) = 13 (Python's round gives 12)
    assert rescale_size(4, 5, (100, 10)) == (10, 13)
    # odd sizes, the ADE20K scale: factor 512/37 (short side binds), 53 * 512/37 = 733.4 -> 733
    assert rescale_size(37, 53, (2048, 512)) == (512, 733)
    # the long side binds: factor 2048/1001, 99 * 2048/1001 = 202.55 -> 203
    assert rescale_size(99, 1001, (2048, 512)) == (203, 2048)


@pytest.mark.parametrize("h,w,scale", [(37, 53, (96, 45)), (61, 29, (64, 48)), (30, 70, (200, 41))])
def test_test_pipeline_image_equals_cv2_bilinear_at_the_mmcv_size(h, w, scale):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, 5, (h, w), dtype=np.uint8)
    nh, nw = rescale_size(h, w, scale)
    out = TestPipeline(scale=scale)(img, label)
    want = normalise_image(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR))
    assert out["img"].shape == (3, nh, nw)
    assert torch.equal(out["img"], want)
    assert torch.equal(out["label"], torch.from_numpy(label).long())  # evaluated at the original size


def test_resize_to_multiple_ceils_each_side_and_uses_cv2_bilinear():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    label = rng.integers(0, 5, (37, 53), dtype=np.uint8)
    assert multiple_size(10, 13, 8) == (16, 16) and multiple_size(32, 33, 32) == (32, 64)
    out = TestPipeline(scale=(100, 10), size_divisor=8)(img, label)
    h, w = rescale_size(37, 53, (100, 10))  # (10, 14): then up to (16, 16)
    step = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    want = normalise_image(cv2.resize(step, (16, 16), interpolation=cv2.INTER_LINEAR))
    assert torch.equal(out["img"], want)
    assert out["label"].shape == (37, 53)
    # already a multiple: untouched
    same = TestPipeline(scale=None, size_divisor=1)(img, label)
    assert torch.equal(same["img"], normalise_image(img))


def test_pipeline_for_reads_test_size_divisor_from_the_config():
    from segmentation.engine.inference import inference_settings, pipeline_for

    settings = inference_settings({"test": {"scale": [2560, 640], "size_divisor": 32}}, {})
    pipe = pipeline_for(settings)
    assert pipe.size_divisor == 32 and pipe.scale == (2560, 640)
    img = np.zeros((37, 53, 3), np.uint8)
    out = pipe(img, np.zeros((37, 53), np.uint8))
    assert out["img"].shape == (3, 640, 928)  # 53 * 640/37 = 916.8 -> 917 -> 928
    assert pipeline_for(inference_settings({"test": {"size_divisor": None}}, {})).size_divisor is None
    with pytest.raises(ProlabError, match="size_divisor"):
        pipeline_for(inference_settings({"test": {"size_divisor": "32"}}, {}))


def test_label_resize_is_cv2_nearest_and_keeps_ids():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 7, (31, 47), dtype=np.uint8)
    label[0, 0] = 255
    for size in [(50, 77), (13, 19)]:
        got = resize(label, size, nearest=True)
        assert np.array_equal(got, cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST))
        assert set(np.unique(got)) <= set(np.unique(label))
