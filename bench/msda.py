"""Benchmark: compiled multi-scale deformable attention vs the PyTorch reference, same process.

    python bench/msda.py [--device cpu|cuda] [--repeats 7] [--cases b512-injector,...] [--json out.json]

Cases are ViT-Adapter's two uses of the op, batch 2, D = 32 channels per head, P = 4 points:
ViT-Adapter-B at 512 (M = 12; tokens 32x32; c2..c4 = 64², 32², 16²) and ViT-Adapter-L at 640
(M = 16; tokens 40x40; c2..c4 = 80², 40², 20²). The injector's queries are the ViT tokens and
its value the three c-levels; the extractor's queries are all c-level positions and its value
the tokens (L = 1). Sampling locations are what the model produces: each query's own position
plus offsets of N(0, 2) pixels of the sampled level; weights are a softmax over L x P.

Times are medians over ``--repeats`` runs after one warm-up, the two implementations
interleaved so that both see the same machine load (``--back-to-back`` instead runs each
implementation's calls one after another, the regime of a microbenchmark loop: inputs stay in
cache). Forward runs under ``no_grad``; forward+backward computes all three input gradients from a
fixed upstream gradient.

Peak memory is the extra memory one forward (or forward+backward) needs on top of its inputs,
outputs and gradients included. CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation
before the call. CPU: allocations bypass Python's tracemalloc, so every (case, implementation,
mode) runs once more in a fresh subprocess that warms up, resets the kernel's RSS high-water
mark (``/proc/self/clear_refs``), runs the op once and reports ``VmHWM - VmRSS(before)``;
``MALLOC_MMAP_THRESHOLD_`` keeps glibc from retaining freed tensors in its heap, so that warm-up
memory cannot hide the peak.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmentation.ops import build, custom_op, ms_deform_attn_reference  # noqa: E402

# name -> (heads, query grid or levels, value levels)
CASES = {
    "b512-injector": (12, [(32, 32)], [(64, 64), (32, 32), (16, 16)]),
    "b512-extractor": (12, [(64, 64), (32, 32), (16, 16)], [(32, 32)]),
    "l640-injector": (16, [(40, 40)], [(80, 80), (40, 40), (20, 20)]),
    "l640-extractor": (16, [(80, 80), (40, 40), (20, 20)], [(40, 40)]),
}
BATCH, CHANNELS, POINTS, OFFSET_PX = 2, 32, 4, 2.0


def make_inputs(case: str, device: str, dtype=torch.float32, seed: int = 0):
    """(value, spatial_shapes, level_start_index, locations, weights) of a benchmark case."""
    heads, query_levels, value_levels = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(value_levels, dtype=torch.long)
    sizes = spatial[:, 0] * spatial[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    refs = []
    for h, w in query_levels:  # query positions, normalised pixel centres
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        refs.append(torch.stack([xs, ys], -1).reshape(-1, 2))
    ref = torch.cat(refs)
    q, n_levels = ref.shape[0], len(value_levels)
    wh = spatial.flip(-1).float().view(1, 1, 1, n_levels, 1, 2)
    offsets = torch.randn(BATCH, q, heads, n_levels, POINTS, 2, generator=gen) * OFFSET_PX / wh
    loc = ref.view(1, q, 1, 1, 1, 2) + offsets
    weights = torch.randn(BATCH, q, heads, n_levels * POINTS, generator=gen).softmax(-1)
    weights = weights.view(BATCH, q, heads, n_levels, POINTS)
    value = torch.randn(BATCH, int(sizes.sum()), heads, CHANNELS, generator=gen)
    return (value.to(device, dtype), spatial.to(device), starts.to(device), loc.to(device),
            weights.to(device))


def implementations(device: str) -> dict:
    """name -> function; builds (or loads) the compiled kernels."""
    build.build_and_load("cuda" if device == "cuda" else "cpu")
    custom_op.register()
    return {"compiled": custom_op.ms_deform_attn_compiled, "reference": ms_deform_attn_reference}


def run_once(fn, inputs, mode: str, upstream=None):
    """One forward ('fwd', no grad) or forward+backward ('fwdbwd') call."""
    value, spatial, starts, loc, weights = inputs
    if mode == "fwd":
        with torch.no_grad():
            return fn(value, spatial, starts, loc, weights)
    leaves = [t.detach().requires_grad_() for t in (value, loc, weights)]
    out = fn(leaves[0], spatial, starts, leaves[1], leaves[2])
    return torch.autograd.grad(out, leaves, upstream if upstream is not None else torch.ones_like(out))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(case: str, device: str, repeats: int, impls: dict, back_to_back: bool = False) -> dict:
    """Median seconds per (implementation, mode); implementations interleaved unless back_to_back."""
    inputs = make_inputs(case, device)
    with torch.no_grad():
        shape = ms_deform_attn_reference(*inputs[:5]).shape
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)
    keys = [(name, mode) for name in impls for mode in ("fwd", "fwdbwd")]
    order = ([key for key in keys for _ in range(repeats + 1)] if back_to_back
             else keys * (repeats + 1))
    times = {key: [] for key in keys}
    for name, mode in order:
        _sync(device)
        start = time.perf_counter()
        run_once(impls[name], inputs, mode, upstream)
        _sync(device)
        times[(name, mode)].append(time.perf_counter() - start)
    # each key's first call is its warm-up
    return {f"{name}_{mode}_s": statistics.median(ts[1:]) for (name, mode), ts in times.items()}


def _proc_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def probe_cpu_peak(case: str, impl: str, mode: str) -> int:
    """(Run in a fresh subprocess) extra bytes of RSS one call needs."""
    impls = implementations("cpu")
    inputs = make_inputs(case, "cpu")
    run_once(impls[impl], inputs, mode)  # warm-up: library, lazy initialisation
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _proc_kib("VmRSS")
    result = run_once(impls[impl], inputs, mode)
    peak = _proc_kib("VmHWM")
    del result
    return (peak - before) * 1024


def cpu_peak(case: str, impl: str, mode: str) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, __file__, "--probe", case, impl, mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def cuda_peak(case: str, impl: str, mode: str, impls: dict) -> int:
    inputs = make_inputs(case, "cuda")
    run_once(impls[impl], inputs, mode)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = run_once(impls[impl], inputs, mode)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return peak


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--back-to-back", action="store_true",
                        help="run each implementation's calls one after another instead of interleaved")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--probe", nargs=3, metavar=("CASE", "IMPL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(probe_cpu_peak(*args.probe))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    impls = implementations(args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    order = "back to back" if args.back_to_back else "interleaved"
    print(f"# torch {torch.__version__}, {args.device} ({where}), {build.loaded().name}, "
          f"median of {args.repeats}, {order}, load average {os.getloadavg()[0]:.1f}")
    header = ("case", "fwd ms comp/ref", "x", "fwd+bwd ms comp/ref", "x", "fwd MiB comp/ref", "x",
              "fwd+bwd MiB comp/ref", "x")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for case in cases:
        row = {"case": case, **time_case(case, args.device, args.repeats, impls, args.back_to_back)}
        if not args.no_memory:
            for impl in impls:
                for mode in ("fwd", "fwdbwd"):
                    peak = (cpu_peak(case, impl, mode) if args.device == "cpu"
                            else cuda_peak(case, impl, mode, impls))
                    row[f"{impl}_{mode}_peak_bytes"] = peak
        rows.append(row)
        cells = [case]
        for mode in ("fwd", "fwdbwd"):
            comp, ref = row[f"compiled_{mode}_s"], row[f"reference_{mode}_s"]
            cells += [f"{comp * 1e3:.1f} / {ref * 1e3:.1f}", f"{ref / comp:.1f}"]
        for mode in ("fwd", "fwdbwd"):
            if args.no_memory:
                cells += ["-", "-"]
                continue
            comp, ref = row[f"compiled_{mode}_peak_bytes"], row[f"reference_{mode}_peak_bytes"]
            cells += [f"{comp / 2**20:.1f} / {ref / 2**20:.1f}", f"{comp / ref:.2f}" if ref else "-"]
        print("| " + " | ".join(cells) + " |", flush=True)
    print("x: time ratio reference/compiled (higher is better); memory ratio compiled/reference (lower is better)")
    if args.json:
        from prolab_cli.atomic import write_json

        write_json(args.json, {"device": args.device, "torch": torch.__version__, "repeats": args.repeats,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
