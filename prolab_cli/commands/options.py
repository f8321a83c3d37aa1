"""The flag language of every ``prolab`` command, defined once.

- ``-o/--output FILE``: the one file a command writes.
- ``--out-dir DIR``: the folder a command writes into.
- ``-q/--quiet``: no progress output.
- ``--classes LIST``: a class list (built-in name, alias or file).
- ``--model NAME``: an embedding model; ``--preset NAME``: a segmentation model preset.
- ``--mode slide|whole``: how a segmentation model is run over an image.

An older spelling keeps working for one release: :class:`AliasedOption` accepts it, leaves it out of
``--help`` and warns on stderr when it is used.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

import click
from click.core import ParameterSource

from ..progress import set_quiet

#: the help text of every ``--classes`` option that takes a class list
CLASS_LIST = "class list: built-in name, alias (`prolab classes`) or file (text, one per line, or JSON list)"
EMBEDDING_MODELS = "minilm (offline default), bge-small|bge-base|bge-large, a Hub id, or a local model directory"


class AliasedOption(click.Option):
    """A click option that also accepts older spellings (``old_names``), hidden from ``--help``.

    Using an old spelling prints one ``Warning:`` line on stderr naming the new one; giving both is a
    usage error. The old spellings go in the release after next.
    """

    def __init__(self, *args: Any, old_names: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.old_names = tuple(old_names)

    @property
    def _old_dest(self) -> str:
        return f"_deprecated_{self.name}"

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        if not self.old_names:
            return
        # register the old spellings as the same kind of option under another destination
        saved = self.opts, self.secondary_opts, self.name
        self.opts, self.secondary_opts, self.name = list(self.old_names), [], self._old_dest
        try:
            super().add_to_parser(parser, ctx)
        finally:
            self.opts, self.secondary_opts, self.name = saved

    def consume_value(self, ctx: click.Context, opts: Mapping[str, Any]) -> tuple[Any, Any]:
        if self.old_names and self._old_dest in opts:
            new = max(self.opts, key=len)
            old = "/".join(self.old_names)
            if self.name in opts:
                raise click.UsageError(f"{new} and its old spelling {old} both given: give {new} only", ctx)
            click.echo(f"Warning: {old} is deprecated in {ctx.command_path}; use {new} "
                       "(the old spelling goes in the next release)", err=True)
            opts = {**opts, self.name: opts[self._old_dest]}
        return super().consume_value(ctx, opts)


def option(*names: str, old_names: tuple[str, ...] = (), **kwargs: Any) -> Callable:
    """``click.option`` with :class:`AliasedOption`: ``old_names`` lists old spellings that still work."""
    return click.option(*names, cls=AliasedOption, old_names=old_names, **kwargs)


#: the leaf command being run (set while its command line is parsed), for :func:`flags_for_fields`
_running_command: click.Command | None = None


def flags_for_fields(message: str) -> str:
    """A library message in the running command's words. The library names a setting by its field:
    ``STAGE.FIELD`` (``cluster.n_init``, as a pipeline YAML spells it) or a bare field with an
    underscore (``trust_pickle``); where the running command has an option of that name or the flag
    ``--FIELD`` (underscores as dashes), its flag is shown instead. A config key (``schedule.max_iters``, ``key=value``) stays."""
    command = _running_command
    if command is None:
        return message
    flags: dict[str, str] = {}  # field or flag -> the flag shown
    for param in command.params:
        if isinstance(param, click.Option):
            shown = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            flags.update({o: shown for o in param.opts if o.startswith("--")})
            flags.setdefault(f"--{(param.name or '').replace('_', '-')}", shown)
    stages = {(command.name or "").replace("-", "_"), "describe", "embed", "cluster", "build"}

    def spell(match: re.Match) -> str:
        stage, field = match.group(1), match.group(2)
        flag = flags.get("--" + field.replace("_", "-"))
        if flag is None or (stage is None and "_" not in field) or (stage is not None and stage not in stages):
            return match.group(0)
        return flag

    return re.sub(r"(?<![\w.-])(?:([a-z][a-z_]*)\.)?([a-z][a-z0-9_]*)\b(?![=.\w-])", spell, message)


def quiet_option(func: Callable) -> Callable:
    """The ``-q/--quiet`` option of a command (``--no-progress`` is the deprecated spelling); it calls
    :func:`set_quiet` while the command line is parsed and passes nothing to the command."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        global _running_command
        set_quiet(value)
        _running_command = ctx.command
        return value

    return option("-q", "--quiet", "quiet", old_names=("--no-progress",), is_flag=True, expose_value=False,
                  callback=callback, help="No progress output.")(func)



def options_from_flags(cls: type, params: dict[str, str] | None = None, **given: Any) -> Any:
    """Stage options ``cls`` (a dataclass of :mod:`prolab_cli.stage_options`) from the running
    command's flags: a flag the user gave sets its field, a flag left out leaves the field's
    default, so the defaults stay those of ``cls`` whatever the flag's ``default=`` shows in
    ``--help``. ``params`` maps a field to its click parameter name where they differ; ``given``
    sets fields the command computed itself."""
    ctx = click.get_current_context()
    params = params or {}
    values = {}
    for f in dataclasses.fields(cls):
        name = params.get(f.name, f.name)
        if f.name in given or name not in ctx.params:
            continue
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
            values[f.name] = ctx.params[name]
    return cls(**values, **given)


def _default(default: Any) -> dict[str, Any]:
    # an explicit default=None would satisfy required=True in click 8.5
    return {} if default is None else {"default": default}


def output_option(help: str, *, required: bool = False, default: str | None = None,
                  dir_okay: bool = False, name: str = "output") -> Callable:
    """``-o/--output FILE``: the file a command writes (``dir_okay`` where a folder picks a default name)."""
    return option("-o", "--output", name, required=required, help=help, type=click.Path(dir_okay=dir_okay),
                  metavar="FILE", **_default(default))


def out_dir_option(help: str, *, required: bool = False, default: str | None = None,
                   old_names: tuple[str, ...] = (), name: str = "out_dir") -> Callable:
    """``--out-dir DIR``: the folder a command writes into (``old_names``: its old spellings)."""
    return option("--out-dir", name, required=required, show_default=default is not None, help=help,
                  old_names=old_names, type=click.Path(file_okay=False), metavar="DIR", **_default(default))


def classes_option(help: str = CLASS_LIST, *, required: bool = False, name: str = "classes") -> Callable:
    """``--classes LIST``: a class list (built-in name, alias or file) wherever it is taken."""
    return option("--classes", name, required=required, help=help, metavar="LIST")


def embedding_options(func: Callable) -> Callable:
    """The embed stage's flags, for every command that embeds descriptions (embed, import-properties):
    ``--model NAME`` (the embedding model), ``--backend``, ``--pooling``, ``--lowercase``,
    ``--batch-size``, ``--download``."""
    for decorate in reversed((
        option("--model", default="minilm", show_default=True, help=EMBEDDING_MODELS),
        click.option("--backend", type=click.Choice(["sentence-transformers", "flag"]),
                     default="sentence-transformers", show_default=True,
                     help="sentence-transformers, or flag (FlagEmbedding, BAAI's own BGE code)"),
        click.option("--pooling", type=click.Choice(["mean", "cls"]), default=None,
                     help="default: mean for bge-* (as the paper), else the model's own"),
        click.option("--lowercase/--no-lowercase", default=None, help="default: on for bge-* (as the paper), else off"),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="texts per model call"),
        click.option("--download", is_flag=True, help="allow fetching a missing model from the Hugging Face Hub"),
    )):
        func = decorate(func)
    return func


def inference_mode_option(func: Callable) -> Callable:
    """``--mode slide|whole``: sliding-window or whole-image inference of a segmentation model."""
    return option("--mode", type=click.Choice(["slide", "whole"]), default=None,
                  help="slide (sliding window) or whole-image inference  [default: the config's test.mode]")(func)


def threads_option(func: Callable) -> Callable:
    """``--threads N``: torch CPU threads."""
    return option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads")(func)


def device_option(func: Callable) -> Callable:
    """``--device auto|cpu|cuda[:N]``."""
    return option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")(func)


class SummaryGroup(click.Group):
    """A click group whose ``--help`` lists each command's summary in full (click cuts it at the
    terminal width with '...'): the first sentence of its docstring, or its ``short_help``."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
