"""Describe-stage throughput: --jobs 1 vs --jobs N against a local OpenAI-compatible server that
adds a fixed latency per call, and the re-run time with a warm cache.

    python bench/describe.py                     # 48 ADE20K classes, 200 ms latency, jobs 1 vs 8
    python bench/describe.py --classes cityscapes --jobs 16 --latency 0.5
    python bench/describe.py --batch-compare 2000 --latency 0.05   # one call at a time, --jobs 32, --batch

Each cold run gets its own empty cache; the warm re-run reuses the cache of the last cold run,
once in-process and once through the CLI (a fresh Python process, so import time included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prolab_cli.atomic import write_json  # noqa: E402
from prolab_cli.cache import Cache  # noqa: E402
from prolab_cli.classes import load_classes  # noqa: E402
from prolab_cli.describe import describe_classes  # noqa: E402
from prolab_cli.llm import resolve_backend  # noqa: E402
from prolab_cli.llm.testing import FakeOpenAIServer  # noqa: E402


def timed_run(classes: list[str], base_url: str, jobs: int, cache_path: Path, **kwargs) -> tuple[float, dict]:
    """Wall time of one describe_classes call and its totals."""
    backend = resolve_backend("openai:bench-model", base_url=base_url)
    start = time.perf_counter()
    result = describe_classes(classes, backend, "prolab", jobs=jobs, cache=Cache(cache_path), progress=False, **kwargs)
    elapsed = time.perf_counter() - start
    backend.close()
    assert not result.failed, result.failed
    return elapsed, result.provenance["totals"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="ade20k")
    parser.add_argument("-n", type=int, default=48, help="first N classes of the list (0: all)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server adds per call")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--batch-compare", type=int, default=None, metavar="N",
                        help="N synthetic classes: one call at a time, --jobs 32 and --batch (HTTP requests, wall time)")
    parser.add_argument("--batch-poll", type=float, default=1.0, help="seconds between two looks at the batch")
    args = parser.parse_args()

    os.environ.pop("OPENAI_API_KEY", None)
    if args.batch_compare:
        batch_compare(args)
        return
    classes = load_classes(args.classes)
    classes = classes[: args.n] if args.n else classes
    with FakeOpenAIServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        serial, serial_totals = timed_run(classes, server.base_url, 1, tmp / "serial.sqlite")
        parallel, parallel_totals = timed_run(classes, server.base_url, args.jobs, tmp / "parallel.sqlite")
        calls_before = server.requests
        warm, warm_totals = timed_run(classes, server.base_url, args.jobs, tmp / "parallel.sqlite")

        class_file = tmp / "classes.txt"
        class_file.write_text("\n".join(classes) + "\n")
        env = {**os.environ, "PROLAB_CACHE": str(tmp / "cli")}
        cli = [sys.executable, "-m", "prolab_cli.cli", "describe", "--classes", str(class_file),
               "--llm", "openai:bench-model", "--base-url", server.base_url, "--jobs", str(args.jobs),
               "-q", "-o", str(tmp / "out.json")]
        subprocess.run(cli, env=env, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(cli, env=env, check=True, capture_output=True)
        cli_warm = time.perf_counter() - start
        assert server.requests == calls_before + len(classes), "warm re-runs must make no calls"

    numbers = {
        "classes": len(classes),
        "latency_s": args.latency,
        "jobs": args.jobs,
        "jobs1_s": round(serial, 3),
        "jobs1_classes_per_s": round(len(classes) / serial, 2),
        f"jobs{args.jobs}_s": round(parallel, 3),
        f"jobs{args.jobs}_classes_per_s": round(len(classes) / parallel, 2),
        "speedup": round(serial / parallel, 2),
        "warm_rerun_stage_s": round(warm, 4),
        "warm_rerun_cli_s": round(cli_warm, 3),
        "warm_rerun_calls": warm_totals["calls"],
        "warm_rerun_cache_hits": warm_totals["cache_hits"],
        "cold_calls": serial_totals["calls"],
    }
    print(f"{len(classes)} classes, server latency {args.latency * 1000:.0f} ms/call")
    print(f"  --jobs 1: {serial:7.2f} s  ({numbers['jobs1_classes_per_s']:.2f} classes/s)")
    print(f"  --jobs {args.jobs}: {parallel:7.2f} s  ({len(classes) / parallel:.2f} classes/s)  speed-up x{numbers['speedup']:.2f}")
    print(f"  warm re-run: {warm * 1000:7.1f} ms in-process, {cli_warm:.2f} s through the CLI"
          f" ({warm_totals['calls']} calls, {warm_totals['cache_hits']} cache hits)")
    if args.json:
        write_json(args.json, numbers)


def batch_compare(args) -> None:
    """The same N classes three ways against one server: requests sent and wall time."""
    classes = [f"synthetic class {i:05d}" for i in range(args.batch_compare)]
    runs = {"one call at a time": {"jobs": 1}, "--jobs 32": {"jobs": 32},
            "--batch": {"jobs": 1, "batch": True, "batch_poll": args.batch_poll}}
    numbers = {"classes": len(classes), "latency_s": args.latency, "runs": {}}
    print(f"{len(classes)} classes, server latency {args.latency * 1000:.0f} ms per ordinary call")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in runs.items():
            with FakeOpenAIServer(latency=args.latency) as server:
                jobs = kwargs.pop("jobs")
                seconds, totals = timed_run(classes, server.base_url, jobs, Path(tmp) / f"{jobs}-{len(kwargs)}.sqlite",
                                            **kwargs)
                numbers["runs"][name] = {"http_requests": server.http_requests, "replies": server.requests,
                                         "wall_s": round(seconds, 2)}
                print(f"  {name:<20} {server.http_requests:6d} HTTP requests  {seconds:8.2f} s")
    if args.json:
        write_json(args.json, numbers)


if __name__ == "__main__":
    main()
