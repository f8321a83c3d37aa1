"""The ``prolab`` command line: a click group whose commands are imported only when run.

Each command lives next to the stage it drives and only parses options and calls that stage,
so ``prolab --help`` stays fast and never imports torch. The library below raises plain
:class:`~prolab_cli.errors.ProlabError`; this group is the one place that turns it into a click error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Callable, Iterator

import click

from . import __version__
from .commands.options import SummaryGroup, flags_for_fields
from .errors import ProlabError
from .extras import missing_extra
from .progress import set_quiet

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "classes": "prolab_cli.commands.describe:classes",
    "label-spaces": "prolab_cli.commands.describe:label_spaces",
    "describe": "prolab_cli.commands.describe:describe",
    "embed": "prolab_cli.commands.label_space:embed",
    "cluster": "prolab_cli.commands.label_space:cluster",
    "build": "prolab_cli.commands.label_space:build",
    "pipeline": "prolab_cli.commands.label_space:pipeline",
    "inspect": "prolab_cli.commands.label_space:inspect",
    "import-bank": "prolab_cli.commands.label_space:import_bank",
    "export-bank": "prolab_cli.commands.label_space:export_bank",
    "import-properties": "prolab_cli.commands.label_space:import_properties",
    "cache": "prolab_cli.commands.cache:cache",
    "extend": "prolab_cli.commands.extend:extend",
    "name-properties": "prolab_cli.commands.extend:name_properties",
    "ops": "segmentation.commands.ops:ops",
    "convert": "segmentation.commands.convert:convert",
    "zoo": "segmentation.commands.zoo:zoo",
    "models": "segmentation.commands.models:models",
    "data": "segmentation.commands.train:data",
    "train": "segmentation.commands.train:train",
    "eval": "segmentation.commands.train:evaluate",
    "predict": "segmentation.commands.train:predict",
    "mmseg": "segmentation.commands.mmseg:mmseg",
}


#: click >= 8.2 shows a bare group's help by raising this usage error (8.1 exits 0 instead)
_BARE_GROUP_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LazyGroup(SummaryGroup):
    """A click group that imports a command's module on first use.

    Errors that escape a command as Python exceptions but are the user's to fix become one-line
    errors here, for every command alike: a missing optional dependency (which ``prolab[EXTRA]``
    brings it) and an operating-system error on a named file (permission denied, disk full, ...).
    Every :class:`~prolab_cli.errors.ProlabError` is shown as click's one-line ``Error: ...``, exit 1,
    and so is a usage error (a missing or malformed option: click's own would print the usage block and
    exit 2), with a pointer to the command's ``--help`` on the same line. A bare group (``prolab data``)
    still prints its help.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        with user_errors(f"prolab {name}"):
            module = importlib.import_module(module_name)
        return getattr(module, attr)

    def invoke(self, ctx: click.Context):
        set_quiet(False)  # until a command's -q/--quiet says otherwise
        # the subcommand's name is known only once the group has resolved it
        try:
            with user_errors(lambda: " ".join(["prolab", *filter(None, [ctx.invoked_subcommand])])):
                return super().invoke(ctx)
        except ProlabError as exc:  # the one place a library error becomes click's "Error: ..." (exit 1)
            raise click.ClickException(flags_for_fields(exc.message)) from exc
        except _BARE_GROUP_HELP:
            raise
        except click.UsageError as exc:
            raise click.ClickException(one_line_usage_error(exc)) from exc

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _BARE_GROUP_HELP:
            raise
        except click.UsageError as exc:  # an unknown or malformed option of `prolab` itself
            raise click.ClickException(one_line_usage_error(exc)) from exc

    @staticmethod
    def _available(name: str) -> bool:
        module_name = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


def one_line_usage_error(exc: click.UsageError) -> str:
    """Click's usage error as one line: its message and where the command's help is."""
    message = " ".join(exc.format_message().split())
    if exc.ctx is None:
        return message
    return f"{message} (see '{exc.ctx.command_path} --help')"


@contextlib.contextmanager
def user_errors(what: str | Callable[[], str]) -> Iterator[None]:
    """Turn a missing optional module into :class:`~.errors.MissingDependencyError` and an ``OSError`` that
    names a file into a :class:`ProlabError` naming that file; anything else passes unchanged."""
    try:
        yield
    except ImportError as exc:
        error = missing_extra(exc, what() if callable(what) else what)
        if error is None:
            raise
        raise error from None
    except OSError as exc:
        if exc.filename is None:
            raise
        reason = exc.strerror or type(exc).__name__
        raise ProlabError(f"{exc.filename}: {reason}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prolab")
def main() -> None:
    """prolab: property-level label spaces (describe -> embed -> cluster -> build) and the
    segmentation models that train on them (train / eval / predict)."""


if __name__ == "__main__":
    main()
