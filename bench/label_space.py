"""Benchmark of the label-space stages (one run, ratios printed together).

1. embed throughput: ``prolab embed``'s function (cold cache) vs a bare ``SentenceTransformer.encode``
   on the same 3,000 sentences with the same model and batch size (goal >= 0.9x);
2. warm-cache re-run vs the cold run (goal >= 20x faster);
3. k-means time for 20,000 x 384 vectors into K=256 (the paper's call).

4. with ``--descriptions N``: a label space for N descriptions (N/10 classes) end to end, through the
   same stage functions as the CLI: embed with a cold then a warm cache, cluster (sklearn against faiss
   at the same seed, inertia ratio; the default backend for that size), build, load and inspect, with
   the process's peak memory (targets at N=200,000, K=1024: cluster < 30 s, build and inspect < 5 s,
   warm embed >= 10x faster than cold).

Usage: python bench/label_space.py [--n 3000] [--batch-size 64] [--threads N] [--reps 3] [--json out.json]
       python bench/label_space.py --descriptions 200000 [--k 1024] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

SUBJECTS = ["road", "car", "tree", "sky", "building", "person", "bicycle", "wall", "fence", "pole",
            "sign", "light", "truck", "bus", "train", "rider", "terrain", "grass", "sidewalk", "window"]
TRAITS = ["a flat grey surface", "painted metal parts", "green leaves", "sharp edges", "rounded corners",
          "a reflective glass pane", "rough concrete texture", "thin vertical shape", "bright colours",
          "often seen near streets", "casts a long shadow", "made of wood", "covered in dust"]
PLACES = ["in a city", "at night", "on a rainy day", "next to a river", "in the countryside",
          "under a clear sky", "beside parked cars", "during rush hour"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct, description-like sentences of varied length."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        parts = [rng.choice(SUBJECTS), "with", rng.choice(TRAITS)]
        for _ in range(rng.randint(0, 3)):
            parts += ["and", rng.choice(TRAITS)]
        parts.append(rng.choice(PLACES))
        out.add(" ".join(parts) + f" ({len(out)})")
    return sorted(out, key=lambda s: rng.random())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cluster-n", type=int, default=20000)
    ap.add_argument("--cluster-k", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3, help="alternating rounds of bare vs prolab")
    ap.add_argument("--json", default=None)
    ap.add_argument("--descriptions", type=int, default=None, help="run the end-to-end label-space benchmark")
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--no-sklearn", action="store_true", help="skip the sklearn comparison (minutes at 200,000)")
    args = ap.parse_args()
    if args.descriptions:
        os.environ.setdefault("PROLAB_CACHE", tempfile.mkdtemp(prefix="prolab-bench-"))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return end_to_end(args)
    os.environ.setdefault("PROLAB_CACHE", tempfile.mkdtemp(prefix="prolab-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    from prolab_cli.atomic import write_json
    from prolab_cli.cache import Cache
    from prolab_cli.cluster import cluster_embeddings
    from prolab_cli.embed import EmbeddingSet, EmbedOptions, Embedder, get_encoder, resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = sentences(args.n)
    spec = resolve_model("minilm")
    encoder = get_encoder(spec, "sentence-transformers", "mean")  # load once, outside every timing
    model = encoder.model
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    results: dict[str, float] = {"n": args.n, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads()}
    # the machine is shared: alternate the two (and which goes first), keep the best of each
    bare_times, ours_times = [], []
    for rep in range(args.reps):
        for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
            if which == 0:
                t = time.perf_counter()
                bare = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                    show_progress_bar=False)
                bare_times.append(time.perf_counter() - t)
            else:
                cache = Cache(os.path.join(os.environ["PROLAB_CACHE"], f"cold{rep}.sqlite"))
                embedder = Embedder(EmbedOptions(batch_size=args.batch_size), cache)
                t = time.perf_counter()
                ours = embedder.embed(texts, progress=False)
                ours_times.append(time.perf_counter() - t)
                assert embedder.encoded == args.n
    np.testing.assert_allclose(ours, bare, atol=1e-5)
    results["bare_encode_s"] = min(bare_times)
    results["prolab_cold_s"] = min(ours_times)
    results["bare_runs_s"], results["prolab_runs_s"] = bare_times, ours_times
    results["throughput_ratio"] = results["bare_encode_s"] / results["prolab_cold_s"]

    warm_times = []
    for _ in range(3):
        embedder = Embedder(EmbedOptions(batch_size=args.batch_size), cache)  # a fresh run, same cache
        t = time.perf_counter()
        warm = embedder.embed(texts, progress=False)
        warm_times.append(time.perf_counter() - t)
        assert embedder.encoded == 0
    np.testing.assert_array_equal(warm, ours)
    results["prolab_warm_s"] = min(warm_times)
    results["warm_speedup"] = results["prolab_cold_s"] / results["prolab_warm_s"]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.cluster_n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    emb = EmbeddingSet({"all": [f"d{i}" for i in range(args.cluster_n)]}, x, np.zeros((1, 384), np.float32), {})
    t = time.perf_counter()
    result = cluster_embeddings(emb, args.cluster_k, seed=0)
    results["cluster_s"] = time.perf_counter() - t
    results["cluster_iterations"] = result.info["n_iter"]

    print(f"embed {args.n} sentences (MiniLM, batch {args.batch_size}, {results['torch_threads']} torch threads)")
    print(f"  bare SentenceTransformer.encode  {results['bare_encode_s']:8.3f} s  {args.n / results['bare_encode_s']:8.1f} sent/s")
    print(f"  prolab embed, cold cache         {results['prolab_cold_s']:8.3f} s  {args.n / results['prolab_cold_s']:8.1f} sent/s"
          f"   ratio {results['throughput_ratio']:.3f}x (goal >= 0.9x)")
    print(f"  prolab embed, warm cache         {results['prolab_warm_s']:8.3f} s"
          f"   {results['warm_speedup']:.0f}x faster than cold (goal >= 20x)")
    print(f"k-means {args.cluster_n} x 384 -> K={args.cluster_k}: {results['cluster_s']:.2f} s"
          f" ({results['cluster_iterations']} iterations)")
    if args.json:
        write_json(args.json, results)
    sys.stdout.flush()


def end_to_end(args) -> None:
    """Section 4 of the module docstring."""
    import resource

    from prolab_cli.artifact import LabelSpace
    from prolab_cli.atomic import write_json
    from prolab_cli.build import run_build
    from prolab_cli.cache import Cache
    from prolab_cli.cluster import Clustering, cluster_embeddings, run_cluster
    from prolab_cli.embed import EmbeddingSet, run_embed
    from prolab_cli.inspection import run_inspect
    from prolab_cli.stage_options import BuildOptions, ClusterOptions, EmbedOptions

    work = tempfile.mkdtemp(prefix="prolab-e2e-")
    texts = sentences(args.descriptions)
    descriptions = {f"class {i:05d}": texts[i * 10:(i + 1) * 10] for i in range(args.descriptions // 10)}
    path = os.path.join(work, "descriptions.json")
    write_json(path, descriptions)
    times: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - start
        print(f"  {name:<28} {times[name]:8.2f} s", flush=True)
        return out

    print(f"{args.descriptions} descriptions of {len(descriptions)} classes, K={args.k}")
    emb_path, clu_path = os.path.join(work, "emb.safetensors"), os.path.join(work, "clu.safetensors")
    options = EmbedOptions(batch_size=args.batch_size)
    timed("embed, cold cache", lambda: run_embed(path, emb_path, options=options, progress=False))
    timed("embed, warm cache", lambda: run_embed(path, emb_path, options=options, progress=False))
    print(f"  cache: {Cache().count('embed')} vectors; warm is {times['embed, cold cache'] / times['embed, warm cache']:.0f}x"
          " faster than cold (target >= 10x)")
    emb = EmbeddingSet.load(emb_path)
    chosen = timed("cluster (default backend)", lambda: run_cluster(emb_path, clu_path, options=ClusterOptions(k=args.k)))
    info = Clustering.load(clu_path).info
    print(f"    {info['algorithm']}, inertia {info['inertia']:.1f}  ({chosen})")
    if not args.no_sklearn:
        ref = timed("cluster, sklearn", lambda: cluster_embeddings(emb, args.k, backend="sklearn"))
        print(f"    inertia ratio default/sklearn {info['inertia'] / ref.info['inertia']:.4f} (target within 1 %)")
    space, out = timed("build", lambda: run_build(emb_path, clu_path, "e2e", work, descriptions_path=path,
                                                   options=BuildOptions(allow_collisions=True)))
    timed("load + inspect", lambda: run_inspect(str(out), None, 0, None, None, 10))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  peak RSS {peak:.2f} GB; artifact {sum(f.stat().st_size for f in out.iterdir()) / 1e6:.0f} MB")
    if args.json:
        write_json(args.json, {"descriptions": args.descriptions, "k": args.k, "times_s": times, "peak_gb": peak,
                               "cluster_info": info})


if __name__ == "__main__":
    main()
