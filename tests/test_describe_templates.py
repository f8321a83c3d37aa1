"""Templates, reply parsers and description validation."""

from __future__ import annotations

import hashlib

import pytest

from prolab_cli.errors import ProlabError
from prolab_cli.llm.replies import parse_reply, validate
from prolab_cli.paths import data_dir
from prolab_cli.templates import display_name, load_template, parse_template, template_names


def test_shipped_templates_load():
    assert {"prolab", "naive", "visual-features", "cupl"} <= set(template_names())
    for name in template_names():
        template = load_template(name)
        raw = (data_dir("prompts") / f"{name}.yaml").read_bytes()
        assert template.sha256 == hashlib.sha256(raw).hexdigest()
    assert load_template("paper").name == "prolab"
    assert load_template("menon").name == "visual-features"


def test_paper_prompt_chat_rendering():
    template = load_template("prolab")
    prompt = template.render("traffic_light", "chat")
    (role0, system), (role1, user) = prompt.messages
    assert (role0, system) == ("system", "You are a chatbot")
    assert role1 == "user"
    assert template.sampling["temperature"] == 0
    # five-part structure, then the four few-shot lists, then the question with '_' -> space
    order = [
        "Start with a general description",
        "Describe the shape, orientation",
        "Mention the material, texture, or typical colors",
        "Note common features",
        "End with possible additional details",
        "wall:\n- Vertical structure",
        "building:\n- Architectural structure with enclosure",
        "sky:\n- Upper atmospheric expanse",
        "floor:\n- Horizontal expanse, foundational surface",
        "Please apply this format to describe traffic light.",
    ]
    positions = [user.index(part) for part in order]
    assert positions == sorted(positions)
    assert "{" not in user


def test_completion_rendering_ends_with_the_query():
    template = load_template("prolab")
    prompt = template.render("sky_other", "completion")
    assert prompt.text.endswith("\n\nsky other:\n- ")
    assert prompt.answer_prefix == "- " and prompt.stop == ("\n\n",)
    # a base model sees the template's own completion examples, not the paper's (which leaked into its answers)
    assert prompt.text.count("- Small pot with a spout and a lid") == 1 and "- Vertical structure" not in prompt.text
    assert "- Vertical structure" in template.render("sky_other", "chat").messages[-1][1]
    visual = load_template("visual-features").render("car", "completion")
    assert visual.text.endswith("distinguishing a car in a photo?\nA: There are several useful visual features to tell there is a car in a photo:\n- ")
    assert "\nQ:" in visual.stop


def test_display_name():
    assert display_name("  potted_plant ") == "potted plant"
    assert display_name("building-other") == "building-other"


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "a template must be a YAML mapping"),
        ({"system": "x"}, "missing field 'user'"),
        ({"user": "describe it"}, "field 'user' must contain {class_name}"),
        ({"user": "{class_name}", "parser": "xml"}, "field 'parser' must be one of"),
        ({"user": "{class_name}", "examples": [{"class_name": "a", "descriptions": []}]}, "examples[0].descriptions"),
        ({"user": "{class_name}", "examples": ["a"]}, "examples[0]: needs 'class_name'"),
        ({"user": "{class_name}", "sampling": {"temperature": -1}}, "sampling.temperature"),
        ({"user": "{class_name}", "sampling": {"temp": 1}}, "unknown field(s) sampling.temp"),
        ({"user": "{class_name}", "colour": 1}, "unknown field(s) colour"),
        ({"user": "{class_name}", "example_format": "{class_name}"}, "must contain {bullets}"),
        ({"user": "{class_name}", "completion": {"stop": "x"}}, "completion.stop"),
        ({"user": "{class_name}", "max_descriptions": 0}, "max_descriptions"),
    ],
)
def test_bad_templates_name_the_field(data, message):
    with pytest.raises(ProlabError) as info:
        parse_template(data, "t.yaml")
    assert info.value.message.startswith("t.yaml: ")
    assert message in info.value.message


def test_template_file_errors(tmp_path):
    with pytest.raises(ProlabError, match="neither a shipped template"):
        load_template(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: [unclosed\n")
    with pytest.raises(ProlabError, match="bad.yaml: not valid YAML"):
        load_template(bad)
    good = tmp_path / "mine.yaml"
    good.write_text("user: 'List JSON facts about {class_name} like {\"a\": 1}'\nparser: json\n")
    template = load_template(good)
    assert template.name == "mine"
    assert template.render("cat", "chat").messages == (("user", 'List JSON facts about cat like {"a": 1}'),)


@pytest.mark.parametrize(
    "text, parser, expected",
    [
        ("Sure!\n- a\n* b\n\u2022 c\nnot me\n", "bullets", ["a", "b", "c"]),
        ("1. a\n2) b\n(3) c\n- d", "numbered", ["a", "b", "c"]),
        ('["a", "b", 3, "c"]', "json", ["a", "b", "c"]),
        ('Here:\n```json\n["a", "b"]\n```', "auto", ["a", "b"]),
        ('{"car": ["a", "b"]}', "auto", ["a", "b"]),
        ("Intro:\n1. a\n- b\n", "auto", ["a", "b"]),
        ("no list at all", "auto", []),
        ("no json", "json", []),
    ],
)
def test_parsers(text, parser, expected):
    assert parse_reply(text, parser) == expected


def test_validation_rules():
    prompt = "wall:\n- Vertical structure\n- Flat, consistent surface\nPlease describe car."
    lines = [
        "  Has four wheels ", "has four wheels.", "", "car", "Car:", "Features:", "Vertical structure",
        "**Metal body**", "12345", "x" * 301, "Headlights at the front", "Cut off mid-sen",
    ]
    result = validate(lines, class_name="car", prompt_text=prompt, truncated=True)
    assert result.kept == ["Has four wheels", "Metal body", "Headlights at the front"]
    assert result.dropped["duplicate"] == ["has four wheels."]
    assert result.dropped["class name alone"] == ["car", "Car:"]
    assert result.dropped["heading"] == ["Features:"]
    assert result.dropped["echoed prompt"] == ["Vertical structure"]
    assert result.dropped["no words"] == ["12345"]
    assert result.dropped["too long"] == ["x" * 301]
    assert result.dropped["cut off by max_tokens"] == ["Cut off mid-sen"]
    assert result.dropped["empty"] == [""]


def test_numbers_only_variants_are_duplicates_and_tags_are_stripped():
    lines = ["1 person, typically male", "2 person, typically female", "3 person, typically male",
             "<em>Walks on two legs</em>", "Has 2 arms"]
    result = validate(lines, class_name="person")
    assert result.kept == ["1 person, typically male", "2 person, typically female", "Walks on two legs", "Has 2 arms"]
    assert result.dropped["duplicate"] == ["3 person, typically male"]


def test_example_class_may_repeat_its_own_examples():
    template = load_template("prolab")
    prompt = template.render("wall", "chat")
    lines = ["Vertical structure", "Flat, consistent surface", "Upper atmospheric expanse", "Made of plaster"]
    result = validate(lines, class_name="wall", prompt_text=prompt.visible_text(),
                      allowed_echo=template.example_lines("wall"))
    assert result.kept == ["Vertical structure", "Flat, consistent surface", "Made of plaster"]
    assert result.dropped["echoed prompt"] == ["Upper atmospheric expanse"]


def test_max_descriptions_cap():
    result = validate([f"line {chr(97 + i)}" for i in range(20)], class_name="x", max_descriptions=15)
    assert len(result.kept) == 15 and len(result.dropped["over max_descriptions"]) == 5
