"""ViT-Adapter / BEiT-Adapter + UperNet segmentation models with a one-hot or ProLab property head.

    from segmentation.models import build_segmentor, PRESETS
    model = build_segmentor("vit-adapter-nano", num_classes=5)
"""

from .presets import PRESETS, ModelConfig, build_backbone, build_segmentor, resolve_config
from .property_head import PropertyBank
from .segmentor import Segmentor

__all__ = ["PRESETS", "ModelConfig", "PropertyBank", "Segmentor", "build_backbone",
           "build_segmentor", "resolve_config"]
