"""Multi-scale deformable attention: the op (compiled kernels or the PyTorch reference) and
the ``MSDeformAttn`` module that ViT-Adapter uses."""

from .dispatch import ms_deform_attn
from .modules import MSDeformAttn
from .reference import ms_deform_attn_reference

__all__ = ["MSDeformAttn", "ms_deform_attn", "ms_deform_attn_reference"]
