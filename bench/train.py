"""The synthetic-data experiment: property head vs one-hot head, and classes never trained on.

1. ``prolab data synth``: textured shapes whose class = (colour, texture, shape); some classes
   appear only in validation.
2. Label space through the real stages: MiniLM embeddings (offline) -> k-means -> build, over the
   descriptions of *all* classes; the training artifact keeps the seen classes over the same centres.
3. Train vit-adapter-nano with the property head (seen artifact) and with the one-hot head, same
   seed, data, iterations and optimiser.
4. Evaluate both on the validation split over the seen classes (held-out pixels ignored), then the
   property model with the full artifact's class rows: IoU on the held-out classes.
5. Control: the same with an *oracle* label space (one property per colour, texture and shape), which
   separates what the property head can do from how well MiniLM + k-means recover the properties.

    python bench/train.py [--iters 600] [--seen 12] [--heldout 4] [--k 16] [--out demo_out/bench_train]
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
    parser.add_argument("--out", default="demo_out/bench_train")
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--val-images", type=int, default=48)
    parser.add_argument("--seen", type=int, default=12, help="object classes in training")
    parser.add_argument("--heldout", type=int, default=4, help="object classes only in validation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from prolab_cli.atomic import write_json
    from prolab_cli.build import run_build
    from prolab_cli.cluster import run_cluster
    from prolab_cli.embed import run_embed
    from segmentation.data.synth import attribute_label_space, subset_label_space, write_synth
    from segmentation.engine.config import apply_overrides, load_config
    from segmentation.engine.evaluate import evaluate
    from segmentation.engine.train import train

    out = Path(args.out)
    data = write_synth(out / "data", "ade20k", args.train_images, args.val_images, 64, args.seen, args.heldout, args.seed)
    info = json.loads((data / "synth.json").read_text())
    run_embed(data / "descriptions.json", out / "emb.safetensors", progress=False)
    print(run_cluster(out / "emb.safetensors", out / "clusters.safetensors", args.k, seed=0), file=sys.stderr)
    _, full = run_build(out / "emb.safetensors", out / "clusters.safetensors", f"synth-all-k{args.k}",
                        out / "spaces", data / "descriptions.json")
    seen = subset_label_space(full, data / "descriptions_seen.json", f"synth-seen-k{args.k}", out / "spaces")
    oracle_full = attribute_label_space(data, "synth-oracle-all").save(out / "spaces")
    oracle_seen = attribute_label_space(data, "synth-oracle-seen", info["seen"]).save(out / "spaces")

    sets = [f"schedule.max_iters={args.iters}", "train.ckpt_interval=100000", f"train.seed={args.seed}",
            f"train.log_interval={max(args.iters // 10, 1)}"]
    results: dict = {"iters": args.iters, "k": args.k, "train_images": args.train_images,
                     "val_images": args.val_images, "threads": args.threads,
                     "seen_classes": info["seen"], "heldout_classes": info["heldout"]}
    from segmentation.models import build_model

    with torch.no_grad():  # one-time op loading/compilation stays out of the first run's timing
        build_model("vit-adapter-nano", num_classes=2, img_size=64).eval()(torch.zeros(1, 3, 64, 64))
    runs = {"property": ("property", seen, full), "onehot": ("onehot", seen, None),
            "oracle_property": ("property", oracle_seen, oracle_full)}
    for key, (head, space, space_all) in runs.items():
        cfg = apply_overrides(load_config("synth-vit-adapter-nano"), sets + [f"model.head={head}"])
        start = time.time()
        run = train(cfg, data, out / f"run-{key}", space, progress=False, map_classes_by_name=True)
        seconds = time.time() - start
        res = evaluate(run["checkpoint"], None, data, progress=False, output=out / f"eval-{key}.json",
                       map_classes_by_name=True)
        results[key] = {"mIoU": res["mIoU"], "mAcc": res["mAcc"], "aAcc": res["aAcc"],
                        "final_loss": run["loss"], "train_seconds": round(seconds, 1)}
        if space_all is None:
            continue
        res = evaluate(out / f"run-{key}", None, data, label_space=space_all, progress=False,
                       output=out / f"eval-{key}-all-classes.json")
        held = {r["class"]: r["IoU"] for r in res["per_class"] if r["class"] in info["heldout"]}
        values = [v for v in held.values() if v is not None]
        results[key]["all_classes"] = {"mIoU": res["mIoU"], "heldout_IoU": held,
                                       "heldout_mIoU": sum(values) / len(values) if values else None}
    results["note"] = "a one-hot model has no output for held-out classes: their IoU is 0 by construction"
    write_json(out / "results.json", results)
    print(f"{len(info['seen'])} seen classes, {args.iters} iterations, K={args.k}:")
    for key in runs:
        r = results[key]
        line = f"  {key:16s} mIoU {r['mIoU']:6.2f}  mAcc {r['mAcc']:6.2f}  aAcc {r['aAcc']:6.2f}  ({r['train_seconds']} s)"
        if "all_classes" in r:
            a = r["all_classes"]
            line += f"  | all {len(info['seen']) + len(info['heldout'])} classes mIoU {a['mIoU']:6.2f}, held-out mIoU {a['heldout_mIoU']}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
