"""Shipped label spaces side by side with ones built from other descriptions (the paper's released
descriptor files, when you have them), through the same MiniLM embedding and k-means at the paper's K.

Per dataset and description set: classes in collisions at the paper's K, properties per class, classes
per property, the share of classes whose nearest neighbour by multi-hot Jaccard is a class a person would
call related (hand-written groups in bench/related_classes/<list>.json; ties share the vote), and what
prolab's description rules flag in the descriptions (boilerplate, own name, length, number prefix).

Usage:
  python bench/label_space_quality.py [--paper-descriptors DIR] [--json out.json]

DIR holds the paper's ``descriptors_<dataset>_gpt3.5_cluster.json`` files (not in this repository; the
ProLab GitHub repository has them under descriptors/). Without it, only the shipped spaces are measured.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
#: list -> (shipped label space, the paper's K, the paper's descriptor file name)
DATASETS = {
    "ade20k": ("ade20k", 256, "descriptors_ade20k_gpt3.5_cluster.json"),
    "coco-stuff": ("coco-stuff", 256, "descriptors_coco_stuff_164k_gpt3.5_cluster.json"),
    "pascal-context-59": ("pascal-context-59", 128, "descriptors_pascal_context_59_gpt3.5_cluster.json"),
    "cityscapes": ("cityscapes", 32, "descriptors_cityscapes_bdd_gpt3.5_cluster.json"),
}


def lint_counts(descriptions: dict[str, list[str]]) -> dict[str, int]:
    """How many descriptions each rule of prolab_cli.description_rules flags (count rule left out)."""
    from prolab_cli.description_rules import file_violations

    found = file_violations(descriptions, per_class=(0, 10**9))
    counts = collections.Counter(v.rule for v in found)
    return {"descriptions": sum(len(v) for v in descriptions.values()), **dict(sorted(counts.items()))}


def built_from(path: Path, classes: list[str], k: int, work: Path):
    """(classes, multi_hot) of ``path``'s descriptions through MiniLM and k-means at K (seed 0)."""
    from prolab_cli.cluster import Clustering, run_cluster
    from prolab_cli.embed import EmbeddingSet, run_embed
    from prolab_cli.stage_options import ClusterOptions, EmbedOptions

    emb_path, clu_path = work / f"{path.stem}.emb.safetensors", work / f"{path.stem}.clu.safetensors"
    run_embed(path, emb_path, options=EmbedOptions(model="minilm"), progress=False)
    run_cluster(emb_path, clu_path, options=ClusterOptions(k=k, seed=0))
    emb, clusters = EmbeddingSet.load(emb_path), Clustering.load(clu_path)
    if len(emb.classes) != len(classes):
        raise SystemExit(f"{path}: {len(emb.classes)} classes, the built-in list has {len(classes)}")
    # the released files name a few classes differently; the order is the dataset's, so rows map by position
    return classes, clusters.multi_hot(emb.desc_class, len(emb.classes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-descriptors", type=Path, default=None)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("PROLAB_CACHE", tempfile.mkdtemp(prefix="prolab-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from prolab_cli.artifact import LabelSpace
    from prolab_cli.classes import load_classes
    from prolab_cli.quality import measure, read_groups

    rows, work = [], Path(tempfile.mkdtemp(prefix="prolab-quality-"))
    for name in args.datasets.split(","):
        space_name, k, paper_file = DATASETS[name]
        classes = load_classes(name)
        groups = read_groups(ROOT / "related_classes" / f"{name}.json")
        space = LabelSpace.load(space_name)
        rows.append({"dataset": name, "descriptions": "prolab (shipped, MiniLM)", "K": space.num_properties,
                     **measure(space.classes, space.multi_hot, groups).as_dict(), "lint": lint_counts(space.descriptions)})
        paper = args.paper_descriptors / paper_file if args.paper_descriptors else None
        if paper is not None and paper.is_file():
            released = json.loads(paper.read_text(encoding="utf-8"))
            _, multi_hot = built_from(paper, classes, k, work)
            by_position = dict(zip(classes, released.values()))
            rows.append({"dataset": name, "descriptions": "paper's released (gpt-3.5), same MiniLM", "K": k,
                         **measure(classes, multi_hot, groups).as_dict(), "lint": lint_counts(by_position)})
        print(f"{name}: done", file=sys.stderr)

    print("| dataset | descriptions | K | classes in collisions | properties/class (min-max) | classes/property (max)"
          " | one-class properties | nearest neighbour related | flagged by the rules |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lint = dict(r["lint"])
        total = lint.pop("descriptions")
        flagged = ", ".join(f"{rule} {n}" for rule, n in lint.items()) or "none"
        print(f"| {r['dataset']} | {r['descriptions']} | {r['K']} | {r['classes_in_collisions']} of {r['classes']}"
              f" | {r['properties_per_class_mean']:.1f} ({r['properties_per_class_min']}-{r['properties_per_class_max']})"
              f" | {r['classes_per_property_mean']:.1f} ({r['classes_per_property_max']})"
              f" | {r['single_class_properties']} | {100 * r['nn_related']:.0f} % of {r['nn_judged']}"
              f" | {flagged} (of {total}) |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
