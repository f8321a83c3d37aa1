"""Peak memory of `prolab predict` on huge images (tiny palette PNGs that decode to 4000x4000 and
12000x12000 pixels), with the nano model: banded labels (today) against whole-image scores (the
earlier path, forced; only at 4000x4000, since at 12000x12000 it needs ~24 GB).

Each run is its own process; its peak RSS (ru_maxrss) is printed with the ratio to the baseline.
Target: under 2 GB at both sizes.

Usage: python bench/predict_memory.py [--sizes 4000,12000] [--baseline-sizes 4000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCH = """
import resource, sys
import segmentation.data.datasets as datasets
import segmentation.engine.inference as inference
if {whole}:
    inference.FULL_SCORES_MAX_BYTES = 1 << 62  # the earlier path: every channel resized to the full image
from prolab_cli.cli import main
try:
    main({args!r}, standalone_mode=False)
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run(args: list[str], whole: bool) -> tuple[float, float, str]:
    """(peak RSS in GB, seconds, last stderr line) of one prolab command in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCH.format(args=args, whole=whole)], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    peak = next((int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")), 0)
    last = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("MAXRSS")]
    return peak / 2**20, seconds, (last[-1] if last and proc.returncode else "ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4000,12000")
    ap.add_argument("--baseline-sizes", default="4000")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="prolab-predict-memory-"))
    os.environ.setdefault("PROLAB_CACHE", str(work / "cache"))
    from PIL import Image

    from prolab_cli.cli import main as prolab

    data, run_dir = work / "synth", work / "run"
    if not (run_dir / "last.pth").exists() and not list(run_dir.glob("iter_*.pth")):
        prolab(["data", "synth", "--layout", "ade20k", "--out-dir", str(data), "--train", "8", "--val", "2", "-q"],
               standalone_mode=False)
        for step in (["embed", f"{data}/descriptions.json", "-o", f"{work}/emb.safetensors"],
                     ["cluster", f"{work}/emb.safetensors", "-k", "20", "--distinct", "-o", f"{work}/clu.safetensors"],
                     ["build", "--embeddings", f"{work}/emb.safetensors", "--clusters", f"{work}/clu.safetensors",
                      "--name", "synth-space", "--out-dir", str(work)]):
            prolab(step + ["-q"], standalone_mode=False)
        prolab(["train", "--config", "synth-vit-adapter-nano", "--data-root", str(data), "--map-classes-by-name",
                "--label-space", str(work / "synth-space"), "--work-dir", str(run_dir), "--set", "schedule.max_iters=2",
                "-q"], standalone_mode=False)
    print(f"{'image':>12} {'path':>14} {'peak RSS':>10} {'time':>8}  result")
    for side in [int(s) for s in args.sizes.split(",")]:
        image = work / f"bomb_{side}.png"
        canvas = Image.new("P", (side, side))
        canvas.putpalette([90, 90, 90, 200, 40, 40] + [0] * 762)
        canvas.paste(1, (side // 4, side // 4, side // 2, side // 2))
        canvas.save(image, optimize=True)
        command = ["predict", str(image), "--checkpoint", str(run_dir), "--out-dir", str(work / f"pred_{side}"),
                   "--max-pixels", str(side * side), "-q"]
        paths = [("banded", False)] + ([("whole (before)", True)] if str(side) in args.baseline_sizes.split(",") else [])
        peaks = {}
        for name, whole in paths:
            peak, seconds, result = run(command, whole)
            peaks[whole] = peak
            print(f"{side:>5}x{side:<6} {name:>14} {peak:>8.2f} GB {seconds:>6.1f} s  {result}"
                  f"  ({image.stat().st_size / 1024:.1f} KB on disk)")
        if True in peaks:
            print(f"{'':>12} {'ratio':>14} {peaks[False] / peaks[True]:>8.2f}x the whole-image peak")


if __name__ == "__main__":
    main()
