"""The shipped descriptions (label_spaces/descriptions/<list>.json) pass the description rules, cover their
class lists exactly, and tell every class apart; the rules themselves catch what they name."""

from __future__ import annotations

import json

import pytest

from prolab_cli.classes import BUILTIN, load_classes
from prolab_cli.description_rules import (description_violations, file_violations, main as lint_main, own_names,
                                          word_count)
from prolab_cli.shipped import SHARED_DESCRIPTIONS, descriptions_dir, descriptions_path, shipped_descriptions

OWN_FILES = [name for name in BUILTIN if name not in SHARED_DESCRIPTIONS]


@pytest.mark.parametrize("list_name", OWN_FILES)
def test_every_builtin_list_ships_lint_clean_descriptions(list_name):
    path = descriptions_dir() / f"{list_name}.json"
    assert path.is_file(), f"{path} missing"
    data = json.loads(path.read_text(encoding="utf-8"))
    problems = [v.line() for v in file_violations(data, load_classes(list_name))]
    assert problems == [], f"{len(problems)} violations, first: {problems[:5]}"


@pytest.mark.parametrize("list_name", OWN_FILES)
def test_no_two_classes_share_their_descriptions(list_name):
    data = shipped_descriptions(list_name)
    seen: dict[frozenset, str] = {}
    for cls, lines in data.items():
        key = frozenset(" ".join(line.casefold().split()) for line in lines)
        assert key not in seen, f"{cls!r} and {seen[key]!r} have the same descriptions"
        seen[key] = cls


def test_bdd100k_shares_the_cityscapes_file():
    assert descriptions_path("bdd") == descriptions_path("cityscapes") == descriptions_dir() / "cityscapes.json"
    assert list(shipped_descriptions("bdd100k")) == load_classes("bdd100k")


def test_provenance_and_review_records_are_shipped():
    for name in ("CHECKLIST.md", "PROVENANCE.md", "REVIEW.md"):
        assert (descriptions_dir() / name).is_file(), name
    review = (descriptions_dir() / "REVIEW.md").read_text(encoding="utf-8")
    for list_name in OWN_FILES:
        assert f"`{list_name}`" in review, f"REVIEW.md has no row for {list_name}"


@pytest.mark.parametrize("line, rule", [
    ("4-wheeled vehicle", "number prefix"),
    ("1. Flat grey surface", "number prefix"),
    ("- Flat grey surface", "number prefix"),
    ("May have a variety of items, such as furniture", "boilerplate"),
    ("Comes in various colours", "boilerplate"),
    ("Doors, windows, etc", "boilerplate"),
    ("Parked cars beside the kerb", "own name"),
    ("A car on the road", "own name"),
    ("Flat", "length"),
    ("One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
     "length"),
    ("Flat grey surface.", "punctuation"),
    ("flat grey surface", "capital"),
    (" Flat grey surface", "white space"),
])
def test_each_rule_catches_its_case(line, rule):
    assert rule in {v.rule for v in description_violations("car", line)}


def test_good_lines_pass_and_names_are_matched_on_word_bounds():
    for line in ("Has four wheels and a windscreen", "Carpet-like texture on the seats", "Usually parked in rows"):
        assert description_violations("car", line) == []
    assert own_names("floor-other") == ["floor", "floor other"]
    assert own_names("person, individual, someone") == ["person", "person individual someone"]
    assert {v.rule for v in description_violations("floor-other", "Flat floors of halls")} == {"own name"}
    assert description_violations("wall-brick", "Made of bricks in rows") == []  # a material is no name
    assert {v.rule for v in description_violations("wall-brick", "A wall brick pattern")} == {"own name"}
    assert word_count("Four-legged animal with a mane") == 5


def test_file_rules_count_duplicates_and_class_order(tmp_path, capsys):
    good = [f"Distinct visible trait number {w}" for w in "abcdefgh"]
    data = {"road": good, "car": good[:7] + [good[0].upper()]}
    rules = [(v.class_name, v.rule) for v in file_violations(data, ["car", "road"])]
    assert ("*", "class list") in rules and ("car", "duplicate") in rules
    assert ("car", "count") not in rules and ("road", "count") not in rules
    assert ("road", "count") in [(v.class_name, v.rule) for v in file_violations({"road": good[:3]})]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert lint_main([str(path)]) == 1
    assert "2 classes, 16 descriptions, 1 violations" in capsys.readouterr().out
