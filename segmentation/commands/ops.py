"""``prolab ops``: build the deformable-attention kernels and report which implementation runs."""

from __future__ import annotations

import click

from prolab_cli.commands.options import SummaryGroup, quiet_option


@click.group(cls=SummaryGroup)
def ops() -> None:
    """Compiled kernels (multi-scale deformable attention)."""


@ops.command("build")
@click.option("--variant", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="cpu: C++ kernels only; cuda: C++ and CUDA kernels (needs CUDA torch and toolkit).")
@click.option("--verbose", is_flag=True, help="Show the compiler output.")
@quiet_option
def build(variant: str, verbose: bool) -> None:
    """Compile the kernels now instead of on first use."""
    from segmentation.ops.report import build_kernels

    _, summary = build_kernels(variant, verbose=verbose)
    click.echo(summary)


@ops.command("status")
@click.option("--check", is_flag=True, help="Also build if needed and compare with the reference on a small case.")
@quiet_option
def status(check: bool) -> None:
    """Which implementation runs on CPU and on CUDA tensors, and why."""
    from segmentation.ops.report import status_lines

    for line in status_lines(check=check):
        click.echo(line)
