"""The build stage and inspect, on synthetic embeddings (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.build import build_label_space, run_build
from prolab_cli.cli import main
from prolab_cli.cluster import Clustering, cluster_embeddings
from prolab_cli.embed import EmbeddingSet
from prolab_cli.errors import ProlabError
from prolab_cli.inspection import matrix_order, run_inspect, similar_classes


def hand_made() -> tuple[EmbeddingSet, Clustering]:
    """Five descriptions of three classes in 2-D, clustered by hand into three properties."""
    descriptions = {
        "road": ["flat grey surface", "painted lines"],
        "sidewalk": ["flat grey slabs"],
        "car": ["painted metal body", "four wheels"],
    }
    x = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9], [-1, 0]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([0, 1, 0, 1, 2])
    centres = np.stack([x[labels == k].mean(0) for k in range(3)]).astype(np.float32)
    emb = EmbeddingSet(descriptions, x, np.eye(3, 2, dtype=np.float32), {"model": "hand"})
    from prolab_cli.cluster import embeddings_hash

    info = {"k": 3, "seed": 0, "n_init": "auto", "inertia": 0.0, "n_iter": 1, "embeddings_hash": embeddings_hash(emb)}
    return emb, Clustering(centres, labels, info)


def test_multi_hot_and_property_names():
    emb, clusters = hand_made()
    space = build_label_space(emb, clusters, "hand")
    np.testing.assert_array_equal(space.multi_hot, [[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    # the two members of property 0 are equally far from their mean: ties go to description order
    assert space.properties[0]["name"] == "flat grey surface"
    assert space.properties[0]["classes"] == ["road", "sidewalk"]
    assert space.properties[0]["members"] == ["road: flat grey surface", "sidewalk: flat grey slabs"]
    assert space.properties[2] == {"id": 2, "name": "four wheels", "nearest": "four wheels", "members": ["car: four wheels"],
                                   "classes": ["car"]}
    assert space.desc_cluster.tolist() == [0, 1, 0, 1, 2]
    assert space.desc_class.tolist() == [0, 0, 1, 2, 2]
    assert space.manifest["provenance"]["cluster"]["k"] == 3


def test_name_is_member_nearest_centre():
    emb, clusters = hand_made()
    clusters.centres[1] = emb.embeddings[3] * 0.99 + emb.embeddings[1] * 0.01  # pull centre 1 to "painted metal body"
    space = build_label_space(emb, clusters, "hand")
    assert space.properties[1]["name"] == "painted metal body"
    assert space.properties[1]["members"][0] == "car: painted metal body"


def test_collisions_refused_unless_allowed():
    emb, clusters = hand_made()
    clusters.labels = np.array([0, 0, 0, 1, 1])  # road and sidewalk both own only property 0
    with pytest.raises(ProlabError, match="could not be told apart: road, sidewalk"):
        build_label_space(emb, clusters, "hand")
    space = build_label_space(emb, clusters, "hand", allow_collisions=True)
    assert space.collisions() == [["road", "sidewalk"]]


def _files(tmp_path):
    from test_cluster import blobs

    emb = blobs(n_classes=5, per_class=6, seed=1)
    emb_path = emb.save(tmp_path / "emb.safetensors")
    clu_path = cluster_embeddings(emb, 8, seed=0).save(tmp_path / "clu.safetensors")
    desc_path = tmp_path / "desc.json"
    desc_path.write_text(json.dumps(emb.descriptions))
    return emb, emb_path, clu_path, desc_path


def test_two_builds_give_the_same_version_and_bytes(tmp_path):
    _, emb_path, clu_path, desc_path = _files(tmp_path)
    a, pa = run_build(emb_path, clu_path, "det", tmp_path / "a", descriptions_path=desc_path)
    b, pb = run_build(emb_path, clu_path, "det", tmp_path / "b", descriptions_path=desc_path)
    assert a.version == b.version == LabelSpace.load(pa).version
    for fname in ("descriptions.json", "properties.json", "tensors.safetensors"):
        assert (pa / fname).read_bytes() == (pb / fname).read_bytes()
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (pa, pb))
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    assert ma["provenance"]["describe"]["descriptions_file"] == "desc.json"


def test_mismatched_inputs_are_refused(tmp_path):
    from test_cluster import blobs

    emb, emb_path, clu_path, desc_path = _files(tmp_path)
    other = blobs(n_classes=5, per_class=6, seed=2)
    other_clu = cluster_embeddings(other, 8).save(tmp_path / "other_clu.safetensors")
    with pytest.raises(ProlabError, match="clusters were not computed from these embeddings"):
        run_build(emb_path, other_clu, "x", tmp_path)
    changed = dict(emb.descriptions, class0=["something else"] * 6)
    desc_path.write_text(json.dumps(changed))
    with pytest.raises(ProlabError, match="descriptions file differs"):
        run_build(emb_path, clu_path, "x", tmp_path, descriptions_path=desc_path)
    with pytest.raises(ProlabError, match="no such file"):
        run_build(tmp_path / "missing.safetensors", clu_path, "x", tmp_path)


def test_build_and_inspect_cli(tmp_path):
    _, emb_path, clu_path, desc_path = _files(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["build", "--descriptions", str(desc_path), "--embeddings", str(emb_path),
                               "--clusters", str(clu_path), "--name", "toy", "--out-dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    art = tmp_path / "out" / "toy"
    space = LabelSpace.load(art)
    assert space.version in res.output

    res = runner.invoke(main, ["inspect", str(art)])
    assert res.exit_code == 0, res.output
    assert f"version      {space.version}" in res.output
    assert "K=8  D=16" in res.output and "class0, class1" in res.output

    res = runner.invoke(main, ["inspect", str(art), "--class", "CLASS2"])
    assert res.exit_code == 0 and "class 'class2' owns" in res.output
    k = int(np.flatnonzero(space.multi_hot[2])[0])
    assert space.properties[k]["name"] in res.output

    res = runner.invoke(main, ["inspect", str(art), "--property", str(k)])
    assert res.exit_code == 0 and f"property {k}: {space.properties[k]['name']}" in res.output
    assert "class2: description" in res.output

    plot = tmp_path / "m.png"
    res = runner.invoke(main, ["inspect", str(art), "--similar", "class0", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = runner.invoke(main, ["inspect", str(art), "--class", "bus"])
    assert res.exit_code == 1 and "class 'bus' is not in label space 'toy'" in res.output
    res = runner.invoke(main, ["inspect", str(art), "--property", "99"])
    assert res.exit_code == 1 and "out of range" in res.output


def test_similar_and_matrix_order():
    multi_hot = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 0]], np.float32)
    space = LabelSpace.from_arrays("s", ["a", "b", "c", "d"], multi_hot, np.eye(4))
    assert similar_classes(space, "a") == [("c", 2, pytest.approx(2 / 3))]
    assert [r[0] for r in similar_classes(space, "b")] == ["d", "c"]  # equal counts: higher Jaccard first
    rows, cols = matrix_order(multi_hot)
    assert sorted(rows.tolist()) == [0, 1, 2, 3] and sorted(cols.tolist()) == [0, 1, 2, 3]
    ordered = [tuple(multi_hot[r]) for r in rows]
    # a and c (sharing two properties) sit next to each other
    pos = {int(r): i for i, r in enumerate(rows)}
    assert abs(pos[0] - pos[2]) == 1, ordered


def test_inspect_refuses_tampered(tmp_path):
    _, emb_path, clu_path, _ = _files(tmp_path)
    _, path = run_build(emb_path, clu_path, "t", tmp_path)
    props = path / "properties.json"
    props.write_text(props.read_text().replace('"id": 1', '"id": 1 '))
    with pytest.raises(ProlabError, match="properties.json: hash mismatch"):
        run_inspect(path)


def test_subset_keeps_centres_properties_and_embeddings(tmp_path):
    emb, clusters = hand_made()
    space = build_label_space(emb, clusters, "hand")
    sub = space.subset(["car", "road"], "hand-sub")
    assert sub.classes == ["car", "road"]
    assert sub.centres_hash == space.centres_hash
    np.testing.assert_array_equal(sub.multi_hot, space.multi_hot[[2, 0]])
    assert sub.properties[0]["members"] == ["road: flat grey surface"]
    assert sub.properties[1]["classes"] == ["car", "road"]
    assert sub.property_names == space.property_names
    assert sub.desc_class.tolist() == [0, 0, 1, 1]  # car's two descriptions, then road's
    np.testing.assert_array_equal(sub.embeddings, emb.embeddings[[3, 4, 0, 1]])
    assert sub.manifest["provenance"]["subset_of"] == {"name": "hand", "version": space.version}
    back = LabelSpace.load(sub.save(tmp_path))
    assert back.version == sub.version and back.descriptions == {"car": emb.descriptions["car"],
                                                                 "road": emb.descriptions["road"]}
    with pytest.raises(ProlabError, match="class 'bus' is not in label space 'hand'"):
        space.subset(["bus"], "x")
