"""`prolab zoo`: every command it prints parses, every row's preset carries the row's K/T/normalisation
and dataset, and the README's model-zoo section is the table zoo.py generates."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from prolab_cli.cli import main
from segmentation.engine.config import load_config
from segmentation.zoo import ROWS, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def _parse(command: str) -> tuple[str, click.Context]:
    """Parse a `prolab ...` command line with the real click command, without running it."""
    argv = shlex.split(command)
    assert argv[0] == "prolab"
    with click.Context(main) as ctx:
        cmd = main.get_command(ctx, argv[1])
    assert cmd is not None, argv[1]
    return argv[1], cmd.make_context(argv[1], argv[2:])


def test_the_seven_paper_rows():
    assert list(ROWS) == [
        "ade20k-vit-adapter-b-prolab", "coco-stuff-vit-adapter-b-prolab", "pascal-context-59-vit-adapter-b-prolab",
        "cityscapes-vit-adapter-b-prolab", "bdd100k-vit-adapter-b-prolab", "ade20k-beit-adapter-l-640-prolab",
        "ade20k-beitv2-adapter-l-896-prolab"]
    paper = {"ade20k-vit-adapter-b-prolab": 49.0, "coco-stuff-vit-adapter-b-prolab": 45.4,
             "pascal-context-59-vit-adapter-b-prolab": 58.2, "cityscapes-vit-adapter-b-prolab": 81.4,
             "bdd100k-vit-adapter-b-prolab": 65.7, "ade20k-beit-adapter-l-640-prolab": 58.2,
             "ade20k-beitv2-adapter-l-896-prolab": 58.7}
    assert {r.id: r.miou for r in ROWS.values()} == paper


@pytest.mark.parametrize("row_id", list(ROWS))
def test_every_command_of_a_row_parses_and_names_the_row(row_id):
    row = ROWS[row_id]
    parsed = [_parse(c) for c in row.commands()]
    names = [name for name, _ in parsed]
    assert names[:3] == ["convert", "eval", "import-bank"] and set(names[3:]) == {"train"}
    convert, evaluate, imported = (ctx.params for _, ctx in parsed[:3])
    assert convert["row"] == row.id and convert["bank"] == f"embeddings/{row.bank_file}"
    assert evaluate["checkpoint"] == convert["dst"] and evaluate["dataset"] is None  # nothing but the checkpoint
    assert imported["key"] == row.bank_key and imported["name"] == row.label_space
    for _, ctx in parsed[3:]:
        assert ctx.params["config_name"] == row.id and ctx.params["label_space"] == f"label_spaces/{row.label_space}"
        cfg = load_config(ctx.params["config_name"])
        assert cfg["dataset"] == row.dataset
    if row.init_from_iters:
        first, second = (ctx.params for _, ctx in parsed[3:])
        assert second["init_from"] == first["work_dir"]
        assert f"schedule.max_iters={row.init_from_iters}" in first["overrides"]


@pytest.mark.parametrize("row_id", list(ROWS))
def test_row_preset_resolves_to_the_row(row_id):
    row = ROWS[row_id]
    cfg = load_config(row.id)
    assert (cfg["dataset"], cfg["label_space"]["num_properties"], cfg["model"]["temperature"],
            cfg["model"]["normalize_embedding"]) == (row.dataset, row.num_properties, row.temperature,
                                                     row.normalize_embedding)


def test_zoo_command_prints_every_row_and_the_readme_holds_the_table():
    res = CliRunner().invoke(main, ["zoo"])
    assert res.exit_code == 0, res.output
    for row in ROWS.values():
        assert row.convert_command() in res.output and row.checkpoint in res.output
    res = CliRunner().invoke(main, ["zoo", "--markdown"])
    assert res.exit_code == 0 and res.output == markdown_table()
    assert markdown_table() in README.read_text(encoding="utf-8"), "regenerate: prolab zoo --markdown"
