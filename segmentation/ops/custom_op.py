"""Python side of the ``prolab::ms_deform_attn`` custom op: fake (meta) kernels and autograd.

The schemas and the CPU/CUDA kernels come from the compiled library (``csrc/``); ``register``
must run once after it is loaded. With the fake kernels ``torch.compile`` and shape tracing
treat the op as an opaque node; the backward is the op ``prolab::ms_deform_attn_backward``.
"""

from __future__ import annotations

import torch

_registered = False


def _fake_forward(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                  sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_locations.shape[1], m * d))


def _fake_backward(grad_output: torch.Tensor, value: torch.Tensor, spatial_shapes: torch.Tensor,
                   level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty_like(value), torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights))


def _setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output: torch.Tensor) -> tuple:
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = torch.ops.prolab.ms_deform_attn_backward(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return grad_value, None, None, grad_locations, grad_weights


def register() -> None:
    """Attach the fake kernels and the autograd formula to the loaded op (idempotent)."""
    global _registered
    if _registered:
        return
    torch.library.register_fake("prolab::ms_deform_attn")(_fake_forward)
    torch.library.register_fake("prolab::ms_deform_attn_backward")(_fake_backward)
    torch.library.register_autograd("prolab::ms_deform_attn", _backward, setup_context=_setup_context)
    _registered = True


def compute_dtype(value: torch.Tensor) -> torch.dtype:
    """The dtype the kernels compute in (and take locations and weights in) for this value."""
    return torch.float64 if value.dtype == torch.float64 else torch.float32


def ms_deform_attn_compiled(value: torch.Tensor, spatial_shapes: torch.Tensor,
                            level_start_index: torch.Tensor, sampling_locations: torch.Tensor,
                            attention_weights: torch.Tensor) -> torch.Tensor:
    """Call the compiled op; locations and weights are cast to the kernels' compute dtype and the
    level table (which the reference also takes on the CPU) is moved to value's device."""
    dtype = compute_dtype(value)
    return torch.ops.prolab.ms_deform_attn(
        value, spatial_shapes.to(value.device, torch.long), level_start_index.to(value.device, torch.long),
        sampling_locations.to(dtype), attention_weights.to(dtype))
