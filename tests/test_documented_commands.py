"""Every ``prolab ...`` command written in README.md, docs/ and bench/README.md exists as written: the
command (and sub-command) is registered, and every option it uses is one the command takes under that
spelling (an old, deprecated spelling fails here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from prolab_cli.cli import COMMANDS, main
from prolab_cli.commands.options import AliasedOption

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: placeholders the docs use where a value goes; they never count as options
PLACEHOLDER = re.compile(r"^[A-Z_.]+$|^\[|\]$|^<|>$|^\.\.\.$|^\|$")


def documented_commands() -> list[tuple[str, int, str]]:
    """(file, line number, command) for each ``prolab`` command in a code block or inline code span."""
    found = []
    for path in DOCS:
        in_block = False
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                text = line.split(" #")[0].strip()
                # a command continued on the next line(s) with a trailing backslash
                follow = number
                while text.endswith("\\") and follow < len(lines):
                    text = text[:-1] + " " + lines[follow].split(" #")[0].strip()
                    follow += 1
                for part in re.split(r"\s*(?:&&|\|\||;|\|(?=\s))\s*", text):
                    part = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", part.strip())
                    if part.startswith("prolab "):
                        found.append((path.name, number, part))
            else:
                for span in re.findall(r"`(prolab [^`]+)`", line):
                    found.append((path.name, number, span))
    return found


def _command(words: list[str]) -> tuple[click.Command, list[str], str]:
    """The click command the words name, the words after it, and its path."""
    ctx = click.Context(main)
    command: click.Command = main
    path = "prolab"
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        # prose writes alternatives as `prolab describe|embed|cluster`: each must exist, the first is checked on
        for alternative in name.split("|"):
            if command.get_command(ctx, alternative) is None:
                raise AssertionError(f"{path} has no command {alternative!r}")
        command, path = command.get_command(ctx, name.split("|")[0]), f"{path} {name.split('|')[0]}"
    return command, rest, path


def _options(command: click.Command) -> tuple[set[str], set[str]]:
    """(current spellings, deprecated spellings) of ``command``'s options."""
    current, old = {"--help"}, set()
    for param in command.params:
        if isinstance(param, click.Option):
            current.update(param.opts + param.secondary_opts)
            if isinstance(param, AliasedOption):
                old.update(param.old_names)
    return current, old


DOCUMENTED = documented_commands()


def test_the_docs_hold_commands_of_every_stage():
    named = {_command(shlex.split(cmd)[1:])[2].split()[1] for _, _, cmd in DOCUMENTED
             if len(shlex.split(cmd)) > 1 and not shlex.split(cmd)[1].startswith(("-", "..."))}
    assert {"describe", "embed", "cluster", "build", "train", "eval", "predict", "label-spaces"} <= named
    assert len(DOCUMENTED) > 50


@pytest.mark.parametrize("where, number, text", DOCUMENTED, ids=[f"{f}:{n}" for f, n, _ in DOCUMENTED])
def test_documented_command_exists_as_written(where, number, text):
    try:
        words = shlex.split(text)[1:]
    except ValueError:  # an unclosed quote inside prose
        words = text.split()[1:]
    if not words or words[0].startswith("-") or words[0] == "...":
        return  # `prolab --help`, `prolab --version`, `prolab ...` (any command)
    command, rest, path = _command(words)
    current, old = _options(command)
    for word in rest:
        if not word.startswith("-") or word == "-" or PLACEHOLDER.match(word):
            continue
        flag = word.split("=", 1)[0]
        assert flag not in old, f"{where}:{number}: {path} {flag} is a deprecated spelling"
        assert flag in current, f"{where}:{number}: {path} has no option {flag} (has {sorted(current)})"


def test_every_registered_command_is_importable():
    for name in COMMANDS:
        assert main.get_command(click.Context(main), name) is not None, name
