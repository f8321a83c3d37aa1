"""import-properties: the paper's {property: ["class: description", ...]} file -> an artifact with
exactly its assignment and names, centres = member means under the real MiniLM (PyPI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.cli import main
from prolab_cli.embed import Embedder, EmbedOptions

CLASSES = ["wall", "building", "sky", "floor", "tank"]

# as the paper's files, with dirt: padded names and lines, a case-folded and an aliased class name
# ("SKY ", "storage tank"), a repeated line, a blank line
DIRTY = {
    "Vertical structure or surface ": [
        "wall: Vertical structure that separates spaces",
        "building:  Tall   structure with windows ",
        "wall: Vertical structure that separates spaces",
    ],
    "Sky and atmosphere": ["SKY : Expansive upper atmosphere", "sky: Blue or grey expanse overhead", "  "],
    "Ground surface": ["floor: Horizontal surface you walk on", "wall: Painted flat surface"],
    "Container": ["storage tank: Large cylindrical container for liquids", "building: Rectangular shape"],
}

# what the file says once cleaned: (class index, description) per property, in file order
MEMBERS = [
    [(0, "Vertical structure that separates spaces"), (1, "Tall structure with windows")],
    [(2, "Expansive upper atmosphere"), (2, "Blue or grey expanse overhead")],
    [(3, "Horizontal surface you walk on"), (0, "Painted flat surface")],
    [(4, "Large cylindrical container for liquids"), (1, "Rectangular shape")],
]


def _write(tmp_path, data, name="property_toy.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    return path


def _invoke(tmp_path, path, *extra):
    return CliRunner().invoke(main, ["import-properties", str(path), "--classes", str(tmp_path / "classes.txt"),
                                     "--model", "minilm", "--out-dir", str(tmp_path / "spaces"), "-q", *extra])


def test_artifact_has_the_files_assignment_names_and_member_means(tmp_path):
    path = _write(tmp_path, DIRTY)
    res = _invoke(tmp_path, path, "--name", "toy")
    assert res.exit_code == 0, res.output
    assert "class 2 'SKY' -> 'sky' (case-folded)" in res.output
    assert "class 4 'storage tank' -> 'tank' (alias)" in res.output
    assert "dropped 1 duplicate entries" in res.output and "dropped 1 blank entries" in res.output

    space = LabelSpace.load(tmp_path / "spaces" / "toy")
    assert space.classes == CLASSES
    assert space.property_names == ["Vertical structure or surface", "Sky and atmosphere", "Ground surface", "Container"]
    expected = np.zeros((len(CLASSES), len(MEMBERS)), np.float32)
    for k, members in enumerate(MEMBERS):
        for c, _ in members:
            expected[c, k] = 1
    np.testing.assert_array_equal(space.multi_hot, expected)
    assert space.descriptions["building"] == ["Tall structure with windows", "Rectangular shape"]

    embedder = Embedder(EmbedOptions("minilm"))  # embedded afresh here, averaged by hand
    for k, members in enumerate(MEMBERS):
        vectors = embedder.embed([d for _, d in members], progress=False)
        np.testing.assert_allclose(space.centres[k], vectors.mean(0), atol=1e-6)
    provenance = space.manifest["provenance"]
    assert provenance["import"]["format"] == "prolab-property-json"
    assert provenance["import"]["classes"]["renamed"][1] == {"index": 4, "from": "storage tank", "to": "tank",
                                                             "how": "alias"}
    assert provenance["build"]["property_names"] == "given" and provenance["embed"]["model"] == "minilm"


def _error_line(res) -> str:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.mark.parametrize("change, message", [
    ({"Container": ["unicorn: Horse with a horn", "tank: Large cylindrical container"]},
     "class 'unicorn' (property 3 'Container') is not in the dataset's class list and has no known alias"),
    ({"Container": ["A large cylindrical container", "tank: Large cylindrical container"]},
     "property 3 'Container': entry 0 'A large cylindrical container' is not \"class: description\""),
    ({"Container": ["building: Rectangular shape"]},
     "dataset classes with no description in the file: ['tank']"),
    ({"Container": ["tank: Large container", "sky: Blue or grey expanse overhead"]},
     "'sky': 'Blue or grey expanse overhead' is listed under property 1 'Sky and atmosphere' and property 3"),
    ({"Container": []}, "property 3 'Container': no members"),
])
def test_bad_property_files_are_one_line_errors(tmp_path, change, message):
    path = _write(tmp_path, {**DIRTY, **change})
    assert message in _error_line(_invoke(tmp_path, path))


def test_malformed_and_repeated_property_names(tmp_path):
    path = tmp_path / "bad.json"
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    path.write_text('{"A": ["wall: x"], "a ": ["sky: y"]}', encoding="utf-8")
    assert "property 1 'a': the same name as property 0" in _error_line(_invoke(tmp_path, path))
    path.write_text('{"A": ["wall: x"],', encoding="utf-8")
    assert "bad.json: malformed JSON at line 1" in _error_line(_invoke(tmp_path, path))
