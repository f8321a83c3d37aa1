"""The train and test pipelines: shapes, padding, determinism, crop rule."""

from __future__ import annotations

import numpy as np
import torch

from segmentation.data.transforms import TestPipeline, TrainPipeline, random_crop_box, rescale_size


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
