"""The cluster stage on small synthetic embeddings (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.cluster import Clustering, cluster_embeddings, format_sweep, parse_n_init, sweep
from prolab_cli.embed import EmbeddingSet
from prolab_cli.errors import ProlabError


def blobs(n_classes=4, per_class=5, dim=16, seed=0) -> EmbeddingSet:
    """Descriptions of each class scattered around that class's own direction."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    descriptions, rows = {}, []
    for c in range(n_classes):
        descriptions[f"class{c}"] = [f"description {i} of class {c}" for i in range(per_class)]
        rows.append(centres[c] + 0.05 * rng.standard_normal((per_class, dim)))
    x = np.concatenate(rows).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = np.stack([centres[c] / np.linalg.norm(centres[c]) for c in range(n_classes)]).astype(np.float32)
    return EmbeddingSet(descriptions, x, names, {"model": "synthetic"})


def test_kmeans_recovers_blobs_and_is_seeded():
    emb = blobs()
    a = cluster_embeddings(emb, 4, seed=0)
    b = cluster_embeddings(emb, 4, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centres, b.centres)
    assert a.centres.shape == (4, 16) and a.centres.dtype == np.float32
    # each class's five descriptions share one cluster, and the four clusters differ
    per_class = a.labels.reshape(4, 5)
    assert (per_class == per_class[:, :1]).all()
    assert len(set(per_class[:, 0])) == 4
    assert sorted(a.sizes.tolist()) == [5, 5, 5, 5]
    assert a.empty == []
    assert a.info["seed"] == 0 and a.info["n_init"] == "auto" and a.info["inertia"] > 0
    mh = a.multi_hot(emb.desc_class, 4)
    assert mh.sum(1).tolist() == [1, 1, 1, 1]
    assert "K=4" in a.summary() and "empty clusters=none" in a.summary()


def test_result_is_a_k_means_fixed_point():
    """Whatever ran, the answer must be k-means': every label is the nearest centre, every centre
    is the mean of its members, and the inertia is their squared distance."""
    emb = blobs(n_classes=5, per_class=6, seed=3)
    x = emb.embeddings.astype(np.float64)
    ours = cluster_embeddings(emb, 7, seed=7, n_init=3)  # more clusters than classes: some classes split
    centres = ours.centres.astype(np.float64)
    dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(ours.labels, dist.argmin(1))
    members = [np.flatnonzero(ours.labels == j) for j in range(7)]
    assert all(len(m) for m in members) and ours.empty == []
    for j, m in enumerate(members):
        np.testing.assert_allclose(centres[j], x[m].mean(0), atol=1e-5)
    assert ours.info["inertia"] == pytest.approx(dist[np.arange(len(x)), ours.labels].sum(), rel=1e-4)


def test_k_too_large_and_bad_n_init():
    emb = blobs(n_classes=2, per_class=3)
    with pytest.raises(ProlabError, match=r"K=7 is larger than the number of descriptions \(6\)"):
        cluster_embeddings(emb, 7)
    with pytest.raises(ProlabError, match="at least 1"):
        cluster_embeddings(emb, 0)
    assert parse_n_init("auto") == "auto" and parse_n_init("4") == 4
    for bad in ("0", "many", -1):
        with pytest.raises(ProlabError, match=r"cluster\.n_init must be"):
            parse_n_init(bad)


def test_k_above_the_distinct_embeddings_is_refused():
    # four descriptions but only two distinct points: K=3 would leave a cluster without members
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    emb = EmbeddingSet({"a": ["x", "y"], "b": ["z", "w"]}, x, np.eye(2, dtype=np.float32), {})
    with pytest.raises(ProlabError, match=r"K=3 is larger than the number of distinct description embeddings \(2\)"):
        cluster_embeddings(emb, 3)
    assert cluster_embeddings(emb, 2).empty == []


@pytest.mark.parametrize("bad, why", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (0.0, "all zeros")])
def test_broken_embeddings_are_refused_on_load(tmp_path, bad, why):
    emb = blobs(n_classes=2, per_class=3)
    emb.embeddings[4] = bad
    path = emb.save(tmp_path / "e.safetensors")
    with pytest.raises(ProlabError, match=rf"e.safetensors: the embedding of description 4 \('.*'\) (holds |is ){why}"):
        EmbeddingSet.load(path)


def test_sweep_table_counts_collisions():
    emb = blobs(n_classes=4, per_class=5)
    rows = sweep(emb, [2, 4])
    assert [r["k"] for r in rows] == [2, 4]
    assert rows[0]["collisions"] >= 2 and rows[1]["collisions"] == 0
    assert rows[1]["inertia"] < rows[0]["inertia"]
    assert rows[1]["silhouette"] > 0.5
    table = format_sweep(rows)
    assert table.splitlines()[0].split() == ["K", "inertia", "silhouette", "empty", "collisions"]
    assert len(table.splitlines()) == 3


def test_file_round_trip_and_cli(tmp_path):
    emb = blobs()
    emb_path = emb.save(tmp_path / "e.safetensors")
    out = tmp_path / "c.safetensors"
    result = CliRunner().invoke(main, ["cluster", str(emb_path), "-k", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "K=4" in result.output
    loaded = Clustering.load(out)
    np.testing.assert_array_equal(loaded.labels, cluster_embeddings(emb, 4).labels)

    result = CliRunner().invoke(main, ["cluster", str(emb_path), "--sweep", "2,3"])
    assert result.exit_code == 0 and "silhouette" in result.output

    result = CliRunner().invoke(main, ["cluster", str(emb_path), "-k", "99", "-o", str(out)])
    assert result.exit_code == 1 and "K=99 is larger" in result.output

    result = CliRunner().invoke(main, ["cluster", str(emb_path), "--sweep", "2,x"])
    assert result.exit_code == 1 and "comma-separated" in result.output

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    result = CliRunner().invoke(main, ["cluster", str(tmp_path / "junk.safetensors"), "-k", "2", "-o", str(out)])
    assert result.exit_code == 1 and "junk.safetensors" in result.output
    with pytest.raises(ProlabError, match="not a prolab clusters file"):
        Clustering.load(emb_path)


def test_distinct_clusters_each_text_once():
    """A text many classes share weighs once. Pooled, twelve copies each of two close texts are
    worth splitting, and a rare class's own text is folded into one of them; with ``distinct``
    the two close texts share a cluster and the rare text keeps its own."""
    e = np.eye(4)
    texts = {"common a": 3 * e[0] + 0.3 * e[1], "common b": 3 * e[0] - 0.3 * e[1], "rare": 3 * e[0] + e[2],
             "far": 3 * e[3]}
    descriptions = {f"class{i}": ["common a", "common b", "far"] for i in range(12)} | {"rare class": ["rare"]}
    x = np.stack([texts[t] for v in descriptions.values() for t in v]).astype(np.float32)
    emb = EmbeddingSet(descriptions, x, np.zeros((13, 4), np.float32), {"model": "synthetic"})
    pooled = dict(zip(emb.texts, cluster_embeddings(emb, 3, seed=0).labels.tolist()))
    distinct = cluster_embeddings(emb, 3, seed=0, distinct=True)
    label = dict(zip(emb.texts, distinct.labels.tolist()))
    assert pooled["common a"] != pooled["common b"] and pooled["rare"] in (pooled["common a"], pooled["common b"])
    assert label["common a"] == label["common b"] and len({label["common a"], label["rare"], label["far"]}) == 3
    assert [label[t] for t in emb.texts] == distinct.labels.tolist()
    assert distinct.info["distinct"] is True and distinct.info["n_points"] == 4 and distinct.info["n_descriptions"] == 37
    np.testing.assert_allclose(distinct.centres[label["common a"]], 3 * e[0], atol=1e-5)  # each text once
    with pytest.raises(ProlabError, match=r"distinct descriptions \(4\)"):
        cluster_embeddings(emb, 5, distinct=True)
    # the sweep clusters each K the same way (it ignored distinct once, and showed the pooled collisions)
    row = sweep(emb, [3], distinct=True)[0]
    assert row["inertia"] == pytest.approx(distinct.info["inertia"])
    assert row["inertia"] != pytest.approx(sweep(emb, [3])[0]["inertia"])


def test_cluster_command_distinct_flag(tmp_path):
    emb = blobs()
    emb.save(tmp_path / "emb.safetensors")
    result = CliRunner().invoke(main, ["cluster", str(tmp_path / "emb.safetensors"), "-k", "4", "--distinct",
                                       "-o", str(tmp_path / "c.safetensors")])
    assert result.exit_code == 0, result.output
    assert Clustering.load(tmp_path / "c.safetensors").info["distinct"] is True


def _unit_blobs(n: int, d: int = 64, centres: int = 300, seed: int = 0) -> EmbeddingSet:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    descriptions = {f"class {i}": [f"text {j}" for j in range(i * 10, i * 10 + 10)] for i in range(n // 10)}
    return EmbeddingSet(descriptions, x, np.eye(n // 10, d, dtype=np.float32), {"model": "synthetic"})


def test_faiss_backend_matches_sklearn_inertia_and_is_deterministic():
    pytest.importorskip("faiss", reason="the faiss extra is part of make test's [all]")
    emb = _unit_blobs(6000)  # 300 blobs for 64 centres: faiss's own random start would land 3 % higher
    ref = cluster_embeddings(emb, 64, seed=0, backend="sklearn")
    fast = cluster_embeddings(emb, 64, seed=0, backend="faiss")
    assert fast.info["algorithm"] == "faiss.Kmeans" and ref.info["algorithm"] == "sklearn.cluster.KMeans"
    assert abs(fast.info["inertia"] / ref.info["inertia"] - 1) < 0.01
    again = cluster_embeddings(emb, 64, seed=0, backend="faiss")
    np.testing.assert_array_equal(again.labels, fast.labels)
    np.testing.assert_array_equal(again.centres, fast.centres)


def test_auto_backend_keeps_sklearn_for_paper_sized_inputs(monkeypatch):
    from prolab_cli import cluster as cluster_module

    assert cluster_module.choose_backend("auto", 1478) == "sklearn"  # ADE20K's 1,478 descriptions
    assert cluster_module.choose_backend("auto", 200_000) in ("faiss", "sklearn")
    monkeypatch.setattr(cluster_module, "FAISS_FROM_POINTS", 10)
    pytest.importorskip("faiss")
    assert cluster_embeddings(blobs(), 4).info["algorithm"] == "faiss.Kmeans"
    with pytest.raises(ProlabError, match="cluster.backend must be one of auto, sklearn, faiss"):
        cluster_embeddings(blobs(), 4, backend="kmeans++")
