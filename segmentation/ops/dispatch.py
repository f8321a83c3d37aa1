"""Chooses the implementation of multi-scale deformable attention that runs.

``PROLAB_MSDA`` selects: ``auto`` (default: the compiled kernels where they exist for the
tensor's device, else the reference), ``reference`` (always the PyTorch reference) or
``compiled`` (the kernels or a clear error). The kernels are compiled on first use only; a
failed compile falls back to the reference with one loud warning per process.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import torch

from prolab_cli.errors import ProlabError

from . import build
from .reference import ms_deform_attn_reference

MODES = ("auto", "reference", "compiled")


class KernelFallbackWarning(RuntimeWarning):
    """A slower path runs: the (hungrier) reference, because the compiled kernels are unavailable or
    failed their self-check, or CPU kernels compiled without their vector code."""


#: devices whose kernels are checked against the reference on their first use in a process
SELF_CHECKED = ("cuda",)


@dataclass
class _State:
    attempted: bool = False
    devices: frozenset[str] = frozenset()
    reasons: dict[str, str] = field(default_factory=dict)
    warned: bool = False
    checked: set[str] = field(default_factory=set)
    portable_checked: bool = False


_state = _State()


def mode() -> str:
    """The validated value of ``PROLAB_MSDA`` (``auto`` when unset)."""
    value = os.environ.get("PROLAB_MSDA", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ProlabError(f"PROLAB_MSDA={value!r} is not one of {', '.join(MODES)}")
    return value


def _load() -> None:
    """Build and load the kernels once per process; record per-device availability and reasons."""
    if _state.attempted:
        return
    _state.attempted = True
    variant, why = build.auto_variant()
    failures = []
    if variant == "cuda":
        try:
            build.build_and_load("cuda")
            _state.devices = frozenset({"cpu", "cuda"})
        except build.BuildError as exc:
            failures.append(exc.message)
            _state.reasons["cuda"] = exc.message
    else:
        _state.reasons["cuda"] = why
        if torch.cuda.is_available():  # a GPU without a toolkit: CUDA tensors take the reference
            failures.append(f"the CUDA kernels cannot be built ({why})")
    if not _state.devices:
        try:
            build.build_and_load("cpu")
            _state.devices = frozenset({"cpu"})
        except build.BuildError as exc:
            failures.append(exc.message)
            _state.reasons["cpu"] = exc.message
            _state.reasons.setdefault("cuda", exc.message)
    if failures:
        wanted = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        _warn_once("; ".join(failures), [d for d in wanted if d not in _state.devices])
    if _state.devices:
        from . import custom_op

        custom_op.register()


def _warn_once(reason: str, devices: list[str]) -> None:
    if _state.warned:
        return
    _state.warned = True
    warnings.warn(
        f"prolab: {reason}. Multi-scale deformable attention on {' and '.join(devices).upper()} tensors "
        "falls back to the PyTorch reference, which is several times slower and needs several times "
        "the memory. Run `prolab ops build --verbose` for the compiler output; set "
        "PROLAB_MSDA=reference to choose the reference knowingly.",
        KernelFallbackWarning,
        stacklevel=4,
    )


def _warn_if_portable() -> None:
    """Say once, loudly, when the CPU kernels were compiled without their vector code."""
    if torch.compiler.is_compiling():  # the op returns a string, which tracing cannot hold: next eager call
        return
    _state.portable_checked = True
    try:
        isa = torch.ops.prolab.ms_deform_attn_cpu_isa()
    except RuntimeError:  # a bad PROLAB_MSDA_CPU_ISA: the first kernel call refuses it in one line
        return
    if "portable" in isa:
        warnings.warn(
            f"prolab: the CPU deformable-attention kernels were compiled without vector code ({isa}), "
            "as compilers older than GCC 11 do: correct, but 1.6-2x slower. Set CXX to GCC 11 or "
            "newer (or clang) and run `prolab ops build`.", KernelFallbackWarning, stacklevel=4)


def compiled_available(device: torch.device | str) -> tuple[bool, str]:
    """Whether the compiled kernels serve tensors on ``device`` (builds them on first call)."""
    device_type = torch.device(device).type
    if device_type not in ("cpu", "cuda"):
        return False, f"no kernels for {device_type} tensors"
    _load()
    if device_type in _state.devices and device_type in SELF_CHECKED and device_type not in _state.checked:
        _self_check(device_type)
    if "cpu" in _state.devices and not _state.portable_checked:
        _warn_if_portable()
    if device_type in _state.devices:
        return True, f"compiled kernels ({build.loaded().name})"
    return False, _state.reasons.get(device_type, "not built")


def _self_check(device_type: str) -> None:
    """Compare the kernels with the reference once; on a mismatch use the reference from now on, loudly."""
    from .self_check import compare

    _state.checked.add(device_type)
    result = compare(device_type)
    if not result.ok:
        _state.devices = _state.devices - {device_type}
        _state.reasons[device_type] = f"the compiled kernels failed their self-check ({result.line()})"
        warnings.warn(
            f"prolab: the compiled deformable-attention kernels compute wrong results on {device_type.upper()} "
            f"({result.line()}). {device_type.upper()} tensors use the PyTorch reference from now on in this "
            "process; `prolab ops status --check` repeats the check. Please report it with `prolab ops status`.",
            KernelFallbackWarning, stacklevel=4)


def reset() -> None:
    """Forget the outcome of the last load attempt (tests; a loaded library stays loaded)."""
    global _state
    _state = _State()


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with the fastest available implementation.

    Shapes as in ``ms_deform_attn_reference``; returns [N,Q,M*D] in value's dtype.
    """
    _check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    choice = mode()
    if choice != "reference":
        ok, reason = compiled_available(value.device)
        if ok:
            from .custom_op import ms_deform_attn_compiled

            return ms_deform_attn_compiled(
                value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        if choice == "compiled":
            raise ProlabError(f"PROLAB_MSDA=compiled but the compiled deformable-attention kernels are "
                              f"unavailable for {value.device.type} tensors: {reason}")
    # grid_sample needs one dtype; the result has value's dtype, as from the kernels
    dtype = torch.promote_types(value.dtype, sampling_locations.dtype)
    out = ms_deform_attn_reference(value.to(dtype), spatial_shapes, level_start_index,
                                   sampling_locations.to(dtype), attention_weights.to(dtype))
    return out.to(value.dtype)


def _check_shapes(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                  sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> None:
    if value.dim() != 4:
        raise ProlabError(f"ms_deform_attn: value must be [N,S,M,D], got {tuple(value.shape)}")
    n, _, m, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ProlabError("ms_deform_attn: sampling_locations must be [N,Q,M,L,P,2], got "
                          f"{tuple(sampling_locations.shape)}")
    _, q, m2, levels, points, _ = sampling_locations.shape
    if sampling_locations.shape[0] != n or m2 != m:
        raise ProlabError(f"ms_deform_attn: sampling_locations {tuple(sampling_locations.shape)} does not "
                          f"match value {tuple(value.shape)} in N or M")
    if tuple(attention_weights.shape) != (n, q, m, levels, points):
        raise ProlabError(f"ms_deform_attn: attention_weights must be {(n, q, m, levels, points)}, got "
                          f"{tuple(attention_weights.shape)}")
    if tuple(spatial_shapes.shape) != (levels, 2) or tuple(level_start_index.shape) != (levels,):
        raise ProlabError(f"ms_deform_attn: spatial_shapes must be [{levels},2] and level_start_index "
                          f"[{levels}], got {tuple(spatial_shapes.shape)} and {tuple(level_start_index.shape)}")
