"""The label-space artifact: save/load round trip, determinism, verification, centres sharing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prolab_cli.artifact import LabelSpace
from prolab_cli.errors import ProlabError


def _space(name="toy", seed=0, classes=("road", "car", "sky")):
    rng = np.random.default_rng(seed)
    multi_hot = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=np.float32)[: len(classes)]
    centres = rng.standard_normal((4, 8)).astype(np.float32)
    descriptions = {c: [f"a {c}", f"the {c} is here"] for c in classes}
    return LabelSpace.from_arrays(name, list(classes), multi_hot, centres,
                                  property_names=["flat", "metal", "grey", "blue"], descriptions=descriptions,
                                  provenance={"embed": {"model": "toy"}})


def test_round_trip_keeps_everything(tmp_path):
    space = _space()
    path = space.save(tmp_path)
    assert path == tmp_path / "toy"
    assert sorted(p.name for p in path.iterdir()) == [
        "descriptions.json", "manifest.json", "properties.json", "tensors.safetensors"]
    loaded = LabelSpace.load(path)
    assert loaded.classes == ["road", "car", "sky"]
    np.testing.assert_array_equal(loaded.multi_hot, space.multi_hot)
    np.testing.assert_array_equal(loaded.centres, space.centres)
    assert loaded.multi_hot.dtype == np.float32 and loaded.centres.dtype == np.float32
    assert loaded.property_names == ["flat", "metal", "grey", "blue"]
    assert loaded.properties[2]["classes"] == ["road", "car"]
    assert loaded.descriptions["car"] == ["a car", "the car is here"]
    assert loaded.version == space.version == loaded.manifest["version"]
    assert len(loaded.version) == 16
    assert loaded.manifest["provenance"] == {"embed": {"model": "toy"}}
    assert (loaded.num_classes, loaded.num_properties, loaded.dim) == (3, 4, 8)


def test_same_content_same_version_and_bytes(tmp_path):
    a = _space().save(tmp_path / "a")
    b = _space().save(tmp_path / "b")
    for fname in ("descriptions.json", "properties.json", "tensors.safetensors"):
        assert (a / fname).read_bytes() == (b / fname).read_bytes()
    assert LabelSpace.load(a).version == LabelSpace.load(b).version
    assert _space(seed=1).version != _space().version


def test_tampered_and_truncated_are_refused(tmp_path):
    path = _space().save(tmp_path)
    tensors = path / "tensors.safetensors"
    data = tensors.read_bytes()
    tensors.write_bytes(data[:-10])
    with pytest.raises(ProlabError, match="tensors.safetensors: hash mismatch"):
        LabelSpace.load(path)
    tensors.write_bytes(data)
    LabelSpace.load(path)

    desc = path / "descriptions.json"
    desc.write_text(desc.read_text().replace("a car", "a bus"))
    with pytest.raises(ProlabError, match="descriptions.json: hash mismatch"):
        LabelSpace.load(path)


def test_manifest_errors(tmp_path):
    path = _space().save(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(dict(manifest, format_version=99)))
    with pytest.raises(ProlabError, match="format_version 99"):
        LabelSpace.load(path)
    (path / "manifest.json").write_text(json.dumps(dict(manifest, version="0" * 16)))
    with pytest.raises(ProlabError, match="'version' does not match"):
        LabelSpace.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ProlabError, match="malformed JSON"):
        LabelSpace.load(path)
    with pytest.raises(ProlabError, match="no manifest.json"):
        LabelSpace.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "multi_hot, centres, match",
    [
        (np.ones((2, 4)), np.ones((4, 3)), r"'multi_hot' must be \[C,K\] = \[3,4\]"),
        (np.full((3, 4), 0.5), np.ones((4, 3)), "values other than 0 and 1"),
        (np.eye(3, 4) * 0 + np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]), np.ones((4, 3)),
         r"own no property.*'sky'"),
        (np.eye(3, 4), np.full((4, 3), np.nan), "NaN"),
    ],
)
def test_bad_arrays(multi_hot, centres, match):
    with pytest.raises(ProlabError, match=match):
        LabelSpace.from_arrays("bad", ["road", "car", "sky"], multi_hot, centres)


def test_collisions_are_named():
    space = LabelSpace.from_arrays("c", ["a", "b", "c"], np.array([[1, 0], [1, 0], [0, 1]]), np.eye(2))
    assert space.collisions() == [["a", "b"]]


def test_with_classes_of_needs_same_centres():
    base = _space()
    other = LabelSpace.from_arrays("other", ["bus", "tree"], np.array([[0, 1, 1, 0], [1, 0, 0, 1]]),
                                   base.centres.copy())
    merged = base.with_classes_of(other)
    assert merged.classes == ["bus", "tree"]
    assert merged.centres_hash == base.centres_hash
    assert merged.property_names == base.property_names
    assert merged.properties[0]["classes"] == ["tree"]
    moved = LabelSpace.from_arrays("moved", ["bus"], np.array([[1, 0, 0, 0]]), base.centres + 1e-3)
    with pytest.raises(ProlabError, match="different centres"):
        base.with_classes_of(moved)
