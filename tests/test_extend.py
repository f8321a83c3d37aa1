"""`prolab extend`: new classes over the same centres (real MiniLM), `--keep`, errors, eval/predict."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.build import build_label_space
from prolab_cli.cli import main
from prolab_cli.cluster import cluster_embeddings
from prolab_cli.embed import EmbedOptions, embed_descriptions
from prolab_cli.errors import ProlabError
from prolab_cli.extend import assign_to_centres, run_extend

SEEN = {
    "tomato": ["bright red", "round like a ball", "smooth shiny skin"],
    "lemon": ["sunny yellow", "oval like an egg", "dimpled waxy skin"],
    "grass": ["vivid green", "thin long blades", "soft to the touch"],
    "sky": ["deep blue", "wide open space above", "clear and bright"],
}
NEW = {"cherry": ["bright red", "small and round like a ball"], "banana": ["sunny yellow", "long curved shape"]}


@pytest.fixture
def parent(tmp_path):
    emb = embed_descriptions(SEEN, EmbedOptions("minilm"), progress=False)
    clusters = cluster_embeddings(emb, 10, seed=0)
    space = build_label_space(emb, clusters, "fruit-k10")  # no two classes share a row
    return space.save(tmp_path / "spaces")


def test_extend_keeps_centres_and_assigns_nearest_centre(parent, tmp_path):
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    space, path, report = run_extend(parent, tmp_path / "new.json", out_dir=tmp_path / "out")
    old = LabelSpace.load(parent)
    loaded = LabelSpace.load(path)
    assert loaded.classes == old.classes + list(NEW)
    assert loaded.centres_hash == old.centres_hash and np.array_equal(loaded.multi_hot[:4], old.multi_hot)
    assert loaded.manifest["provenance"]["extended_from"] == {"name": "fruit-k10", "version": old.version}
    # the new rows are exactly the nearest-centre assignment of the artifact's own model's vectors
    vectors = embed_descriptions(NEW, EmbedOptions("minilm"), progress=False).embeddings
    expected = np.zeros((2, old.num_properties), np.float32)
    expected[np.repeat([0, 1], 2), assign_to_centres(vectors, old.centres)] = 1
    assert np.array_equal(loaded.multi_hot[4:], expected)
    # "bright red" is a description of tomato too: same vector, same centre, so cherry shares a property with it
    tomato = old.multi_hot[0]
    assert (loaded.multi_hot[4] * tomato).sum() >= 1
    assert report[0].name == "cherry" and report[0].nearest[0][0] == "tomato"
    assert [k for k, _ in report[0].properties] == list(np.flatnonzero(expected[0]))
    assert loaded.desc_cluster.shape == (len(loaded.embeddings),)


def test_identical_row_is_flagged(parent, tmp_path):
    (tmp_path / "twin.json").write_text(json.dumps({"tomato twin": SEEN["tomato"]}))
    _, _, report = run_extend(parent, tmp_path / "twin.json", name="twin", out_dir=tmp_path / "out")
    assert report[0].identical_to == ["tomato"]
    assert "identical row to tomato" in "\n".join(report[0].lines())


@pytest.mark.parametrize("content, match", [
    ({}, "no classes"),
    ({"cherry": []}, "no descriptions|empty descriptions"),
    ({" Tomato ": ["red"]}, "already present"),
])
def test_errors(parent, tmp_path, content, match):
    (tmp_path / "bad.json").write_text(json.dumps(content))
    result = CliRunner().invoke(main, ["extend", str(parent), "--descriptions", str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert re.search(match, result.output), result.output


def test_missing_embedding_model_is_one_line(parent, tmp_path):
    space = LabelSpace.load(parent)
    space.manifest["provenance"]["embed"]["model"] = str(tmp_path / "no-such-model")
    moved = space.save(tmp_path / "moved")
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    result = CliRunner().invoke(main, ["extend", str(moved), "--descriptions", str(tmp_path / "new.json")])
    assert result.exit_code == 1 and "missing here" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_other_model_weights_are_refused(parent, tmp_path):
    space = LabelSpace.load(parent)
    space.manifest["provenance"]["embed"]["fingerprint"] = "0" * 16
    moved = space.save(tmp_path / "moved")
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    with pytest.raises(ProlabError, match="is not the one"):
        run_extend(moved, tmp_path / "new.json")


def test_keep_and_cli(parent, tmp_path):
    (tmp_path / "new.json").write_text(json.dumps(NEW))
    result = CliRunner().invoke(main, ["extend", str(parent), "--keep", "sky,lemon", "--descriptions",
                                       str(tmp_path / "new.json"), "--name", "small", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "cherry: " in result.output and "nearest existing classes" in result.output
    small = LabelSpace.load(tmp_path / "o" / "small")
    old = LabelSpace.load(parent)
    assert small.classes == ["sky", "lemon", "cherry", "banana"] and small.centres_hash == old.centres_hash
    assert small.manifest["provenance"]["extended_from"]["version"] == old.version
    bad = CliRunner().invoke(main, ["extend", str(parent), "--keep", "sky,dragon"])
    assert bad.exit_code == 1 and "dragon" in bad.output


def test_eval_and_predict_accept_the_extended_space(tmp_path):
    """A model trained on the seen classes labels held-out ones through an extended artifact."""
    from conftest import trained_with_extension
    from segmentation.engine.evaluate import evaluate

    world = trained_with_extension(tmp_path)
    data, info, extended, run = world["data"], world["info"], world["extended"], {"checkpoint": world["checkpoint"]}
    res = evaluate(run["checkpoint"], data, label_space=extended, progress=False)
    assert res["swapped_class_rows"] and {r["class"] for r in res["per_class"]} >= set(info["heldout"])
    out = CliRunner().invoke(main, ["predict", "--checkpoint", run["checkpoint"], "--label-space", str(extended),
                                    str(next((data / "images" / "validation").iterdir())),
                                    "--out", str(tmp_path / "pred")])
    assert out.exit_code == 0, out.output
