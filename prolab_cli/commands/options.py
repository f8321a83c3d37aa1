"""Options that several commands share, defined once."""

from __future__ import annotations

from typing import Callable

import click

from ..progress import set_quiet


def quiet_option(func: Callable) -> Callable:
    """The ``-q/--quiet`` option of a command (``--no-progress`` is the older spelling); it calls
    :func:`set_quiet` while the command line is parsed and passes nothing to the command."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        set_quiet(value)
        return value

    return click.option("-q", "--quiet", "--no-progress", "quiet", is_flag=True, expose_value=False,
                        callback=callback, help="No progress output.")(func)
