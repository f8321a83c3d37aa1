"""Random inputs for the deformable-attention tests (shared by the CPU and CUDA test files)."""

from __future__ import annotations

import torch


def level_table(shapes: list[tuple[int, int]], device="cpu") -> tuple[torch.Tensor, torch.Tensor, int]:
    """spatial_shapes [L,2], level_start_index [L] and S for a list of (H, W)."""
    spatial = torch.tensor(shapes, dtype=torch.long, device=device)
    sizes = spatial[:, 0] * spatial[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return spatial, starts, int(sizes.sum())


def special_locations(shape, spatial: torch.Tensor, gen: torch.Generator, dtype) -> torch.Tensor:
    """Locations [N,Q,M,L,P,2] drawn per coordinate from exact borders (0, 1), the h = -1 and h = H
    edges of the zero padding, pixel centres, a random point and points outside [0, 1].

    With power-of-two level sizes all of these are exact in binary, so the kernel and
    ``grid_sample`` see the same pixel coordinates even at the kinks of bilinear interpolation.
    """
    n, q, m, levels, p = shape
    sizes = spatial.flip(-1).to(dtype)  # (W, H) per level, matching (x, y)
    size = sizes.view(1, 1, 1, levels, 1, 2).expand(n, q, m, levels, p, 2)
    pixel = torch.floor(torch.rand(size.shape, generator=gen, dtype=dtype) * size)
    options = torch.stack([
        torch.zeros_like(size),                                   # left/top border
        torch.ones_like(size),                                    # right/bottom border
        -0.5 / size,                                              # h = -1: only row 0 contributes
        1 + 0.5 / size,                                           # h = H: nothing contributes
        (pixel + 0.5) / size,                                     # pixel centre
        pixel / size,                                             # pixel edge
        torch.rand(size.shape, generator=gen, dtype=dtype),       # anywhere inside
        torch.rand(size.shape, generator=gen, dtype=dtype) * 3 - 1,  # mostly outside
    ], -1)
    pick = torch.randint(0, options.shape[-1], size.shape, generator=gen)
    return options.gather(-1, pick[..., None])[..., 0]


def make_case(shapes, n=2, m=3, d=4, q=5, p=2, dtype=torch.float64, seed=0, special=False, device="cpu"):
    """(value, spatial_shapes, level_start_index, sampling_locations, attention_weights), leaves with grad."""
    gen = torch.Generator().manual_seed(seed)
    spatial, starts, s = level_table(shapes)
    levels = len(shapes)
    value = torch.randn(n, s, m, d, generator=gen, dtype=dtype)
    if special:
        loc = special_locations((n, q, m, levels, p), spatial, gen, dtype)
    else:
        loc = torch.rand(n, q, m, levels, p, 2, generator=gen, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(n, q, m, levels, p, generator=gen, dtype=dtype)
    tensors = [t.to(device).requires_grad_() for t in (value, loc, weights)]
    return tensors[0], spatial.to(device), starts.to(device), tensors[1], tensors[2]


def grads(fn, case, seed=1):
    """Output and gradients of (value, locations, weights) for a random upstream gradient."""
    value, spatial, starts, loc, weights = case
    out = fn(value, spatial, starts, loc, weights)
    gen = torch.Generator().manual_seed(seed)
    upstream = torch.randn(out.shape, generator=gen).to(device=out.device, dtype=out.dtype)
    return (out, *torch.autograd.grad(out, (value, loc, weights), upstream))


# --------------------------------------------------------------------------------------------
# CPU kernels vs the reference

import pytest  # noqa: E402

from segmentation.ops import build, custom_op, dispatch, ms_deform_attn_reference  # noqa: E402
from segmentation.ops.custom_op import ms_deform_attn_compiled  # noqa: E402

ODD_CASES = {
    "non-square levels": dict(shapes=[(6, 4), (3, 7), (2, 5)], n=2, m=3, d=5, q=7, p=3),
    "1x1 levels": dict(shapes=[(1, 1), (4, 3), (1, 1)], n=1, m=2, d=3, q=6, p=2),
    "single level": dict(shapes=[(5, 9)], n=2, m=2, d=4, q=8, p=4),
    "one point": dict(shapes=[(4, 4), (2, 3)], n=3, m=2, d=6, q=5, p=1),
    "many heads": dict(shapes=[(3, 5), (2, 2)], n=1, m=16, d=2, q=4, p=2),
    "one row, one column": dict(shapes=[(1, 9), (7, 1)], n=2, m=1, d=3, q=9, p=3),
    "long channels": dict(shapes=[(3, 3)], n=1, m=1, d=67, q=3, p=2),
    # the channel counts with compile-time specialisations
    "16 channels": dict(shapes=[(5, 3), (2, 2)], n=2, m=2, d=16, q=6, p=2),
    "32 channels": dict(shapes=[(4, 7), (1, 1)], n=1, m=3, d=32, q=5, p=3),
    "64 channels": dict(shapes=[(3, 6)], n=2, m=1, d=64, q=4, p=2),
    # empty dimensions: nothing to sample, or no query
    "no points": dict(shapes=[(3, 4), (2, 2)], n=2, m=3, d=32, q=5, p=0),
    "no queries": dict(shapes=[(3, 4), (2, 2)], n=2, m=3, d=32, q=0, p=2),
}
SPECIAL_CASES = {
    "dyadic levels": dict(shapes=[(8, 4), (2, 16), (1, 1)], n=2, m=3, d=4, q=16, p=3),
    "dyadic single level": dict(shapes=[(4, 4)], n=1, m=2, d=3, q=32, p=2),
}


@pytest.fixture(scope="module")
def compiled():
    """The CPU kernels, built on first use into PROLAB_BUILD_DIR (a compile failure fails the tests)."""
    build.build_and_load("cpu")
    custom_op.register()
    return ms_deform_attn_compiled


@pytest.fixture(params=["base", "avx2", "avx512"])
def cpu_isa(request, compiled, monkeypatch):
    """The CPU kernels forced to one instruction set (PROLAB_MSDA_CPU_ISA); skipped where the CPU lacks it."""
    monkeypatch.setenv("PROLAB_MSDA_CPU_ISA", request.param)
    try:
        chosen = torch.ops.prolab.ms_deform_attn_cpu_isa()
    except RuntimeError as exc:
        if "has at most" not in str(exc):
            raise
        pytest.skip(str(exc).splitlines()[0])
    assert chosen.split()[0] == request.param  # a portable build adds a note
    return chosen


def _assert_match(fn, case, rtol=1e-10, atol=1e-10):
    got = grads(fn, case)
    want = grads(ms_deform_attn_reference, case)
    for name, a, b in zip(("output", "grad value", "grad locations", "grad weights"), got, want):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("name", sorted(ODD_CASES))
def test_cpu_matches_reference_on_odd_shapes(compiled, name):
    for seed in range(3):
        _assert_match(compiled, make_case(**ODD_CASES[name], seed=seed))


@pytest.mark.parametrize("name", sorted(SPECIAL_CASES))
def test_cpu_matches_reference_on_borders_and_pixel_centres(compiled, name):
    for seed in range(3):
        _assert_match(compiled, make_case(**SPECIAL_CASES[name], seed=seed, special=True))


def test_every_instruction_set_matches_reference(cpu_isa):
    """Each compiled path (baseline, AVX2, AVX-512; vector and scalar channel loops) against float64."""
    for name in ("16 channels", "32 channels", "64 channels", "long channels"):
        _assert_match(ms_deform_attn_compiled, make_case(**ODD_CASES[name]))
    _assert_match(ms_deform_attn_compiled, make_case(**{**SPECIAL_CASES["dyadic levels"], "d": 32}, special=True))


def test_non_finite_and_far_locations_add_nothing(cpu_isa):
    """NaN, infinite and huge locations contribute nothing and get zero gradients, as if their weight were 0."""
    value, spatial, starts, loc, weights = make_case([(6, 5), (3, 3)], n=2, m=2, d=32, q=9, p=4, seed=7)
    bad = torch.zeros(loc.shape[:-1], dtype=torch.bool)
    bad.view(-1)[::3] = True
    poison = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30], dtype=loc.dtype)
    odd = loc.detach().clone()
    odd[bad] = poison[torch.arange(int(bad.sum())) % len(poison)].unsqueeze(-1).expand(-1, 2)
    odd[bad.nonzero()[::2].unbind(-1)] = torch.tensor([0.5, float("nan")], dtype=loc.dtype)  # one bad coordinate
    zeroed = weights.detach().clone()
    zeroed[bad] = 0
    got = grads(ms_deform_attn_compiled, (value, spatial, starts, odd.requires_grad_(), weights))
    want = grads(ms_deform_attn_compiled, (value, spatial, starts, loc, zeroed.requires_grad_()))
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    assert torch.isfinite(got[2]).all() and torch.isfinite(got[3]).all()
    assert (got[2][bad] == 0).all() and (got[3][bad] == 0).all()


def test_unknown_instruction_set_is_refused(compiled, monkeypatch):
    monkeypatch.setenv("PROLAB_MSDA_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="PROLAB_MSDA_CPU_ISA=sse9: choose base, avx2 or avx512"):
        ms_deform_attn_compiled(*make_case([(3, 3)], d=32))


def test_special_locations_hit_every_kind_of_point():
    spatial, _, _ = level_table([(8, 4)])
    loc = special_locations((1, 64, 1, 1, 4), spatial, torch.Generator().manual_seed(0), torch.float64)
    x = loc[..., 0] * 4 - 0.5  # pixel coordinate along W
    assert (loc == 0).any() and (loc == 1).any() and (x == -1).any() and (x == 4).any()
    assert ((x == x.round()) & (x >= 0) & (x <= 3)).any()  # exactly on pixel centres
    assert ((loc < 0) | (loc > 1)).any()


def test_cpu_gradcheck_float64(compiled):
    value, spatial, starts, loc, weights = make_case([(3, 4), (2, 2), (1, 1)], n=1, m=2, d=3, q=3, p=2)
    # keep locations away from the kinks of bilinear interpolation (finite differences)
    loc = (torch.rand(loc.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 0.9
           + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, l, w: compiled(v, spatial, starts, l, w),
                                    (value, loc, weights), eps=1e-6, atol=1e-5)


def test_cpu_float32_vit_adapter_b_injector(cpu_isa):
    """ViT-Adapter-B at 512: 32x32 ViT tokens query levels 64², 32², 16² (M=12, D=32, P=4)."""
    value, spatial, starts, loc, weights = make_case([(64, 64), (32, 32), (16, 16)], n=1, m=12, d=32,
                                                     q=1024, p=4, dtype=torch.float32, special=False)
    weights = weights.detach().softmax(-1).requires_grad_()
    case = (value, spatial, starts, loc, weights)
    got = grads(ms_deform_attn_compiled, case)
    exact = [t.double() for t in grads(ms_deform_attn_reference,
                                       tuple(t.detach().double().requires_grad_() if t.is_floating_point()
                                             else t for t in case))]
    ref32 = grads(ms_deform_attn_reference, case)
    for name, a, r, e in zip(("output", "grad value", "grad locations", "grad weights"), got, ref32, exact):
        err = (a.double() - e).abs().max().item()
        ref_err = (r.double() - e).abs().max().item()
        scale = e.abs().max().item()
        # the kernels must be about as accurate as float32 grid_sample, and close to float64
        assert err <= 4 * ref_err + 1e-6 * scale, f"{name}: kernel error {err:.3g} vs reference {ref_err:.3g}"
        assert err <= 1e-4 * scale, f"{name}: error {err:.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_precision_computes_in_float32(compiled, dtype):
    value, spatial, starts, loc, weights = make_case([(5, 6), (2, 3)], dtype=torch.float32, seed=4)
    low = value.detach().to(dtype).requires_grad_()
    out = compiled(low, spatial, starts, loc, weights)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    g_value, g_loc, g_w = torch.autograd.grad(out, (low, loc, weights), upstream)
    assert out.dtype == dtype and g_value.dtype == dtype and g_loc.dtype == torch.float32
    # the same rounded inputs through the float32 reference
    high = low.detach().float().requires_grad_()
    ref = ms_deform_attn_reference(high, spatial, starts, loc, weights)
    want = torch.autograd.grad(ref, (high, loc, weights), upstream.float())
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=eps, atol=eps)
    torch.testing.assert_close(g_value.float(), want[0].to(dtype).float(), rtol=eps, atol=eps)
    torch.testing.assert_close(g_loc, want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_w, want[2], rtol=1e-5, atol=1e-5)


def test_cpu_rejects_bad_inputs(compiled):
    value, spatial, starts, loc, weights = make_case([(3, 4)])
    with pytest.raises(RuntimeError, match="does not fit in value"):
        compiled(value, torch.tensor([[4, 4]]), starts, loc, weights)
    with pytest.raises(RuntimeError, match="attention_weights must be"):
        torch.ops.prolab.ms_deform_attn(value, spatial, starts, loc, weights[..., :1])
    with pytest.raises(RuntimeError, match="must be Double for a Double value"):
        torch.ops.prolab.ms_deform_attn(value, spatial, starts, loc.float(), weights)


def test_cpu_refuses_levels_of_2_30_pixels(compiled):
    """The kernels index a level's pixels with int32; a 32768² level is refused before value is touched
    (an expanded, stride-0 value stands in for the 4 GB one)."""
    value = torch.zeros(1, 1, 1, 1).expand(1, 2**30, 1, 1)
    spatial, starts = torch.tensor([[2**15, 2**15]]), torch.tensor([0])
    loc, weights = torch.rand(1, 1, 1, 1, 1, 2), torch.rand(1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match=r"level 0 \(32768x32768\) has 2\^30 pixels or more"):
        torch.ops.prolab.ms_deform_attn(value, spatial, starts, loc, weights)
    with pytest.raises(RuntimeError, match=r"has 2\^30 pixels or more"):
        torch.ops.prolab.ms_deform_attn_backward(torch.zeros(1, 1, 1), value, spatial, starts, loc, weights)


def test_dispatch_rejects_bad_shapes_with_one_line_error():
    from prolab_cli.errors import ProlabError

    value, spatial, starts, loc, weights = make_case([(3, 4)])
    with pytest.raises(ProlabError, match="attention_weights must be"):
        dispatch.ms_deform_attn(value, spatial, starts, loc, weights[:, :2])
    with pytest.raises(ProlabError, match="value must be"):
        dispatch.ms_deform_attn(value[0], spatial, starts, loc, weights)


# --------------------------------------------------------------------------------------------
# the custom op: fake kernels, torch.compile, opcheck

def test_opcheck(compiled):
    case = make_case([(3, 4), (1, 2)], n=1, m=2, d=3, q=4, p=2, dtype=torch.float32)
    torch.library.opcheck(torch.ops.prolab.ms_deform_attn.default, case,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_fake_and_meta_shapes(compiled):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        value = torch.empty(2, 20, 3, 8)
        out = torch.ops.prolab.ms_deform_attn(value, torch.tensor([[4, 5]]), torch.tensor([0]),
                                              torch.empty(2, 7, 3, 1, 4, 2), torch.empty(2, 7, 3, 1, 4))
    assert out.shape == (2, 7, 24) and mode is not None
    meta = torch.ops.prolab.ms_deform_attn(torch.empty(2, 20, 3, 8, device="meta"),
                                           torch.empty(1, 2, dtype=torch.long, device="meta"),
                                           torch.empty(1, dtype=torch.long, device="meta"),
                                           torch.empty(2, 7, 3, 1, 4, 2, device="meta"),
                                           torch.empty(2, 7, 3, 1, 4, device="meta"))
    assert meta.shape == (2, 7, 24) and meta.device.type == "meta"


def test_torch_compile_fullgraph_forward_and_backward(compiled, monkeypatch):
    """The op stays one opaque node in the traced forward and backward graphs (fake kernels)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    monkeypatch.setenv("PROLAB_MSDA", "compiled")
    graphs = []

    def keep(gm, example_inputs):
        graphs.append(gm.code)
        return make_boxed_func(gm.forward)

    case = make_case([(4, 6), (2, 3)], n=2, m=2, d=4, q=5, p=2, dtype=torch.float32)
    torch._dynamo.reset()
    try:
        fn = torch.compile(dispatch.ms_deform_attn, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep),
                           fullgraph=True)
        got = grads(fn, case)
    finally:
        torch._dynamo.reset()
    want = grads(ms_deform_attn_reference, case)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert len(graphs) == 2
    assert "torch.ops.prolab.ms_deform_attn.default" in graphs[0]
    assert "torch.ops.prolab.ms_deform_attn_backward.default" in graphs[1]


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "msda.py"
    spec = importlib.util.spec_from_file_location("bench_msda", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("back_to_back", [False, True])
def test_benchmark_call_order(back_to_back):
    bench = _bench_module()
    calls = []

    def recorder(name):
        def fn(value, *rest):
            calls.append((name, torch.is_grad_enabled() and value.requires_grad))
            return ms_deform_attn_reference(value, *rest)
        return fn

    times = bench.time_case("b512-extractor", "cpu", 2, {"a": recorder("a"), "b": recorder("b")}, back_to_back)
    assert set(times) == {"a_fwd_s", "a_fwdbwd_s", "b_fwd_s", "b_fwdbwd_s"}
    keys = [("a", False), ("a", True), ("b", False), ("b", True)]
    if back_to_back:  # warm-up and two timed calls of each, one key after another
        assert calls == [key for key in keys for _ in range(3)]
    else:  # round robin, so that all see the same machine load
        assert calls == keys * 3


def test_benchmark_shapes_are_vit_adapter_shapes():
    bench = _bench_module()
    expected = {  # (Q, S, M, L)
        "b512-injector": (32 * 32, 64 * 64 + 32 * 32 + 16 * 16, 12, 3),
        "b512-extractor": (5376, 32 * 32, 12, 1),
        "l640-injector": (40 * 40, 80 * 80 + 40 * 40 + 20 * 20, 16, 3),
        "l640-extractor": (8400, 40 * 40, 16, 1),
    }
    assert set(bench.CASES) == set(expected)
    for case, (q, s, m, levels) in expected.items():
        value, spatial, starts, loc, weights = bench.make_inputs(case, "cpu")
        assert value.shape == (2, s, m, 32) and loc.shape == (2, q, m, levels, 4, 2)
        assert int(starts[-1] + spatial[-1].prod()) == s
        torch.testing.assert_close(weights.sum((-1, -2)), torch.ones(2, q, m))
        inside = ((loc >= 0) & (loc <= 1)).all(-1).float().mean().item()
        assert inside > 0.8  # offsets of a few pixels around each query's own position


def test_cpu_results_do_not_depend_on_thread_count(cpu_isa):
    case = make_case([(9, 7), (3, 5)], n=2, m=3, d=32, q=40, p=4, dtype=torch.float32, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grads(ms_deform_attn_compiled, case)
        torch.set_num_threads(max(2, threads))
        many = grads(ms_deform_attn_compiled, case)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert torch.equal(a, b)
