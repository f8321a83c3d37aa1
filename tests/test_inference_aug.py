"""Flip at test time averages what MMSegmentation 0.x (and ProLab's segmentor) averages: each pass's
class scores are resized to the label size, soft-maxed, flipped back, then the passes are averaged."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from segmentation.engine.inference import inference_settings, scores_for
from segmentation.engine.inference import class_probabilities, infer_scores


def _scorer() -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 5, padding=2)  # not mirror-symmetric: the flipped pass differs
    with torch.no_grad():
        conv.weight.mul_(8.0)  # sharp scores, so where the average is taken matters
    return conv.eval()


def _mmseg_aug_test(fn, img, size):
    """mmseg's inference + aug_test for one scale with flip=[False, True] (whole mode)."""
    outs = []
    for flip in (False, True):
        x = img.flip(-1) if flip else img
        logit = F.interpolate(fn(x), size=size, mode="bilinear", align_corners=False)
        prob = F.softmax(logit, dim=1)
        outs.append(prob.flip(-1) if flip else prob)
    return sum(outs) / len(outs)


def test_flip_averages_softmax_of_each_resized_pass():
    fn, img, size = _scorer(), torch.randn(1, 3, 32, 64), (45, 70)
    with torch.no_grad():
        got = infer_scores(fn, img, 4, size, "whole", flip=True, to_probs=class_probabilities(4))
        want = _mmseg_aug_test(fn, img, size)
        # averaging the raw scores first (the previous behaviour) is measurably different
        raw = infer_scores(fn, img, 4, size, "whole", flip=True)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (F.softmax(raw, dim=1) - want).abs().max() > 1e-2
    assert torch.allclose(got.sum(1), torch.ones(1, *size))


def test_scores_for_gives_probabilities_and_keeps_property_channels():
    fn, img = _scorer(), torch.randn(1, 3, 32, 32)
    settings = inference_settings(None, {"flip": True})
    with torch.no_grad():
        probs = scores_for(settings, fn, img, 4, (32, 32))
        mixed = scores_for(settings, fn, img, 4, (32, 32), num_classes=2)
        raw = (fn(img) + fn(img.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(probs, _mmseg_aug_test(fn, img, (32, 32)), rtol=0, atol=1e-6)
    # two class channels soft-maxed per pass; the other two (e.g. property scores) averaged as they are
    torch.testing.assert_close(mixed[:, 2:], raw[:, 2:], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[:, :2].sum(1), torch.ones(1, 32, 32))
    no_flip = scores_for(inference_settings(None, {}), fn, img, 4, (32, 32))
    assert torch.equal(no_flip.argmax(1), fn(img).argmax(1))
