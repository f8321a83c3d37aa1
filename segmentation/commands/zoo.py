"""``prolab zoo``: the paper's rows, their released files and the commands that reproduce them."""

from __future__ import annotations

import json

import click

from prolab_cli.commands.options import quiet_option


@click.command()
@click.option("--markdown", is_flag=True, help="print the README's Markdown table instead")
@click.option("--json", "as_json", is_flag=True, help="print the rows and commands as JSON")
@quiet_option
def zoo(markdown: bool, as_json: bool) -> None:
    """The seven released ProLab models: preset, checkpoint, bank, K/T, paper mIoU and commands."""
    from segmentation import zoo as rows

    if as_json:
        out = [{"id": r.id, "title": r.title, "dataset": r.dataset, "miou": r.miou, "K": r.num_properties,
                "T": r.temperature, "normalize_embedding": r.normalize_embedding, "checkpoint": r.checkpoint,
                "checkpoint_url": r.checkpoint_url, "config": r.config_url, "bank_file": r.bank_file,
                "bank_key": r.bank_key, "commands": r.commands(), "note": r.note} for r in rows.ROWS.values()]
        click.echo(json.dumps(out, indent=2))
    elif markdown:
        click.echo(rows.markdown_table(), nl=False)
    else:
        click.echo(rows.format_table(), nl=False)
