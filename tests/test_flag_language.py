"""One flag language across commands: -o FILE, --out-dir DIR, -q everywhere, one meaning each for
--classes/--model/--mode, and old spellings that still work for one release with a warning."""

from __future__ import annotations

import click
import numpy as np
from click.testing import CliRunner

from prolab_cli.cli import COMMANDS, main
from prolab_cli.embed import EmbeddingSet


def _leaves() -> dict[str, click.Command]:
    ctx = click.Context(main)
    found = {}
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            found.update({f"{name} {sub}": command.get_command(ctx, sub) for sub in command.list_commands(ctx)})
        else:
            found[name] = command
    return found


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def test_each_flag_means_one_thing_everywhere():
    for path, command in _leaves().items():
        opts = {o: p for p in _options(command) for o in p.opts + p.secondary_opts}
        assert "-q" in opts and "--quiet" in opts, f"prolab {path} has no -q/--quiet"
        if "-o" in opts:
            assert opts["-o"].opts == ["-o", "--output"] and not opts["-o"].type.dir_okay, path
        if "--out-dir" in opts:
            assert not opts["--out-dir"].type.file_okay, path
        if "--classes" in opts:
            assert isinstance(opts["--classes"].type, click.types.StringParamType), path  # a list, never a count
        if "--mode" in opts:
            assert list(opts["--mode"].type.choices) == ["slide", "whole"], path
        if "--model" in opts:
            assert path in ("embed", "import-properties"), f"--model is an embedding model, not in {path}"
        for spelling in ("--out", "--no-progress"):
            assert spelling not in opts, f"prolab {path} still lists {spelling}"


def test_old_spellings_work_with_one_warning_and_stay_out_of_help(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth", "--out", str(tmp_path / "d"), "--train", "1", "--val", "1",
                               "--size", "32", "--classes", "3", "--heldout", "1"])
    assert res.exit_code == 0, res.output
    warnings = res.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("Warning: ") for w in warnings), res.stderr
    assert "--out is deprecated" in warnings[0] and "use --out-dir" in warnings[0]
    assert "--classes is deprecated" in warnings[1] and "use --seen" in warnings[1]
    assert "(3 seen + 1 held-out classes" in res.stdout

    descriptions = {f"c{i}": [f"text {i}"] for i in range(3)}
    vectors = np.eye(3, 4, dtype=np.float32)
    EmbeddingSet(descriptions, vectors, vectors.copy(), {"model": "synthetic"}).save(tmp_path / "e.safetensors")
    assert runner.invoke(main, ["cluster", str(tmp_path / "e.safetensors"), "-k", "2", "-q",
                                "-o", str(tmp_path / "c.safetensors")]).exit_code == 0
    build = ["build", "--embeddings", str(tmp_path / "e.safetensors"), "--clusters", str(tmp_path / "c.safetensors"),
             "--name", "tiny", "--allow-collisions"]
    res = runner.invoke(main, [*build, "-o", str(tmp_path / "spaces"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "spaces" / "tiny" / "manifest.json").is_file()
    assert "-o is deprecated" in res.stderr and "--no-progress is deprecated" in res.stderr

    res = runner.invoke(main, [*build, "-o", str(tmp_path / "a"), "--out-dir", str(tmp_path / "b")])
    assert res.exit_code == 1 and res.stderr.startswith("Error: --out-dir and its old spelling -o both given")
    assert len(res.stderr.strip().splitlines()) == 1

    help_text = runner.invoke(main, ["build", "--help"]).stdout
    assert "--out-dir" in help_text and "-o," not in help_text and "--no-progress" not in help_text
    assert "--model" not in runner.invoke(main, ["train", "--help"]).stdout


def test_usage_errors_are_one_line_with_status_1():
    res = CliRunner().invoke(main, ["cluster"])
    assert res.exit_code == 1
    assert res.stderr.strip() == "Error: Missing argument 'EMBEDDINGS'. (see 'main cluster --help')"


def test_every_option_of_every_command_has_help_text():
    import click

    from prolab_cli.cli import COMMANDS, main

    ctx = click.Context(main)
    missing = []

    def walk(command, path):
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{path} {name}")
            return
        missing.extend(f"{path} {p.opts[0]}" for p in command.params
                       if isinstance(p, click.Option) and not p.hidden and not p.help)

    for name in COMMANDS:
        walk(main.get_command(ctx, name), f"prolab {name}")
    assert missing == []


def test_library_messages_name_fields_and_the_cli_shows_its_flags(tmp_path):
    """A library error names the setting as a pipeline YAML or a Python caller spells it; the same
    error through `prolab` names the running command's flag instead."""
    import pytest

    from prolab_cli.commands import options
    from prolab_cli.errors import ProlabError
    from prolab_cli.extend import parse_keep

    with pytest.raises(ProlabError, match=r"^extend\.keep ',': no classes given$"):
        parse_keep(",")
    res = CliRunner().invoke(main, ["extend", "cityscapes", "--keep", ",", "--out-dir", str(tmp_path)])
    assert res.exit_code == 1 and res.stderr.strip() == "Error: --keep ',': no classes given", res.stderr

    command = click.Command("cluster", params=[click.Option(["--n-init"]), click.Option(["--trust-pickle"], is_flag=True),
                                                 click.Option(["--prompt-mode", "mode"])])
    options._running_command = command
    try:
        spell = options.flags_for_fields
        assert spell("cluster.n_init must be 'auto'") == "--n-init must be 'auto'"
        assert spell("retry with trust_pickle") == "retry with --trust-pickle"
        assert spell("describe.mode chat needs a template") == "--prompt-mode chat needs a template"  # by field name
        for unchanged in ("override schedule.max_iters=N", "train.n_init", "see names.json", "n_init=3", "mode"):
            assert spell(unchanged) == unchanged
    finally:
        options._running_command = None


def test_data_subset_space_is_extend_keep_under_its_old_name(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("road\ncar\n")
    old = CliRunner().invoke(main, ["data", "subset-space", "cityscapes", "--classes", str(keep), "--name", "two",
                                    "--out-dir", str(tmp_path / "old")])
    new = CliRunner().invoke(main, ["extend", "cityscapes", "--keep", str(keep), "--name", "two",
                                    "--out-dir", str(tmp_path / "new")])
    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert "subset-space is deprecated; use prolab extend ARTIFACT --keep" in old.stderr and not new.stderr.strip()
    for name in ("properties.json", "tensors.safetensors"):
        assert (tmp_path / "old/two" / name).read_bytes() == (tmp_path / "new/two" / name).read_bytes()
    assert "subset-space" not in CliRunner().invoke(main, ["data", "--help"]).stdout
