"""The stages behind ``prolab ops build`` and ``prolab ops status``."""

from __future__ import annotations

import os
import shutil
import time

import torch

from prolab_cli import paths
from prolab_cli.errors import ProlabError

from . import build, dispatch


def build_kernels(variant: str = "auto", verbose: bool = False) -> tuple[build.BuildResult, str]:
    """Compile (or find up to date) and load the kernels; returns the result and a one-line summary."""
    if variant == "auto":
        variant, _ = build.auto_variant()
    try:
        result = build.build_and_load(variant, verbose=verbose)
    except build.BuildError as exc:
        if verbose or not exc.details:
            raise
        raise build.BuildError(f"{exc.message} (--verbose shows the compiler output)", exc.details) from exc
    what = "compiled" if result.compiled else "up to date, loaded"
    return result, f"{result.variant} kernels {what} in {result.seconds:.1f} s: {result.library}"


def _planned(device: str) -> str:
    """What will run for ``device`` tensors and why, without compiling anything."""
    choice = dispatch.mode()
    if choice == "reference":
        return "reference (PROLAB_MSDA=reference)"
    if device == "cuda":
        if torch.version.cuda is None:
            return f"none: torch {torch.__version__} is a CPU-only build"
        if not torch.cuda.is_available():
            return "none: no CUDA device visible"
        home, reason = build.cuda_toolkit()
        if home is None:
            return f"reference: {reason}" + (" (PROLAB_MSDA=compiled will fail)" if choice == "compiled" else "")
        variant = "cuda"
    else:
        variant = build.auto_variant()[0]
    if build.is_built(variant):
        return f"compiled ({variant} kernels, built: {build.library_path(variant)})"
    if variant == "cpu" and shutil.which(os.environ.get("CXX", "c++")) is None:
        return "reference: no C++ compiler found (set CXX)"
    return (f"compiled ({variant} kernels, not built yet: compiled on first use, "
            "or now with `prolab ops build`)")


def _check(device: str) -> str:
    """Build if needed and compare the kernels with the reference (forward and the three gradients)."""
    from .self_check import compare

    ok, reason = dispatch.compiled_available(device)
    if not ok:
        return f"check failed: {reason}"
    start = time.perf_counter()
    result = compare(device)
    if not result.ok:
        raise ProlabError(f"ms_deform_attn: the compiled kernels differ from the reference: {result.line()}")
    seconds = time.perf_counter() - start
    isa = f"; CPU instruction set {torch.ops.prolab.ms_deform_attn_cpu_isa()}" if device == "cpu" else ""
    return f"check passed: {result.line()} ({seconds:.3f} s){isa}"


def status_lines(check: bool = False) -> list[str]:
    """Lines describing which implementation runs on CPU and on CUDA, and why."""
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    lines = [
        f"torch {torch.__version__} ({cuda}); PROLAB_MSDA={dispatch.mode()}",
        f"sources: {build.sources_dir()}",
        f"build dir: {paths.build_dir()}",
    ]
    for device in ("cpu", "cuda"):
        lines.append(f"{device}: {_planned(device)}")
        if check and dispatch.mode() != "reference" and not _planned(device).startswith("none"):
            lines.append(f"{device}: {_check(device)}")
    return lines
