"""The compiled kernels checked against the PyTorch reference on a small random case: the forward
output and the gradients of value, sampling locations and attention weights.

``dispatch`` runs it the first time the compiled op meets a CUDA tensor in a process (a kernel that
compiles is not yet one that computes right on that GPU) and falls back to the reference, loudly, on
a mismatch; ``prolab ops status --check`` runs it on demand for every device with kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: largest |compiled - reference| accepted (float32 kernels against the float32 reference)
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    """The largest absolute difference of each quantity, and whether all are within TOLERANCE."""

    device: str
    errors: dict[str, float]

    @property
    def ok(self) -> bool:
        """True when every difference is finite and within :data:`TOLERANCE`."""
        return all(err <= TOLERANCE for err in self.errors.values())

    def line(self) -> str:
        """The comparison in one line."""
        shown = ", ".join(f"{name} {err:.1e}" for name, err in self.errors.items())
        return f"max |compiled - reference| on {self.device}: {shown} (tolerance {TOLERANCE:g})"


def case(device: str) -> tuple[torch.Tensor, ...]:
    """A small fixed random case: three levels (5x7, 3x2, 1x1), locations partly outside [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[5, 7], [3, 2], [1, 1]])
    starts = torch.tensor([0, 35, 41])
    value = torch.randn(2, 42, 3, 8, generator=gen)
    locations = torch.rand(2, 9, 3, 3, 2, 2, generator=gen) * 1.2 - 0.1
    weights = torch.rand(2, 9, 3, 3, 2, generator=gen)
    return value.to(device), shapes.to(device), starts.to(device), locations.to(device), weights.to(device)


def compare(device: str) -> Comparison:
    """Run :func:`case` through the compiled op and the reference; forward and the three gradients."""
    from .custom_op import ms_deform_attn_compiled
    from .reference import ms_deform_attn_reference

    value, shapes, starts, locations, weights = case(device)
    results = []
    with torch.enable_grad():
        for op in (ms_deform_attn_compiled, ms_deform_attn_reference):
            inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
            out = op(inputs[0], shapes, starts, inputs[1], inputs[2])
            grad_out = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
            grads = torch.autograd.grad(out, inputs, grad_out)
            results.append((out.detach(), *grads))
    names = ("output", "grad value", "grad locations", "grad weights")
    errors = {}
    for name, mine, ref in zip(names, *results):
        diff = (mine.float() - ref.float()).abs().max().item()
        errors[name] = diff if diff == diff else float("inf")  # NaN counts as a mismatch
    return Comparison(device, errors)
