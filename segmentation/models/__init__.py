"""ViT-Adapter / BEiT-Adapter + UperNet segmentation models with a one-hot or ProLab property head.

    from segmentation.models import MODELS, build_model
    model = build_model("vit-adapter-nano", num_classes=5)
"""

from .property_head import PropertyBank
from .registry import MODELS, ModelConfig, build_backbone, build_model, model_config, parameter_count
from .segmentor import Segmentor

__all__ = ["MODELS", "ModelConfig", "PropertyBank", "Segmentor", "build_backbone", "build_model", "model_config",
           "parameter_count"]
