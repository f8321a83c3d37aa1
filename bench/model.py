"""CPU forward+backward time of ViT-Adapter-B + UperNet (+ FCN aux) at 512x512, batch 1, with the
compiled deformable-attention op vs the PyTorch reference, and the share of time spent in the
plain ViT, the adapter and the heads (torch.profiler; backward ops attributed to the forward op
that created them).

    python bench/model.py [--preset vit-adapter-b] [--size 512] [--iters 2] [--no-profile]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections import defaultdict

import torch
from torch.autograd.profiler import record_function

from segmentation.models import build_model
from segmentation.ops import dispatch

SCOPES = ("vit", "adapter", "head")


def _scoped(fn, name):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with record_function(f"bench::{name}"):
            return fn(*args, **kwargs)
    return inner


def instrument(model) -> None:
    """Mark the plain ViT (patch embedding, position embedding, blocks), the rest of the backbone
    (= the adapter) and the heads; the innermost mark wins."""
    bb = model.backbone
    bb.forward = _scoped(bb.forward, "adapter")
    bb.embed = _scoped(bb.embed, "vit")
    for blk in bb.blocks:
        blk.forward = _scoped(blk.forward, "vit")
    for head in (model.decode_head, model.auxiliary_head):
        head.forward = _scoped(head.forward, "head")


def step(model, img, label) -> float:
    t = time.perf_counter()
    model.zero_grad(set_to_none=True)
    sum(model.forward_train(img, label).values()).backward()
    return time.perf_counter() - t


def time_op(model, img, label, op: str, iters: int) -> list[float]:
    os.environ["PROLAB_MSDA"] = op
    step(model, img, label)  # warm-up (allocations, kernel load)
    return [step(model, img, label) for _ in range(iters)]


def _scope_of(event) -> str:
    e = event
    while e is not None:
        if e.name.startswith("bench::"):
            return e.name[len("bench::"):]
        e = e.cpu_parent
    return "other"


def profile_shares(model, img, label) -> dict[str, float]:
    """Seconds of self CPU time per scope over one forward+backward."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, img, label)
    events = prof.events()
    fwd_scope: dict[int, str] = {}
    for e in events:
        if not e.name.startswith("autograd::engine") and e.sequence_nr >= 0:
            fwd_scope.setdefault(e.sequence_nr, _scope_of(e))
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith("bench::"):
            continue
        scope = _scope_of(e)
        if scope == "other":
            anc = e
            while anc is not None and not anc.name.startswith("autograd::engine::evaluate_function"):
                anc = anc.cpu_parent
            if anc is not None:
                scope = fwd_scope.get(anc.sequence_nr, "other")
        totals[scope] += e.self_cpu_time_total / 1e6
    return dict(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="vit-adapter-b")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = build_model(args.preset, num_classes=150, img_size=args.size).train()
    for m in model.modules():  # batch 1: the 1x1 pyramid-pooling BN cannot use batch statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    img = torch.randn(1, 3, args.size, args.size)
    label = torch.randint(0, 150, (1, args.size, args.size))
    ok, why = dispatch.compiled_available("cpu")
    result: dict = {"preset": args.preset, "size": args.size, "batch": 1, "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                    "compiled_op": why}
    ops = ["reference"] + (["compiled"] if ok else [])
    for op in ops:
        times = time_op(model, img, label, op, args.iters)
        result[f"{op}_s"] = [round(t, 3) for t in times]
        print(f"{op:9s} fwd+bwd: " + ", ".join(f"{t:.2f} s" for t in times), flush=True)
    if ok:
        ratio = min(result["reference_s"]) / min(result["compiled_s"])
        result["reference_over_compiled"] = round(ratio, 3)
        print(f"reference / compiled = {ratio:.2f}x")
    if not args.no_profile:
        os.environ["PROLAB_MSDA"] = ops[-1]
        instrument(model)
        shares = profile_shares(model, img, label)
        total = sum(shares.values())
        result["profile_op"] = ops[-1]
        result["profile_s"] = {k: round(v, 3) for k, v in sorted(shares.items())}
        result["profile_share"] = {k: round(v / total, 3) for k, v in sorted(shares.items())}
        for k, v in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {k:8s} {v:7.2f} s  {100 * v / total:5.1f} %")
        adapter_vs_vit = shares.get("adapter", 0.0) / max(shares.get("vit", 0.0), 1e-9)
        result["adapter_over_vit"] = round(adapter_vs_vit, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
