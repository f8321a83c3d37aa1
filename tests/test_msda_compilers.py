"""The CPU kernels as other compilers build them, against the float64 reference:

- the portable path without vector code (-DPROLAB_MSDA_PORTABLE), the one that compilers older than
  GCC 11 take; always checked;
- the vector code as GCC 11 and Clang build it, where those compilers are installed (CI has GCC 12
  only, so there these are skipped, visibly).

Each build registers the same operator names as the regular one, so it is built and checked in a
fresh process; run as a script (``--portable`` or ``--cxx NAME``), this file is that process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from segmentation.ops import build, custom_op, dispatch  # noqa: E402

PORTABLE_FLAG = "-DPROLAB_MSDA_PORTABLE"
OTHER_COMPILERS = ("g++-11", "clang++")


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


def check_against_reference() -> None:
    """Forward and the three gradients of the loaded kernels against the reference on every odd-shape
    and border case (test_msda's comparison; raises on the first difference)."""
    from test_msda import ODD_CASES, SPECIAL_CASES, _assert_match, make_case

    for kwargs in ODD_CASES.values():
        _assert_match(custom_op.ms_deform_attn_compiled, make_case(**kwargs))
    for kwargs in [*SPECIAL_CASES.values(), {**SPECIAL_CASES["dyadic levels"], "d": 32}]:
        _assert_match(custom_op.ms_deform_attn_compiled, make_case(**kwargs, special=True))


def portable_warning() -> list[str]:
    """What loading the kernels says once about a build without vector code."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dispatch._warn_if_portable()
    return [str(w.message) for w in caught if "without vector code" in str(w.message)]


def _run(*args: str, cxx: str | None = None) -> str:
    env = dict(os.environ, **({"CXX": cxx} if cxx else {}))
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_portable_build_matches_reference():
    assert _run("--portable").strip().endswith("matches the reference")


def _has_openmp(cxx: str) -> bool:
    probe = subprocess.run([cxx, "-fopenmp", "-x", "c++", "-E", "-"], input="#include <omp.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.parametrize("cxx", OTHER_COMPILERS)
def test_other_compilers_build_the_vector_code(cxx):
    if shutil.which(cxx) is None or not _has_openmp(cxx):
        pytest.skip(f"{cxx} (with OpenMP headers) is not installed here")
    out = _run("--cxx", cxx, cxx=cxx).strip()
    assert out.endswith("matches the reference") and "portable" not in out, out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--portable", action="store_true")
    parser.add_argument("--cxx")
    args = parser.parse_args()
    if args.portable:
        build_portable()
    else:
        build.build_and_load("cpu")  # with $CXX, into its own build directory (the name hashes CXX)
        custom_op.register()
    isa = torch.ops.prolab.ms_deform_attn_cpu_isa()
    if args.portable != ("portable" in isa):
        sys.exit(f"expected {'no ' if args.portable else ''}vector code, got: {isa}")
    if args.portable != bool(portable_warning()):
        sys.exit(f"the portable-build warning was {'not ' if args.portable else ''}given for {isa}")
    check_against_reference()
    print(f"{args.cxx or 'portable build'}, {isa}: matches the reference")
