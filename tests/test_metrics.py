"""The metric against hand-computed cases (ignore index, reduce_zero_label, absent classes)."""

from __future__ import annotations

import math

import pytest
import torch

from segmentation.engine.metrics import SegMetric, format_table, intersect_and_union


def test_intersect_and_union_by_hand():
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    label = torch.tensor([[0, 1, 1], [1, 2, 255]])
    i, u, p, l = intersect_and_union(pred, label, 3)
    # the pixel labelled 255 (pred 2) is dropped everywhere
    assert i.tolist() == [1, 2, 1]
    assert p.tolist() == [2, 2, 1]
    assert l.tolist() == [1, 3, 1]
    assert u.tolist() == [2, 3, 1]


def test_reduce_zero_label_in_metric():
    pred = torch.tensor([0, 1, 1, 0])
    label = torch.tensor([1, 2, 0, 1])  # raw: 0 = ignore, 1 -> class 0, 2 -> class 1
    i, u, _, l = intersect_and_union(pred, label, 2, reduce_zero_label=True)
    assert i.tolist() == [2, 1] and l.tolist() == [2, 1] and u.tolist() == [2, 1]


def test_split_sums_before_dividing_and_absent_classes_leave_the_mean():
    m = SegMetric(num_classes=4)
    m.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]))
    m.update(torch.tensor([1, 1, 3, 255]), torch.tensor([1, 1, 1, 255]))
    r = m.compute(["a", "b", "c", "d"])
    # totals: I = [2,3,0,0], pred = [2,4,0,1], label = [3,4,0,0], union = [3,5,0,1]
    iou = {row["class"]: row["IoU"] for row in r["per_class"]}
    acc = {row["class"]: row["Acc"] for row in r["per_class"]}
    assert iou["a"] == pytest.approx(200 / 3) and iou["b"] == pytest.approx(60.0)
    assert iou["c"] is None and iou["d"] == 0.0
    assert acc["b"] == pytest.approx(75.0) and acc["c"] is None and acc["d"] is None
    assert r["mIoU"] == pytest.approx((200 / 3 + 60 + 0) / 3)
    assert r["mAcc"] == pytest.approx((200 / 3 + 75) / 2)
    assert r["aAcc"] == pytest.approx(500 / 7)
    # the mean of per-image IoUs differs: MMSeg sums areas over the split first
    per_image = ((200 / 3 + 50) / 2 + (200 / 3 + 0) / 2) / 2
    assert not math.isclose(r["mIoU"], per_image)
    table = format_table(r)
    assert "| c     |   nan |   nan |" in table and "mIoU 42.22" in table


def test_state_round_trip_for_all_reduce():
    a, b = SegMetric(3), SegMetric(3)
    a.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    b.load_state(a.state() * 2)
    assert b.compute()["mIoU"] == pytest.approx(a.compute()["mIoU"])
