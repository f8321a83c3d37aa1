"""Options that several commands share, defined once."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click
from click.core import ParameterSource

from ..progress import set_quiet


def quiet_option(func: Callable) -> Callable:
    """The ``-q/--quiet`` option of a command (``--no-progress`` is the older spelling); it calls
    :func:`set_quiet` while the command line is parsed and passes nothing to the command."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        set_quiet(value)
        return value

    return click.option("-q", "--quiet", "--no-progress", "quiet", is_flag=True, expose_value=False,
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
