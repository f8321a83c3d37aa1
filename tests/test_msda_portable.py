"""The CPU kernels built without vector code (-DPROLAB_MSDA_PORTABLE), the path that compilers older
than GCC 11 take, against the float64 reference.

The portable library registers the same operator names as the regular one, so it is built and
checked in a fresh process; run as a script, this file is that process.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from segmentation.ops import build, custom_op, dispatch, ms_deform_attn_reference  # noqa: E402

PORTABLE_FLAG = "-DPROLAB_MSDA_PORTABLE"


def build_portable() -> None:
    """Compile (or find up to date) the portable CPU kernels and load them into this process."""
    from torch.utils.cpp_extension import load

    from prolab_cli import paths

    name = f"{build.extension_name('cpu')}_portable"
    directory = paths.build_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    load(name=name, sources=[str(p) for p in build.source_files("cpu")],
         extra_cflags=[*build.CFLAGS, PORTABLE_FLAG], extra_ldflags=list(build.LDFLAGS),
         extra_include_paths=[str(build.sources_dir())], build_directory=str(directory),
         is_python_module=False)
    custom_op.register()


def check_portable() -> list[str]:
    """Forward and the three gradients of the portable kernels against the reference; the cases that
    differ (empty when all match)."""
    from test_msda import ODD_CASES, SPECIAL_CASES, grads, make_case

    isa = torch.ops.prolab.ms_deform_attn_cpu_isa()
    assert "portable" in isa, f"the vector code was compiled in: {isa}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dispatch._warn_if_portable()  # what loading the kernels says once
    assert [str(w.message) for w in caught if "without vector code" in str(w.message)], caught
    cases = {name: make_case(**kwargs) for name, kwargs in ODD_CASES.items()}
    cases.update({name: make_case(**kwargs, special=True) for name, kwargs in SPECIAL_CASES.items()})
    cases["dyadic levels, 32 channels"] = make_case(**{**SPECIAL_CASES["dyadic levels"], "d": 32}, special=True)
    failures = []
    for name, case in cases.items():
        got, want = grads(custom_op.ms_deform_attn_compiled, case), grads(ms_deform_attn_reference, case)
        for what, a, b in zip(("output", "grad value", "grad locations", "grad weights"), got, want):
            if not torch.allclose(a, b, rtol=1e-10, atol=1e-10):
                failures.append(f"{name}: {what} differs by {(a - b).abs().max().item():.3g}")
    return failures


def test_portable_build_matches_reference():
    result = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("portable kernels match the reference"), result.stdout


if __name__ == "__main__":
    build_portable()
    problems = check_portable()
    if problems:
        sys.exit("\n".join(problems))
    print(f"{torch.ops.prolab.ms_deform_attn_cpu_isa()}: portable kernels match the reference")
