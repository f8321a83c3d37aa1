"""Segmentation metrics exactly as MMSegmentation computes them.

Per image: pixels whose label is the ignore index are dropped, then the class histograms of the
intersection, the prediction and the label are taken; union = pred + label - intersection. These
areas are summed over the whole split; only then are IoU = I/U and Acc = I/label formed per class.
mIoU and mAcc are NaN-means, so classes with an empty union (never labelled nor predicted) leave
the mean; aAcc = sum(I) / sum(label area).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..labels import ignore_index_for


def intersect_and_union(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(area_intersect, area_union, area_pred, area_label), each float64 [num_classes], of one image."""
    pred = torch.as_tensor(pred).long().flatten()
    label = torch.as_tensor(label).long().flatten()
    if reduce_zero_label:
        label = torch.where(label == 0, torch.full_like(label, 255), label - 1)
        label = torch.where(label == 254, torch.full_like(label, 255), label)
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    inter = pred[pred == label]

    def hist(x: torch.Tensor) -> torch.Tensor:
        x = x[(x >= 0) & (x < num_classes)]
        return torch.bincount(x, minlength=num_classes).double()

    area_i, area_p, area_l = hist(inter), hist(pred), hist(label)
    return area_i, area_p + area_l - area_i, area_p, area_l


@dataclass
class SegMetric:
    """Accumulates areas over a split; :meth:`compute` gives aAcc, mIoU, mAcc and per-class rows.
    The ignore id defaults to that of label maps over ``num_classes`` classes (255, or 65535 above 255)."""

    num_classes: int
    ignore_index: int | None = None
    intersect: torch.Tensor = field(init=False)
    union: torch.Tensor = field(init=False)
    pred_area: torch.Tensor = field(init=False)
    label_area: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.ignore_index is None:
            self.ignore_index = ignore_index_for(self.num_classes)
        zeros = lambda: torch.zeros(self.num_classes, dtype=torch.float64)  # noqa: E731
        self.intersect, self.union, self.pred_area, self.label_area = zeros(), zeros(), zeros(), zeros()

    def update(self, pred: torch.Tensor, label: torch.Tensor, reduce_zero_label: bool = False) -> None:
        """Add one image's prediction [H,W] and label [H,W]."""
        i, u, p, l = intersect_and_union(pred, label, self.num_classes, self.ignore_index, reduce_zero_label)
        self.intersect += i
        self.union += u
        self.pred_area += p
        self.label_area += l

    def state(self) -> torch.Tensor:
        """The four area vectors stacked [4,C] (to all-reduce across processes)."""
        return torch.stack([self.intersect, self.union, self.pred_area, self.label_area])

    def load_state(self, state: torch.Tensor) -> None:
        """Replace the areas by a [4,C] stack (e.g. summed over processes)."""
        self.intersect, self.union, self.pred_area, self.label_area = (s.clone() for s in state)

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        """{'aAcc', 'mIoU', 'mAcc'} in percent plus 'per_class' rows {class, IoU, Acc} (NaN -> None)."""
        iou = self.intersect / self.union
        acc = self.intersect / self.label_area
        total = self.label_area.sum()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "aAcc": _pct(self.intersect.sum() / total) if total > 0 else None,
            "mIoU": _pct(torch.nanmean(iou)),
            "mAcc": _pct(torch.nanmean(acc)),
            "per_class": [
                {"class": n, "IoU": _pct(iou[c]), "Acc": _pct(acc[c])} for c, n in enumerate(names)
            ],
        }


def _pct(x: torch.Tensor) -> float | None:
    value = float(x) * 100.0
    return None if math.isnan(value) else value


def format_table(result: dict) -> str:
    """The per-class table and the summary line as MMSegmentation prints them (percent, 2 d.p.)."""
    rows = result["per_class"]
    width = max([len("Class")] + [len(r["class"]) for r in rows])
    fmt = lambda v: "nan" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"| {'Class':<{width}} |  IoU  |  Acc  |"]
    lines += [f"| {r['class']:<{width}} | {fmt(r['IoU']):>5} | {fmt(r['Acc']):>5} |" for r in rows]
    lines.append(f"aAcc {fmt(result['aAcc'])}  mIoU {fmt(result['mIoU'])}  mAcc {fmt(result['mAcc'])}")
    return "\n".join(lines)
