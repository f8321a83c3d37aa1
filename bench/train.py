"""The synthetic-data experiment: property head vs one-hot head, and classes never trained on.

1. ``prolab data synth``: textured shapes whose class = (colour, texture, shape); some classes
   appear only in validation.
2. Label space through the real stages: MiniLM embeddings (offline) -> k-means -> build, over the
   descriptions of *all* classes; the training artifact keeps the seen classes over the same centres.
3. Train vit-adapter-nano with the property head (seen artifact) and with the one-hot head, same
   seed, data, iterations and optimiser.
4. Evaluate both on the validation split over the seen classes (held-out pixels ignored), then the
   property model with the full artifact's class rows: IoU on the held-out classes.

    python bench/train.py [--iters 300] [--out bench_out/train] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/train")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--val-images", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from prolab_cli.build import run_build
    from prolab_cli.cluster import run_cluster
    from prolab_cli.embed import run_embed
    from segmentation.data.synth import subset_label_space, write_synth
    from segmentation.engine.config import apply_overrides, load_config
    from segmentation.engine.evaluate import evaluate
    from segmentation.engine.train import train

    out = Path(args.out)
    data = write_synth(out / "data", "ade20k", args.train_images, args.val_images, 64, 12, 4, args.seed)
    info = json.loads((data / "synth.json").read_text())
    run_embed(data / "descriptions.json", out / "emb.safetensors", progress=False)
    print(run_cluster(out / "emb.safetensors", out / "clusters.safetensors", args.k, seed=0), file=sys.stderr)
    _, full = run_build(out / "emb.safetensors", out / "clusters.safetensors", f"synth-all-k{args.k}",
                        out / "spaces", data / "descriptions.json")
    seen = subset_label_space(full, data / "descriptions_seen.json", f"synth-seen-k{args.k}", out / "spaces")

    sets = [f"schedule.max_iters={args.iters}", "train.ckpt_interval=100000", f"train.seed={args.seed}",
            f"train.log_interval={max(args.iters // 10, 1)}"]
    results: dict = {"iters": args.iters, "k": args.k, "train_images": args.train_images,
                     "val_images": args.val_images, "threads": args.threads,
                     "seen_classes": info["seen"], "heldout_classes": info["heldout"]}
    for head in ("property", "onehot"):
        cfg = apply_overrides(load_config("synth-vit-adapter-nano"), sets + [f"model.head={head}"])
        start = time.time()
        run = train(cfg, data, out / f"run-{head}", seen, progress=False)
        seconds = time.time() - start
        res = evaluate(run["checkpoint"], None, data, progress=False, output=out / f"eval-{head}.json")
        results[head] = {"mIoU": res["mIoU"], "mAcc": res["mAcc"], "aAcc": res["aAcc"],
                         "final_loss": run["loss"], "train_seconds": round(seconds, 1)}
    res = evaluate(out / "run-property", None, data, label_space=full, progress=False,
                   output=out / "eval-property-all-classes.json")
    held = {r["class"]: r["IoU"] for r in res["per_class"] if r["class"] in info["heldout"]}
    held_values = [v for v in held.values() if v is not None]
    results["property_all_classes"] = {
        "mIoU": res["mIoU"], "heldout_IoU": held,
        "heldout_mIoU": sum(held_values) / len(held_values) if held_values else None,
        "chance_heldout_note": "a one-hot model has no output for these classes: IoU 0 by construction",
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    p, o, a = results["property"], results["onehot"], results["property_all_classes"]
    print(f"seen classes ({len(info['seen'])}), {args.iters} iterations: property head mIoU {p['mIoU']:.2f}"
          f" vs one-hot {o['mIoU']:.2f}  (train {p['train_seconds']} s / {o['train_seconds']} s)")
    print(f"all {len(info['seen']) + len(info['heldout'])} classes through the full artifact: mIoU {a['mIoU']:.2f};"
          f" held-out classes mIoU {a['heldout_mIoU']}: {json.dumps(held)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
