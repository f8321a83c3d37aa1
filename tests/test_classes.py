"""Built-in class lists and users' class lists."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prolab_cli.classes import BUILTIN, load_classes, normalise, parse_class_list
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError


@pytest.mark.parametrize(
    "name, count, first, last",
    [
        ("ade20k", 150, "wall", "flag"),
        ("coco-stuff", 171, "person", "wood"),
        ("pascal-context-59", 59, "aeroplane", "wood"),
        ("cityscapes", 19, "road", "bicycle"),
        ("bdd100k", 19, "road", "bicycle"),
    ],
)
def test_builtin_counts_and_order(name, count, first, last):
    names = load_classes(name)
    assert len(names) == count
    assert names[0] == first and names[-1] == last
    assert len({normalise(n) for n in names}) == count


def test_builtin_spot_checks_against_mmseg_order():
    ade = load_classes("ade20k")
    assert ade[7] == "bed"  # MMSeg spells it 'bed ' with a space; we store it stripped
    assert ade[44] == "chest of drawers" and ade[122] == "tank" and ade[149] == "flag"
    coco = load_classes("coco-stuff")
    assert coco[79] == "toothbrush" and coco[80] == "banner" and "hair drier" in coco
    assert coco.index("wall-brick") == 159
    assert load_classes("pascal-context-59")[39] == "pottedplant"
    assert load_classes("bdd100k") == load_classes("cityscapes")


@pytest.mark.parametrize(
    "alias, count, first",
    [
        ("ade", 150, "wall"), ("ADE20K", 150, "wall"), ("ade20k-150", 150, "wall"),
        ("cocostuff", 171, "person"), ("coco-stuff-164k", 171, "person"),
        ("pcontext", 59, "aeroplane"), ("pascal-context", 59, "aeroplane"),
        ("cityscapes-19", 19, "road"), ("bdd", 19, "road"),
    ],
)
def test_aliases_name_the_dataset_they_say(alias, count, first):
    names = load_classes(alias)
    assert (len(names), names[0]) == (count, first)


def test_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\ufeffcat\n dog \ntraffic_light\n\n")
    assert load_classes(path) == ["cat", "dog", "traffic_light"]
    assert load_classes(str(path)) == ["cat", "dog", "traffic_light"]


def test_json_list(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(["cat", "dog"], indent=1))
    assert load_classes(path) == ["cat", "dog"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("cat\n\ndog\n", "line 2: empty class name"),
        ("cat\ndog\n  \nbird", "line 3: empty class name"),
        ("cat\nDog\ndog\n", "line 3: duplicate class 'dog' (same as 'Dog' on line 2)"),
        ("traffic light\ntraffic_light\n", "line 2: duplicate class 'traffic_light'"),
        ("", "the class list is empty"),
        ("\n \n", "the class list is empty"),
        ('[\n "cat",\n "",\n "dog"\n]', "line 3: empty class name"),
        ('[\n "cat",\n "CAT "\n]', "line 3: duplicate class 'CAT'"),
        ('["cat", 3]', "line 1: item 1 is int"),
        ("[]", "the class list is empty"),
        ('["cat",', "invalid JSON"),
        ('{"cat": 1}', "expected a JSON list"),
    ],
)
def test_bad_lists_name_file_and_line(text, message):
    with pytest.raises(ProlabError) as info:
        parse_class_list(text, "mine.txt")
    assert info.value.message.startswith("mine.txt: ")
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_json_file_must_hold_a_list(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('"cat"')
    with pytest.raises(ProlabError, match="mine.json: expected a JSON list"):
        load_classes(path)


def test_unknown_name_and_bad_file(tmp_path):
    with pytest.raises(ProlabError, match="neither a built-in"):
        load_classes("no-such-list")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProlabError, match="not UTF-8"):
        load_classes(bad)


def test_cli_lists_and_prints():
    runner = CliRunner()
    listing = runner.invoke(main, ["classes"])
    assert listing.exit_code == 0, listing.output
    for name in BUILTIN:
        assert name in listing.output
    assert " 171 " in listing.output
    one = runner.invoke(main, ["classes", "bdd"])
    assert one.exit_code == 0
    assert one.output.splitlines() == load_classes("cityscapes")
    missing = runner.invoke(main, ["classes", "nope"])
    assert missing.exit_code == 1 and "Error: class list 'nope'" in missing.output
