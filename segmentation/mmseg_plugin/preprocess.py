"""The BEiTv2 row's test-time PadShortSide inside MMSeg 1.x, computing what the released MMSeg 0.x
pipeline computes.

MMSeg 1.x's own test padding (``SegDataPreProcessor(test_cfg=dict(size=...))``) records the padding
and crops it from the prediction before resizing to the original shape; the released pipeline
(ViT-Adapter's ``PadShortSide`` after ``Normalize``, then ProLab's ``slide_inference``) resizes the
whole padded prediction. This pre-processor pads as the original does and records no padding, so
MMSeg's ``postprocess_result`` resizes the padded prediction whole, as ``prolab eval`` does.
"""

from __future__ import annotations

from typing import Any

from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS

from prolab_cli.errors import ProlabError

from ..data.transforms import check_positive_or_none, pad_short_side


@MODELS.register_module()
class ProLabSegDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` that, at test time, zero-pads the normalised batch (bottom/right) to a
    short side of ``pad_short_side`` (null: off), without recording the padding."""

    def __init__(self, *args: Any, pad_short_side: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.pad_short_side = check_positive_or_none(pad_short_side, "pad_short_side")
        except ProlabError as exc:
            raise ProlabError(f"ProLabSegDataPreProcessor: {exc}") from None
        if self.pad_short_side is not None and self.test_cfg:
            raise ProlabError("ProLabSegDataPreProcessor: pad_short_side and test_cfg padding exclude each other "
                              "(test_cfg padding is cropped from the prediction, the original's PadShortSide is not)")

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:
        out = super().forward(data, training)
        if not training and self.pad_short_side is not None:
            out["inputs"] = pad_short_side(out["inputs"], self.pad_short_side)
        return out
