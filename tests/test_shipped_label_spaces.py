"""The shipped label spaces: loadable by list name, built from the shipped descriptions at the documented K,
no collisions, a written name for every property, and rebuilt exactly by their recipes."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace, resolve_artifact_path
from prolab_cli.classes import BUILTIN, load_classes
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from prolab_cli.paths import data_dir
from prolab_cli.shipped import shipped_descriptions, shipped_space_path, shipped_spaces

#: built-in list -> (shipped artifact, K): the paper's K where the paper has one
EXPECTED = {
    "ade20k": ("ade20k-minilm-k256", 256),
    "coco-stuff": ("coco-stuff-minilm-k256", 256),
    "pascal-context-59": ("pascal-context-59-minilm-k128", 128),
    "cityscapes": ("cityscapes-minilm-k32", 32),
    "bdd100k": ("cityscapes-minilm-k32", 32),
    "ade20k-847": ("ade20k-847-minilm-k1024", 1024),
    "pascal-context-459": ("pascal-context-459-minilm-k512", 512),
}
RECIPES = data_dir("label_spaces") / "recipes"
#: lists whose properties carry names written after clustering (a names file beside the recipe)
WRITTEN_NAMES = {path.name.split(".")[0] for path in RECIPES.glob("*.names.json")}


def test_every_builtin_list_has_a_shipped_space():
    assert set(EXPECTED) == set(BUILTIN)
    assert WRITTEN_NAMES == set(EXPECTED) - {"bdd100k"}  # every shipped space (BDD100K shares Cityscapes')
    by_name = {space.name: space for space in shipped_spaces()}
    for list_name, (artifact, _) in EXPECTED.items():
        assert artifact in by_name, artifact
        assert list_name in by_name[artifact].lists
        assert shipped_space_path(list_name) == by_name[artifact].path


@pytest.mark.parametrize("list_name", [n for n in EXPECTED if n != "bdd100k"])
def test_shipped_space_matches_its_descriptions_and_names_every_property(list_name):
    artifact, k = EXPECTED[list_name]
    space = LabelSpace.load(list_name)  # by the list's name; load verifies every hash
    assert space.name == artifact and space.num_properties == k and space.dim == 384
    assert space.classes == load_classes(list_name)
    assert space.descriptions == shipped_descriptions(list_name), "rebuild it: prolab pipeline " + str(
        RECIPES / f"{list_name}.yaml")
    assert space.collisions() == []
    assert space.embeddings is None  # left out to keep the wheel small
    for prop in space.properties:
        assert prop["name"] and prop["nearest"] and len(prop["name"]) <= 80
        assert any(m.split(": ", 1)[1] == prop["nearest"] for m in prop["members"])
    provenance = space.manifest["provenance"]
    assert provenance["embed"]["model"] == "minilm" and provenance["cluster"]["k"] == k
    if list_name in WRITTEN_NAMES:
        # written (a name may keep the nearest description when that already is the best short name)
        assert sum(p["name"] != p["nearest"] for p in space.properties) >= 0.5 * k
        assert provenance["property_names_file"]["file"] == f"{list_name}.names.json"
    else:  # named by the description nearest each centre (see README)
        assert all(p["name"] == p["nearest"] for p in space.properties)


def test_names_resolve_everywhere_a_label_space_is_taken(tmp_path):
    assert resolve_artifact_path("bdd") == resolve_artifact_path("cityscapes") == shipped_space_path("cityscapes")
    runner = CliRunner()
    listing = runner.invoke(main, ["label-spaces"])
    assert listing.exit_code == 0, listing.output
    for artifact, k in set(EXPECTED.values()):
        assert artifact in listing.output
    assert "cityscapes, bdd100k" in listing.output
    inspected = runner.invoke(main, ["inspect", "ade20k"])
    assert inspected.exit_code == 0 and "ade20k-minilm-k256" in inspected.output
    missing = runner.invoke(main, ["inspect", "nosuch-space"])
    assert missing.exit_code == 1 and "no shipped label space has that name" in missing.output
    assert "label-spaces" in missing.output


def test_recipe_rebuilds_the_shipped_space_exactly(tmp_path):
    """The cityscapes recipe (MiniLM, k-means seed 0, the names file) gives the shipped artifact back."""
    from prolab_cli.pipeline import run_pipeline

    recipes = tmp_path / "label_spaces" / "recipes"
    shutil.copytree(RECIPES, recipes)
    shutil.copytree(data_dir("label_spaces") / "descriptions", tmp_path / "label_spaces" / "descriptions")
    result = run_pipeline(recipes / "cityscapes.yaml", echo=lambda s: None, progress=False)
    shipped = LabelSpace.load("cityscapes")
    assert result.path == tmp_path / "label_spaces" / "shipped" / "cityscapes-minilm-k32"
    np.testing.assert_array_equal(result.space.multi_hot, shipped.multi_hot)
    np.testing.assert_allclose(result.space.centres, shipped.centres, atol=1e-5)
    assert result.space.properties == shipped.properties


def test_a_names_file_for_other_clusters_is_refused(tmp_path):
    from prolab_cli.build import read_property_names

    shipped = LabelSpace.load("cityscapes")
    names = json.loads((RECIPES / "cityscapes.names.json").read_text(encoding="utf-8"))
    read_property_names(RECIPES / "cityscapes.names.json", shipped.properties)  # the shipped one fits
    names["properties"][3]["nearest"] = "Something else"
    stale = tmp_path / "names.json"
    stale.write_text(json.dumps(names))
    with pytest.raises(ProlabError, match=r"names.json: property 3: written for the description 'Something else', which is"
                                          r" no longer one of its members"):
        read_property_names(stale, shipped.properties)
    names["properties"] = names["properties"][:-1]
    stale.write_text(json.dumps(names))
    with pytest.raises(ProlabError, match=r"'properties' must list 32 entries"):
        read_property_names(stale, shipped.properties)



def test_a_new_version_of_a_shipped_space_goes_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.json").write_text(json.dumps({"zebra crossing": ["White stripes painted across a road",
                                                                      "Flat marking on the street surface"]}))
    result = CliRunner().invoke(main, ["extend", "cityscapes", "--descriptions", "new.json", "--name", "plus"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "label_spaces" / "plus" / "manifest.json").is_file()
    assert not (data_dir("label_spaces") / "shipped" / "plus").exists()  # never into the package's data


@pytest.mark.parametrize("names_file", sorted(RECIPES.glob("*.names.json")), ids=lambda p: p.name)
def test_written_property_names_follow_the_naming_rules(names_file):
    """2-6 words, at most 60 characters, a capital first, no full stop, no vague word, distinct
    within the list (label_spaces/descriptions/PROVENANCE.md, "Property names")."""
    names = [p["name"] for p in json.loads(names_file.read_text(encoding="utf-8"))["properties"]]
    for name in names:
        assert 2 <= len(name.split()) <= 6 and len(name) <= 60, name
        assert name[0].isupper() and not name.endswith("."), name
        assert not re.search(r"\b(various|miscellaneous|misc|etc|things|stuff)\b", name, re.I), name
    assert len({n.lower() for n in names}) == len(names)
