"""Chooses the implementation of multi-scale deformable attention that runs.

For now only the reference exists; the compiled CPU/CUDA kernels from ``csrc/`` plug in here.
"""

from __future__ import annotations

import torch

from .reference import ms_deform_attn_reference


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with the fastest available implementation."""
    return ms_deform_attn_reference(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
