"""Compiling and loading the deformable-attention kernels of ``csrc/`` (``prolab::ms_deform_attn``).

Two variants: ``cpu`` (C++ only; the one a CPU build of torch can compile) and ``cuda`` (the C++
CPU kernels plus the CUDA kernels; needs a CUDA build of torch and the CUDA toolkit). Each build
lands in ``paths.build_dir()/<name>`` where ``<name>`` carries a hash of the sources, flags,
compiler and torch/Python/CUDA versions, so a stale or foreign build is never picked up and
``is_built`` can tell without compiling. Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prolab_cli import paths
from prolab_cli.errors import ProlabError
from prolab_cli.progress import is_quiet

VARIANTS = ("cpu", "cuda")
CPU_SOURCES = ("msda_ops.cpp", "msda_cpu.cpp")
CUDA_SOURCES = ("msda_cuda.cu",)
HEADERS = ("msda.h",)
CFLAGS = ("-O3", "-fopenmp")  # -fopenmp: at::parallel_for is inline OpenMP code
LDFLAGS = ("-fopenmp",)
CUDA_CFLAGS = ("-O3", "-lineinfo")
DEFAULT_CUDA_ARCHS = "8.0;9.0"

_CHECKOUT_CSRC = Path(__file__).resolve().parents[2] / "csrc"


class BuildError(ProlabError):
    """Compiling or loading the kernels failed; ``details`` holds the full compiler output."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class BuildResult:
    """A compiled and loaded extension."""

    variant: str
    name: str
    library: Path
    seconds: float
    compiled: bool  # False when an up-to-date build was only loaded


def sources_dir() -> Path:
    """``csrc/`` of the checkout, else the copy an installed wheel carries as ``segmentation._csrc``."""
    if (_CHECKOUT_CSRC / CPU_SOURCES[0]).is_file():
        return _CHECKOUT_CSRC
    try:
        spec = importlib.util.find_spec("segmentation._csrc")
    except ModuleNotFoundError:
        spec = None
    # a data-only (namespace) package: its folder, not importlib.resources' multiplexed view
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / CPU_SOURCES[0]).is_file():
            return Path(location)
    raise BuildError(f"deformable-attention sources not found: neither {_CHECKOUT_CSRC} nor an "
                     "installed segmentation._csrc package has them")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ProlabError(f"unknown kernel variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def source_files(variant: str) -> list[Path]:
    """The translation units of a variant."""
    _check_variant(variant)
    names = CPU_SOURCES + (CUDA_SOURCES if variant == "cuda" else ())
    root = sources_dir()
    return [root / name for name in names]


def cuda_archs() -> str:
    """The CUDA architectures compiled for: ``$TORCH_CUDA_ARCH_LIST``, else the local GPU's, else 8.0;9.0."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return DEFAULT_CUDA_ARCHS


def cuda_toolkit() -> tuple[str | None, str]:
    """(CUDA_HOME, reason): where the CUDA toolkit is, or why the CUDA kernels cannot be built."""
    if torch.version.cuda is None:
        return None, f"torch {torch.__version__} is a CPU-only build"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None or not Path(CUDA_HOME, "bin", "nvcc").exists():
        return None, f"no CUDA toolkit found (set CUDA_HOME; torch guessed {CUDA_HOME})"
    return CUDA_HOME, f"CUDA toolkit at {CUDA_HOME}"


def auto_variant() -> tuple[str, str]:
    """The variant to build when the op is first used, and why."""
    if not torch.cuda.is_available():
        reason = "no CUDA device" if torch.version.cuda else cuda_toolkit()[1]
        return "cpu", reason
    home, reason = cuda_toolkit()
    return ("cuda", reason) if home else ("cpu", reason)


def extension_name(variant: str) -> str:
    """``prolab_msda_<variant>_<hash>``: the hash covers everything that changes the binary."""
    files = source_files(variant) + [sources_dir() / h for h in HEADERS]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for part in (CFLAGS, LDFLAGS, CUDA_CFLAGS):
        digest.update(" ".join(part).encode())
    digest.update(os.environ.get("CXX", "c++").encode())
    digest.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}".encode())
    if variant == "cuda":
        digest.update(cuda_archs().encode())
    return f"prolab_msda_{variant}_{digest.hexdigest()[:12]}"


def library_path(variant: str) -> Path:
    """Where the variant's shared library is (or will be) built."""
    name = extension_name(variant)
    return paths.build_dir() / name / f"{name}.so"


def is_built(variant: str) -> bool:
    """Whether an up-to-date build of the variant exists (no compiling)."""
    return library_path(variant).is_file()


def _first_error_line(text: str) -> str:
    """The compiler's first diagnostic, not the (long) command line that produced it."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    commands = ("[", "FAILED:", "Error building extension", "ninja:")
    for line in lines:
        lowered = line.lower()
        if line.startswith(commands) or " -c " in line:
            continue
        if "error" in lowered or "not found" in lowered or "no such file" in lowered:
            return line[:300]
    return (lines[-1] if lines else "unknown error")[:300]


_loaded: BuildResult | None = None


def loaded() -> BuildResult | None:
    """The extension loaded into this process, if any."""
    return _loaded


def build_and_load(variant: str, verbose: bool = False) -> BuildResult:
    """Compile the variant (unless an up-to-date build exists) and load it into this process.

    Raises ``BuildError`` with the compiler output when compiling or loading fails. A process
    holds at most one variant: the operator schemas can be registered only once.
    """
    global _loaded
    _check_variant(variant)
    if variant == "cuda":
        home, reason = cuda_toolkit()
        if home is None:
            raise BuildError(f"cannot build the CUDA kernels: {reason}")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", cuda_archs())
    if _loaded is not None:
        if _loaded.variant == variant or (_loaded.variant == "cuda" and variant == "cpu"):
            return _loaded
        raise BuildError(f"the {_loaded.variant} kernels are already loaded in this process; "
                         f"build the {variant} variant in a fresh process")
    name = extension_name(variant)
    directory = paths.build_dir() / name
    library = directory / f"{name}.so"  # library_path(variant), without hashing the sources again
    directory.mkdir(parents=True, exist_ok=True)
    was_built = library.is_file()
    if not was_built and not is_quiet():  # compiling takes minutes: say so before going silent
        print(f"compiling the {variant} deformable-attention kernels into {directory} (first use only)",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        from torch.utils.cpp_extension import load

        load(
            name=name,
            sources=[str(p) for p in source_files(variant)],
            extra_cflags=list(CFLAGS),
            extra_cuda_cflags=list(CUDA_CFLAGS),
            extra_ldflags=list(LDFLAGS),
            extra_include_paths=[str(sources_dir())],
            build_directory=str(directory),
            with_cuda=variant == "cuda",
            is_python_module=False,
            verbose=verbose,
        )
    except (RuntimeError, OSError, ImportError, ValueError, FileNotFoundError) as exc:
        details = str(exc)
        raise BuildError(f"building the {variant} deformable-attention kernels failed: "
                         f"{_first_error_line(details)}", details) from exc
    _loaded = BuildResult(variant, name, library, time.perf_counter() - start, not was_built)
    return _loaded
