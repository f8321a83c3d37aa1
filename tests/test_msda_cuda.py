"""CUDA kernels vs the reference (skipped without a CUDA device)."""

from __future__ import annotations

import pytest
import torch

from segmentation.ops import dispatch, ms_deform_attn_reference
from segmentation.ops.custom_op import ms_deform_attn_compiled
from test_msda import ODD_CASES, SPECIAL_CASES, grads, make_case

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def cuda_op():
    """The CUDA kernels, built on first use (a build failure fails the tests: a GPU is here)."""
    ok, reason = dispatch.compiled_available("cuda")
    assert ok, reason
    return ms_deform_attn_compiled


def _compare(case, rtol, atol):
    got = grads(ms_deform_attn_compiled, case)
    want = grads(ms_deform_attn_reference, case)
    for name, a, b in zip(("output", "grad value", "grad locations", "grad weights"), got, want):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("name", sorted(ODD_CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_reference(cuda_op, name, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for seed in range(2):
        _compare(make_case(**ODD_CASES[name], seed=seed, dtype=dtype, device="cuda"), tol, tol)


@pytest.mark.parametrize("name", sorted(SPECIAL_CASES))
def test_cuda_borders_and_pixel_centres(cuda_op, name):
    _compare(make_case(**SPECIAL_CASES[name], special=True, device="cuda"), 1e-10, 1e-10)


def test_cuda_gradcheck_float64(cuda_op):
    value, spatial, starts, loc, weights = make_case([(3, 4), (2, 2), (1, 1)], n=2, m=2, d=3, q=3, p=2,
                                                     device="cuda")
    loc = (torch.rand(loc.shape, dtype=torch.float64, device="cuda") * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, l, w: cuda_op(v, spatial, starts, l, w),
                                    (value, loc, weights), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision(cuda_op, dtype):
    value, spatial, starts, loc, weights = make_case([(16, 16), (8, 8)], n=2, m=4, d=32, q=64, p=4,
                                                     dtype=torch.float32, device="cuda")
    low = value.detach().to(dtype).requires_grad_()
    out = cuda_op(low, spatial, starts, loc, weights)
    upstream = torch.randn(out.shape, device="cuda").to(dtype)
    g = torch.autograd.grad(out, (low, loc, weights), upstream)
    high = low.detach().float().requires_grad_()
    ref = ms_deform_attn_reference(high, spatial, starts, loc, weights)
    want = torch.autograd.grad(ref, (high, loc, weights), upstream.float())
    eps = torch.finfo(dtype).eps
    assert out.dtype == dtype and g[0].dtype == dtype and g[1].dtype == torch.float32
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=2 * eps, atol=2 * eps)
    torch.testing.assert_close(g[0].float(), want[0].to(dtype).float(), rtol=4 * eps, atol=4 * eps)
    torch.testing.assert_close(g[1], want[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g[2], want[2], rtol=1e-4, atol=1e-4)


def test_cuda_float32_vit_adapter_b_extractor_whole_batch(cuda_op):
    """Extractor shapes (all 5,376 positions query the 32x32 ViT tokens), batch 5 in one launch."""
    case = make_case([(32, 32)], n=5, m=12, d=32, q=5376, p=4, dtype=torch.float32, device="cuda")
    got = grads(cuda_op, case)
    exact = grads(ms_deform_attn_reference,
                  tuple(t.detach().double().requires_grad_() if t.is_floating_point() else t for t in case))
    for name, a, e in zip(("output", "grad value", "grad locations", "grad weights"), got, exact):
        err = (a.double() - e).abs().max().item()
        assert err <= 1e-4 * e.abs().max().item(), f"{name}: error {err:.3g}"


def test_cuda_and_cpu_kernels_agree(cuda_op):
    case = make_case(**ODD_CASES["non-square levels"], dtype=torch.float64, device="cuda")
    cpu_case = tuple(t.detach().cpu().requires_grad_() if t.is_floating_point() else t.cpu() for t in case)
    for a, b in zip(grads(cuda_op, case), grads(cuda_op, cpu_case)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-10)
