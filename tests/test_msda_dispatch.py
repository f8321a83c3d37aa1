"""Choosing the deformable-attention implementation: first-use build, fallback, PROLAB_MSDA, CLI."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation.ops import MSDeformAttn, build, dispatch, ms_deform_attn, ms_deform_attn_reference
from test_msda import make_case


def naive_msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> torch.Tensor:
    """Deformable attention written out point by point in float64 (no grid_sample): each sample
    reads pixel (x * W - 0.5, y * H - 0.5) of its level bilinearly, zero outside the map."""
    value, loc, weights = (t.detach().double() for t in (value, sampling_locations, attention_weights))
    n, _, m, d = value.shape
    _, q, _, levels, points, _ = loc.shape
    out = torch.zeros(n, q, m, d, dtype=torch.float64)
    for b, i, h, lvl, p in itertools.product(range(n), range(q), range(m), range(levels), range(points)):
        height, width = (int(v) for v in spatial_shapes[lvl])
        start = int(level_start_index[lvl])
        x = float(loc[b, i, h, lvl, p, 0]) * width - 0.5
        y = float(loc[b, i, h, lvl, p, 1]) * height - 0.5
        x0, y0 = math.floor(x), math.floor(y)
        for row, col in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
            if 0 <= row < height and 0 <= col < width:
                share = (1 - abs(y - row)) * (1 - abs(x - col))
                out[b, i, h] += weights[b, i, h, lvl, p] * share * value[b, start + row * width + col, h]
    return out.reshape(n, q, m * d)


def test_reference_matches_the_point_by_point_definition():
    """The oracle above and the grid_sample reference agree on borders, padding edges and pixel
    centres of non-square levels, so the tests that compare against the oracle test the op."""
    case = make_case([(4, 8), (2, 2), (1, 4)], n=1, m=2, d=3, q=6, p=3, special=True, seed=4)
    torch.testing.assert_close(ms_deform_attn_reference(*case).detach(), naive_msda(*case), rtol=1e-10, atol=1e-10)


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """A dispatcher that has not tried to load the kernels yet (the library itself may be loaded)."""
    monkeypatch.setattr(dispatch, "_state", dispatch._State())
    return dispatch


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path, fresh_dispatch):
    """A process in which the kernels were never loaded and the C++ compiler does not exist."""
    monkeypatch.setattr(build, "_loaded", None)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    monkeypatch.setenv("PROLAB_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.delenv("PROLAB_MSDA", raising=False)


def test_compile_failure_falls_back_to_reference_with_one_warning(broken_compiler):
    case = make_case([(4, 5), (2, 2)], dtype=torch.float32)
    expected = "on CPU tensors falls back to the PyTorch reference"
    with pytest.warns(dispatch.KernelFallbackWarning, match=expected) as record:
        first = ms_deform_attn(*case)
        second = ms_deform_attn(*case)
    assert len([w for w in record if issubclass(w.category, dispatch.KernelFallbackWarning)]) == 1
    assert "building the cpu deformable-attention kernels failed" in str(record[0].message)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first.double(), naive_msda(*case), rtol=1e-5, atol=1e-5)
    assert dispatch.compiled_available("cpu")[0] is False


def test_forced_compiled_raises_when_unavailable(broken_compiler, monkeypatch):
    monkeypatch.setenv("PROLAB_MSDA", "compiled")
    case = make_case([(3, 3)], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dispatch.KernelFallbackWarning)
        with pytest.raises(ProlabError, match="PROLAB_MSDA=compiled but .* unavailable for cpu tensors"):
            ms_deform_attn(*case)


def test_forced_reference_never_builds(broken_compiler, monkeypatch):
    monkeypatch.setenv("PROLAB_MSDA", "reference")
    case = make_case([(3, 3)], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: nothing was attempted
        out = ms_deform_attn(*case)
    torch.testing.assert_close(out.double(), naive_msda(*case), rtol=1e-5, atol=1e-5)
    assert dispatch._state.attempted is False and build.loaded() is None


def test_bad_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PROLAB_MSDA", "fast")
    with pytest.raises(ProlabError, match="PROLAB_MSDA='fast' is not one of auto, reference, compiled"):
        ms_deform_attn(*make_case([(2, 2)]))


def test_auto_uses_compiled_kernels_and_module_agrees(fresh_dispatch, monkeypatch):
    """ViT-Adapter-B extractor-shaped module (names/shapes of the released checkpoints)."""
    monkeypatch.delenv("PROLAB_MSDA", raising=False)
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=768, n_levels=1, n_heads=12, n_points=4, ratio=0.5)
    shapes = {k: list(v.shape) for k, v in attn.state_dict().items()}
    assert shapes == {
        "sampling_offsets.weight": [96, 768], "sampling_offsets.bias": [96],
        "attention_weights.weight": [48, 768], "attention_weights.bias": [48],
        "value_proj.weight": [384, 768], "value_proj.bias": [384],
        "output_proj.weight": [768, 384], "output_proj.bias": [768],
    }
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.02)
        attn.attention_weights.weight.normal_(0, 0.02)
    query = torch.randn(1, 40, 768)
    feat = torch.randn(1, 36, 768)
    ref_points = torch.rand(1, 40, 1, 2)
    spatial = torch.tensor([[4, 9]])
    start = torch.tensor([0])
    out = attn(query, ref_points, feat, spatial, start)
    assert dispatch.compiled_available("cpu")[0], dispatch.compiled_available("cpu")[1]
    monkeypatch.setenv("PROLAB_MSDA", "reference")
    want = attn(query, ref_points, feat, spatial, start)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_importing_and_building_modules_compiles_nothing(tmp_path):
    code = (
        "import sys, segmentation.ops as ops\n"
        "from segmentation.ops import MSDeformAttn, build\n"
        "MSDeformAttn(64, 3, 4, 4, 0.5)\n"
        "assert build.loaded() is None\n"
        "assert 'torch.utils.cpp_extension' not in sys.modules\n"
    )
    env = dict(os.environ, PROLAB_BUILD_DIR=str(tmp_path / "build"), PROLAB_CACHE=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not (tmp_path / "build").exists() or not any((tmp_path / "build").iterdir())


def test_cli_status_and_build():
    runner = CliRunner()
    built = runner.invoke(main, ["ops", "build", "--variant", "cpu"])
    assert built.exit_code == 0, built.output
    assert "cpu kernels" in built.output and ".so" in built.output
    status = runner.invoke(main, ["ops", "status", "--check"])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    cpu = [line for line in lines if line.startswith("cpu: ")]
    assert cpu[0].startswith("cpu: compiled (cpu kernels, built: ") and "check passed" in cpu[1]
    cuda = [line for line in lines if line.startswith("cuda: ")]
    if torch.version.cuda is None:
        assert cuda == [f"cuda: none: torch {torch.__version__} is a CPU-only build"]


def test_cli_status_reports_forced_reference(monkeypatch):
    monkeypatch.setenv("PROLAB_MSDA", "reference")
    result = CliRunner().invoke(main, ["ops", "status"])
    assert result.exit_code == 0, result.output
    assert "cpu: reference (PROLAB_MSDA=reference)" in result.output.splitlines()


def test_cli_build_unknown_variant_is_a_usage_error():
    result = CliRunner().invoke(main, ["ops", "build", "--variant", "tpu"])
    assert result.exit_code == 1 and "tpu" in result.output  # usage errors: one line, status 1


def test_cuda_variant_on_cpu_torch_is_a_clear_error():
    if torch.version.cuda is not None:
        pytest.skip("torch has CUDA")
    result = CliRunner().invoke(main, ["ops", "build", "--variant", "cuda"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: cannot build the CUDA kernels: torch {torch.__version__} "
                                     "is a CPU-only build")


def test_sources_are_found_and_hashed():
    assert (build.sources_dir() / "msda_cuda.cu").is_file()
    name = build.extension_name("cpu")
    assert name.startswith("prolab_msda_cpu_") and name == build.extension_name("cpu")
    assert json.dumps(build.source_files("cuda"), default=str).count(".cu") == 1


@pytest.mark.parametrize("mode", ["reference", "compiled"])
def test_mixed_dtypes_return_value_dtype(monkeypatch, fresh_dispatch, mode):
    """As under autocast: a bfloat16 value with float32 locations and weights."""
    monkeypatch.setenv("PROLAB_MSDA", mode)
    value, spatial, starts, loc, weights = make_case([(4, 4), (2, 1)], dtype=torch.float32)
    out = ms_deform_attn(value.to(torch.bfloat16), spatial, starts, loc, weights)
    assert out.dtype == torch.bfloat16
    want = naive_msda(value.to(torch.bfloat16), spatial, starts, loc, weights)
    torch.testing.assert_close(out.double(), want, rtol=1e-2, atol=1e-2)


def test_sources_found_in_an_installed_layout(tmp_path):
    """Without a csrc/ checkout the sources come from the segmentation._csrc package of a wheel."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(build.sources_dir().parent / "segmentation", site / "segmentation",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(build.sources_dir(), site / "segmentation" / "_csrc")
    shutil.copytree(build.sources_dir().parent / "prolab_cli", site / "prolab_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = "from segmentation.ops import build; print(build.sources_dir())"
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120,
                         capture_output=True, text=True).stdout.strip()
    assert out == str(site / "segmentation" / "_csrc")


def test_cli_build_failure_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "_loaded", None)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    monkeypatch.setenv("PROLAB_BUILD_DIR", str(tmp_path / "build"))
    result = CliRunner().invoke(main, ["ops", "build", "--variant", "cpu"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, result.output
    assert error[0].startswith("Error: building the cpu deformable-attention kernels failed: ")
    assert "no-such-c++" in error[0] and error[0].endswith("(--verbose shows the compiler output)")


def test_gpu_without_cuda_toolkit_warns_for_cuda_only(monkeypatch, fresh_dispatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build, "cuda_toolkit", lambda: (None, "no CUDA toolkit found (set CUDA_HOME)"))
    with pytest.warns(dispatch.KernelFallbackWarning) as record:
        assert dispatch.compiled_available("cpu")[0]
    message = str(record[0].message)
    assert "the CUDA kernels cannot be built (no CUDA toolkit found (set CUDA_HOME))" in message
    assert "on CUDA tensors falls back" in message
    assert dispatch.compiled_available("cuda") == (False, "no CUDA toolkit found (set CUDA_HOME)")


def test_failed_cuda_build_keeps_cpu_kernels_and_warns_for_cuda(monkeypatch, fresh_dispatch):
    if torch.version.cuda is not None:
        pytest.skip("needs a CPU-only torch, on which the CUDA build really fails")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build, "auto_variant", lambda: ("cuda", "pretend a GPU is here"))
    with pytest.warns(dispatch.KernelFallbackWarning) as record:
        assert dispatch.compiled_available("cpu")[0]
    message = str(record[0].message)
    assert "cannot build the CUDA kernels: torch" in message and "on CUDA tensors falls back" in message
    assert dispatch.compiled_available("cuda")[1].startswith("cannot build the CUDA kernels")


def test_the_self_check_compares_forward_and_all_three_gradients():
    from segmentation.ops.self_check import compare

    ok = compare("cpu")
    assert ok.ok and set(ok.errors) == {"output", "grad value", "grad locations", "grad weights"}
    assert "grad locations" in ok.line()


def test_a_kernel_that_fails_its_self_check_is_replaced_by_the_reference_loudly(fresh_dispatch, monkeypatch):
    """What happens on a GPU whose kernels compute wrong (here the CPU kernels stand in, their gradient
    of the sampling locations made wrong): one warning, and the reference from then on."""
    from segmentation.ops import custom_op

    monkeypatch.setattr(dispatch, "SELF_CHECKED", ("cpu",))
    compiled = custom_op.ms_deform_attn_compiled

    class WrongLocationGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * 3

    def broken(value, shapes, starts, locations, weights):
        return compiled(value, shapes, starts, WrongLocationGrad.apply(locations), weights)

    monkeypatch.setattr(custom_op, "ms_deform_attn_compiled", broken)
    value, shapes, starts, locations, weights = make_case([(4, 5), (2, 3)], dtype=torch.float32, seed=1)
    with pytest.warns(dispatch.KernelFallbackWarning, match=r"compute wrong results on CPU .*grad locations"):
        out = ms_deform_attn(value, shapes, starts, locations, weights)
    torch.testing.assert_close(out, ms_deform_attn_reference(value, shapes, starts, locations, weights))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        ms_deform_attn(value, shapes, starts, locations, weights)
    assert dispatch.compiled_available("cpu") == (False, dispatch._state.reasons["cpu"])
    assert "failed their self-check" in dispatch._state.reasons["cpu"]
