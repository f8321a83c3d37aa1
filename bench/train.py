"""Classes never trained on: ProLab head (pipeline / oracle label space) vs one-hot vs class-embedding head.

For each seed: ``write_synth`` draws a world (seen classes, held-out classes that are new
combinations of seen properties, see ``segmentation.data.synth.make_classes``); the pipeline label
space is built from the *seen* descriptions (MiniLM -> k-means over distinct descriptions -> build)
and extended with the held-out descriptions by ``prolab extend``; every method trains
vit-adapter-nano on the same data, iterations and seed, two methods at a time in their own
processes (``--jobs``); ``segmentation.experiments.heldout.score_model`` scores all classes.

    python bench/train.py            # default size: 3 seeds x 4 methods, 29.3 min measured on 2 cores
    python bench/train.py --quick    # a smoke run of every step (300 iterations: numbers not meaningful)

Writes ``results.json``, ``results.md`` (the table), ``bars.png`` (mean +- std over seeds) and, per
seed, ``activation_maps.png`` (the oracle model's property maps on one held-out object).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIZES = {  # 4 colours x 4 textures x 5 shapes = 80 triples: 64 seen leave no property predicting another
    "default": dict(seeds="0,1,2", seen=64, heldout=8, colours=4, iters=2500, train_images=1024, val_images=48, k=24),
    "quick": dict(seeds="0,1,2", seen=64, heldout=8, colours=4, iters=300, train_images=256, val_images=24, k=24),
}
METRICS = ("seen_mIoU", "heldout_mIoU", "heldout_top1", "heldout_object_accuracy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out/bench_train")
    parser.add_argument("--quick", action="store_true", help="the CI size: " + json.dumps(SIZES["quick"]))
    for key, value in SIZES["default"].items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=None,
                            help=f"default {value} (quick {SIZES['quick'][key]})")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--min-distance", type=int, default=1,
                        help="Hamming distance of every held-out class from every seen class (2: the diagnosis control "
                             "where no seen class shares two properties with a held-out one)")
    parser.add_argument("--methods", default="pipeline,oracle,onehot,classemb")
    parser.add_argument("--bank-basis", default="span", choices=("span", "embedding"),
                        help="where the property heads' pixel embedding lives (model.bank_basis): span, K channels "
                             "(default); embedding, the paper's D = 384 MiniLM channels, which collapse here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per method")
    parser.add_argument("--jobs", type=int, default=2, help="methods trained at once, each in its own process")
    args = parser.parse_args(argv)
    base = SIZES["quick" if args.quick else "default"]
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def prepare_seed(args: argparse.Namespace, seed: int, out: Path) -> tuple[dict, list[tuple]]:
    """One seed's world and label spaces: (its result record so far, one training job per method)."""
    from segmentation.data.synth import write_synth
    from segmentation.experiments.heldout import World, make_spaces

    t0 = time.time()
    data = write_synth(out / "data", "ade20k", args.train_images, args.val_images, args.size, args.seen,
                       args.heldout, seed, min_support=2, min_distance=args.min_distance, num_colours=args.colours)
    world = World.load(data)
    spaces = make_spaces(world, out, args.k)
    result = {"seed": seed, "heldout_classes": world.heldout, "ari": spaces["ari"],
              "pipeline_collisions": spaces["pipeline_collisions"],
              "heldout_identical_rows": spaces["heldout_identical_rows"],
              "label_space_seconds": round(time.time() - t0, 1)}
    jobs = [(method, world, spaces[method], out, seed, args.size, args.iters, args.threads, args.bank_basis)
            for method in args.methods.split(",")]
    return result, jobs


def _train_method(job: tuple) -> dict:
    """Train and score one method (in a worker process when --jobs > 1); the oracle also draws
    its activation maps."""
    from segmentation.experiments.heldout import train_and_score

    method, world, space, out, seed, size, iters, threads, bank_basis = job
    torch.set_num_threads(threads)
    scores, model = train_and_score(world, {method: space}, method, out / f"run-{method}", size=size, iters=iters,
                                    seed=seed, bank_basis=bank_basis)
    print(f"seed {seed} {method:9s} seen mIoU {scores['seen_mIoU']:5.1f}  held-out mIoU {scores['heldout_mIoU']:5.1f}"
          f"  held-out objects {scores['heldout_object_accuracy']:5.1f} %  ({scores['train_seconds']:.0f} s)",
          file=sys.stderr, flush=True)
    if method == "oracle":
        activation_picture(model, world, out / "activation_maps.png")
    return scores


def summarise(results: list[dict], methods: list[str]) -> dict:
    """Mean and standard deviation (over seeds) of each metric of each method."""
    summary = {}
    for method in methods:
        summary[method] = {}
        for metric in METRICS + ("heldout_true_class_rank", "seen_true_class_rank"):
            values = [r[method][metric] for r in results]
            summary[method][metric] = (float(np.mean(values)), float(np.std(values)))
        for group in ("seen", "heldout"):
            key = f"{group}_property_accuracy_of_predicted_class"
            summary[method][key] = {a: float(np.mean([r[method][key][a] for r in results]))
                                    for a in ("colour", "texture", "shape")}
        key = "heldout_property_accuracy_of_property_head"
        if key in results[0][method]:
            summary[method][key] = {a: float(np.mean([r[method][key][a] for r in results]))
                                    for a in ("colour", "texture", "shape")}
    summary["ari"] = (float(np.mean([r["ari"] for r in results])), float(np.std([r["ari"] for r in results])))
    return summary


def table(summary: dict, methods: list[str], n_classes: int, n_held: int) -> str:
    """The markdown table of the summary."""
    names = {"pipeline": "ProLab head, pipeline label space (MiniLM -> k-means --distinct, + extend)",
             "oracle": "ProLab head, oracle property rows", "onehot": "one-hot (cannot name held-out: 0 by construction)",
             "classemb": "class-description-embedding head"}
    lines = ["| method | seen mIoU | held-out mIoU | held-out top-1 pixel acc. | held-out objects right |"
             " held-out true-class rank | held-out colour/texture/shape of predicted class |", "|---|---|---|---|---|---|---|"]
    for m in methods:
        s = summary[m]
        cells = [f"{s[k][0]:.1f} ± {s[k][1]:.1f}" for k in METRICS + ("heldout_true_class_rank",)]
        attr = s["heldout_property_accuracy_of_predicted_class"]
        lines.append(f"| {names[m]} | " + " | ".join(cells) + f" | {attr['colour']:.0f} / {attr['texture']:.0f} / {attr['shape']:.0f} |")
    lines.append(f"\nChance: top-1 among {n_classes} classes = {100 / n_classes:.1f} %, among the {n_held} held-out"
                 f" = {100 / n_held:.1f} %. k-means vs true properties: ARI {summary['ari'][0]:.2f} ± {summary['ari'][1]:.2f}.")
    return "\n".join(lines)


def bar_plot(summary: dict, methods: list[str], path: Path) -> None:
    """Bars with error bars (std over seeds) for each metric and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        means = [summary[m][k][0] for k in METRICS]
        stds = [summary[m][k][1] for k in METRICS]
        ax.bar(np.arange(len(METRICS)) + j * width, means, width, yerr=stds, capsize=3, label=m)
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(methods) - 1) / 2, ["seen mIoU", "held-out mIoU", "held-out top-1 acc.", "held-out objects right"])
    ax.set_ylabel("%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def activation_picture(model, world, path: Path) -> None:
    """Image, ground truth and the oracle head's colour / texture / shape property maps for the
    first validation object of a held-out class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segmentation.data.datasets import SegDataset
    from segmentation.data.synth import GROUND, SHAPES, TEXTURES
    from segmentation.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TestPipeline

    values = [GROUND, *world.colours, *TEXTURES, *SHAPES]
    ds = SegDataset("ade20k", world.root, "val", pipeline=TestPipeline(scale=None), target_classes=world.classes)
    for i in range(len(ds)):
        sample = ds[i]
        ids = set(sample["label"].unique().tolist())
        held = [c for c in world.heldout if world.classes.index(c) in ids]
        if held:
            break
    else:
        return
    cls = held[0]
    props = model.property_scores(sample["img"].unsqueeze(0))[0]
    image = sample["img"].permute(1, 2, 0).numpy() * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    panels = [("image", np.clip(image, 0, 255).astype(np.uint8)), (f"ground truth: {cls}", (sample["label"] == world.classes.index(cls)).numpy())]
    panels += [(f"property '{v}'", props[values.index(v)].numpy()) for v in world.properties[cls]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, vmin=None if im.ndim == 3 else 0, vmax=None if im.ndim == 3 else 1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("oracle ProLab head on a class it never trained on", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from segmentation.experiments.heldout import run_in_processes

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.time()
    prepared = [prepare_seed(args, seed, out / f"seed{seed}") for seed in seeds]
    done = iter(run_in_processes(_train_method, [job for _, jobs in prepared for job in jobs], args.jobs))
    results = [result | {method: next(done) for method in methods} for result, _ in prepared]
    summary = summarise(results, methods)
    n_classes, n_held = 1 + args.seen + args.heldout, args.heldout
    text = table(summary, methods, n_classes, n_held)
    total = time.time() - start
    header = (f"seeds {seeds}, {args.seen} seen + {args.heldout} held-out classes + ground, {args.size} px, "
              f"{args.train_images} train / {args.val_images} val images, {args.iters} iterations, K={args.k}, "
              f"property heads in the {args.bank_basis} basis, "
              f"{args.jobs} method(s) at once x {args.threads} thread(s): {total / 60:.1f} min in all")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "runs": results, "summary": summary,
                                                  "seconds": round(total, 1)}, indent=2) + "\n")
    (out / "results.md").write_text(header + "\n\n" + text + "\n")
    bar_plot(summary, methods, out / "bars.png")
    print(header)
    print(text)
    return 0 if all(not math.isnan(summary[m]["seen_mIoU"][0]) for m in methods) else 1


if __name__ == "__main__":
    raise SystemExit(main())
