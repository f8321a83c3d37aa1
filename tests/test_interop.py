"""The paper's formats: dirty descriptor files and the embedding-bank .pth (round trip, golden bank)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from prolab_cli.descriptor_files import read_descriptions
from prolab_cli.interop import bank_to_label_space, default_bank_key, export_bank, load_bank

torch = pytest.importorskip("torch")


def test_dirty_descriptor_file(tmp_path):
    path = tmp_path / "descriptors_ade20k.json"
    # as published: a trailing-space key repeated, an empty list, duplicates, blank and padded lines
    path.write_text(
        '{"wall ": ["flat vertical surface", "Flat vertical  surface", "  painted "],'
        ' "wall": ["flat vertical surface", "holds windows"],'
        ' "sky": [], "floor": ["", "walked on"]}',
        encoding="utf-8",
    )
    descriptions, report = read_descriptions(path)
    assert descriptions == {
        "wall": ["flat vertical surface", "painted", "holds windows"],
        "sky": [],
        "floor": ["walked on"],
    }
    assert report.renamed_keys == [("wall ", "wall")]
    assert report.merged_keys == ["wall"]
    assert report.dropped_duplicates == 2 and report.dropped_blank == 1
    assert report.empty_classes == ["sky"]
    assert len(report.lines()) == 5


def _space(tmp_path) -> LabelSpace:
    rng = np.random.default_rng(0)
    multi_hot = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 1]], np.float32)
    return LabelSpace.from_arrays(
        "toy", ["road", "car", "sky"], multi_hot, rng.standard_normal((5, 8)).astype(np.float32),
        descriptions={"road": ["flat"], "car": ["wheels", "metal"], "sky": ["blue"]},
        provenance={"embed": {"model": "bge-base"}},
    )


def test_bank_round_trip(tmp_path):
    space = _space(tmp_path)
    art = space.save(tmp_path / "spaces")
    bank_path = tmp_path / "bank.pth"
    runner = CliRunner()
    res = runner.invoke(main, ["export-bank", str(art), "-o", str(bank_path)])
    assert res.exit_code == 0, res.output
    assert "bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels" in res.output

    # what ProLab's code reads: centres [D,K], multi-hot [K,C] float64
    raw = torch.load(bank_path, weights_only=True)
    centres, hot = raw["bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels"]
    assert centres.shape == (8, 5) and centres.dtype == torch.float32
    assert hot.shape == (5, 3) and hot.dtype == torch.float64
    assert list(raw["descriptions"]) == ["road", "car", "sky"]

    res = runner.invoke(main, ["import-bank", str(bank_path), "--name", "back", "--out-dir", str(tmp_path / "spaces")])
    assert res.exit_code == 0, res.output
    back = LabelSpace.load(tmp_path / "spaces" / "back")
    assert back.classes == space.classes and back.descriptions == space.descriptions
    np.testing.assert_array_equal(back.centres, space.centres)
    np.testing.assert_array_equal(back.multi_hot, space.multi_hot)
    assert back.centres_hash == space.centres_hash

    again = tmp_path / "again.pth"
    export_bank(back, again, key="bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels")
    raw2 = torch.load(again, weights_only=True)
    for a, b in zip(raw["bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels"],
                    raw2["bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels"]):
        assert torch.equal(a, b)


def test_golden_bank_imports_as_the_segmentor_uses_it(tmp_path, reference_data):
    from safetensors.numpy import load_file

    g = load_file(str(reference_data / "golden" / "prolab_bank.safetensors"))
    d, k = g["centres"].shape
    c = g["multihot"].shape[1]
    bank = {
        "descriptions": {f"class {i} ": [f"description of {i}"] for i in range(c)},
        f"bge_base_gpt3.5_cluster_{k}_embeddings_and_labels": [
            torch.from_numpy(g["centres"]), torch.from_numpy(g["multihot"].astype(np.float64))],
    }
    path = tmp_path / "golden.pth"
    torch.save(bank, path)
    space = bank_to_label_space(load_bank(path), "golden", source=str(path))
    assert space.classes == [f"class {i}" for i in range(c)]
    assert (space.num_classes, space.num_properties, space.dim) == (c, k, d)
    # the segmentor's bank_used = F.normalize(centres.T) and cluster2label_used = multihot.T
    normalised = space.centres / np.linalg.norm(space.centres, axis=1, keepdims=True)
    np.testing.assert_allclose(normalised, g["bank_used"], atol=1e-6)
    np.testing.assert_array_equal(space.multi_hot, g["cluster2label_used"])
    assert space.properties[0]["classes"] == []  # cluster 0 of the golden bank belongs to no class


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bank_errors(tmp_path):
    good = {"descriptions": {"a": ["x"], "b": ["y"]},
            "m_gpt3.5_cluster_2_embeddings_and_labels": [torch.randn(4, 2), torch.eye(2, dtype=torch.float64)]}
    with pytest.raises(ProlabError, match="expected one '\\*_cluster_<K>_embeddings_and_labels' entry, found none"):
        bank_to_label_space({"descriptions": {}}, "x")
    two = dict(good, **{"n_gpt3.5_cluster_2_embeddings_and_labels": good["m_gpt3.5_cluster_2_embeddings_and_labels"]})
    with pytest.raises(ProlabError, match="choose one with import_bank.key"):
        bank_to_label_space(two, "x")
    assert bank_to_label_space(two, "x", key="n_gpt3.5_cluster_2_embeddings_and_labels").num_properties == 2
    bad_shape = dict(good, **{"m_gpt3.5_cluster_2_embeddings_and_labels": [torch.randn(4, 3), torch.eye(2)]})
    with pytest.raises(ProlabError, match=r"shapes \[4, 3\] and \[2, 2\] are not \[D,K\] and \[K,C\]"):
        bank_to_label_space(bad_shape, "x")
    with pytest.raises(ProlabError, match=r"describes 2 classes but the class list \(given\) has 3"):
        bank_to_label_space(good, "x", classes=["a", "b", "c"])
    with pytest.raises(ProlabError, match=r"class 0 'a' is not in the dataset's class list"):
        bank_to_label_space(good, "x", classes=["road", "car"])
    no_text = {k: v for k, v in good.items() if k != "descriptions"}
    assert bank_to_label_space(no_text, "x", classes=["road", "car"]).classes == ["road", "car"]

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x04 not a torch file")
    with pytest.raises(ProlabError, match="junk.pth: not a loadable bank"):
        load_bank(junk)
    with pytest.raises(ProlabError, match="no such file"):
        load_bank(tmp_path / "missing.pth")


def test_default_bank_key_names_the_model(tmp_path):
    space = _space(tmp_path)
    assert default_bank_key(space) == "bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels"
    path = export_bank(space, tmp_path / "b.pth")
    assert json.dumps(sorted(torch.load(path, weights_only=True))) == json.dumps(
        ["bge-base-en-v1.5_gpt3.5_cluster_5_embeddings_and_labels", "descriptions"])


class Note:
    """A pickled object that weights-only loading refuses."""


def test_bank_with_pickled_objects_needs_trust(tmp_path):
    bank = {"descriptions": {"a": ["x"], "b": ["y"]},
            "m_gpt3.5_cluster_2_embeddings_and_labels": [torch.randn(4, 2), torch.eye(2, dtype=torch.float64)],
            "extra": Note()}
    path = tmp_path / "objects.pth"
    torch.save(bank, path)
    with pytest.raises(ProlabError, match="retry with trust_pickle"):
        load_bank(path)
    assert bank_to_label_space(load_bank(path, trust_pickle=True), "x").classes == ["a", "b"]
