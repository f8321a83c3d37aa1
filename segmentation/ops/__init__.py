"""Multi-scale deformable attention: the op (compiled kernels or the PyTorch reference) and
the ``MSDeformAttn`` module that ViT-Adapter uses.

The C++/CUDA kernels in ``csrc/`` are compiled on the op's first use (``build``) or ahead of
time by ``prolab ops build``; ``PROLAB_MSDA=auto|reference|compiled`` picks the implementation
(``dispatch``) and ``prolab ops status`` says which one runs on CPU and CUDA tensors and why.
Importing this package compiles nothing.
"""

from .dispatch import ms_deform_attn
from .modules import MSDeformAttn
from .reference import ms_deform_attn_reference

__all__ = ["MSDeformAttn", "ms_deform_attn", "ms_deform_attn_reference"]
