"""The ``prolab`` command line: a click group whose commands are imported only when run.

Each command lives next to the stage it drives and only parses options and calls that stage,
so ``prolab --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from . import __version__

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "classes": "prolab_cli.commands.describe:classes",
    "describe": "prolab_cli.commands.describe:describe",
    "embed": "prolab_cli.commands.label_space:embed",
    "cluster": "prolab_cli.commands.label_space:cluster",
    "build": "prolab_cli.commands.label_space:build",
    "pipeline": "prolab_cli.commands.label_space:pipeline",
    "inspect": "prolab_cli.commands.label_space:inspect",
    "import-bank": "prolab_cli.commands.label_space:import_bank",
    "export-bank": "prolab_cli.commands.label_space:export_bank",
    "extend": "prolab_cli.commands.extend:extend",
    "name-properties": "prolab_cli.commands.extend:name_properties",
    "ops": "segmentation.commands.ops:ops",
    "convert": "segmentation.commands.convert:convert",
    "data": "segmentation.commands.train:data",
    "train": "segmentation.commands.train:train",
    "eval": "segmentation.commands.train:evaluate",
    "predict": "segmentation.commands.train:predict",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    @staticmethod
    def _available(name: str) -> bool:
        module_name = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prolab")
def main() -> None:
    """prolab: property-level label spaces (describe -> embed -> cluster -> build) and the
    segmentation models that train on them (train / eval / predict)."""


if __name__ == "__main__":
    main()
