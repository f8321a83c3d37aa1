"""``prolab describe`` without --llm: the shipped descriptions, the model only for classes they miss; and
the filters a small local model's replies go through."""

from __future__ import annotations

import json

from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.describe import LOCAL_MODEL_WARNING, describe_classes, run_describe
from prolab_cli.llm import Backend, Completion
from prolab_cli.llm.replies import validate
from prolab_cli.shipped import find_descriptions, shipped_descriptions
from prolab_cli.stage_options import DescribeOptions


class Local(Backend):
    """Stands in for the local model (kind "local"); answers by completion, records the classes asked."""

    kind, model, mode = "local", "stand-in", "completion"

    def __init__(self):
        self.asked: list[str] = []

    def complete(self, prompt, sampling, seed):
        name = prompt.text.rsplit("\n\n", 1)[1].split(":\n")[0]
        self.asked.append(name)
        lines = ["1. Numbered line", "May have a variety of parts", "A small pot with a spout",
                 f"Striped {name} trait", f"Tall {name} shape", f"Shiny {name} surface"]
        return Completion("\n- ".join(lines) + "\n", 10, 5, "stop")


def test_builtin_list_is_served_from_the_shipped_file(tmp_path):
    out = tmp_path / "d.json"
    result = CliRunner().invoke(main, ["describe", "--classes", "bdd", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == shipped_descriptions("cityscapes")
    assert "served 19 of 19 classes from prolab's shipped, reviewed descriptions" in result.output
    assert "0 calls" in result.output and "warning" not in result.output
    provenance = json.loads((tmp_path / "d.provenance.json").read_text())
    assert provenance["source"] == "shipped" and list(provenance["shipped"]["files"]) == ["cityscapes"]


def test_uncovered_names_go_to_the_local_model_only(tmp_path):
    classes = tmp_path / "mine.txt"
    classes.write_text("Car\nquux gadget\nzebra_crossing\nperson, individual, someone, somebody, mortal, soul\n")
    local = Local()
    result = run_describe(classes, tmp_path / "d.json", options=DescribeOptions(min=3), backend=local, progress=False)
    assert sorted(local.asked) == ["quux gadget", "zebra crossing"]
    covered = dict(find_descriptions(["car", "person"])[0])
    assert result.descriptions["Car"] == covered["car"].descriptions
    assert result.descriptions["quux gadget"] == ["Striped quux gadget trait", "Tall quux gadget shape",
                                                  "Shiny quux gadget surface"]
    assert any("do not cover 2 class(es), described by the local model: quux gadget, zebra_crossing" in n
               for n in result.notes)
    assert LOCAL_MODEL_WARNING in result.notes
    dropped = result.provenance["local_model"]["dropped"]
    assert dropped == {"boilerplate": 2, "copied from an example": 2, "number prefix": 2}


def test_lint_is_for_the_local_model_only():
    lines = ["1. Numbered line", "May include doors", "Sits on a stove or a kitchen counter", "Vertical structure"]
    strict = validate(lines, class_name="x", example_lines=["Sits on a stove or a kitchen counter"], lint=True)
    assert strict.kept == ["Vertical structure"]
    assert set(strict.dropped) == {"number prefix", "boilerplate", "copied from an example"}
    assert validate(lines, class_name="x").kept == lines  # an API model with the paper's prompt keeps its lines


def test_explicit_llm_bypasses_the_shipped_files(tmp_path):
    class Api(Local):
        kind, mode = "openai", "completion"

    api = Api()
    result = describe_classes(["car"], api, "prolab", min_descriptions=1, progress=False)
    assert api.asked == ["car"] and LOCAL_MODEL_WARNING not in result.notes
    assert "May have a variety of parts" in result.descriptions["car"]  # no lint for an API model
