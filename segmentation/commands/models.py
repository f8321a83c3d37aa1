"""``prolab models``: the registered segmentation models, their sizes and the checkpoints they load."""

from __future__ import annotations

import json

import click

from prolab_cli.commands.options import quiet_option


@click.command()
@click.option("--num-classes", "num_classes", type=click.IntRange(min=1), default=150, show_default=True,
              help="classes of the one-hot head the parameters are counted with")
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON")
@quiet_option
def models(num_classes: int, as_json: bool) -> None:
    """The registered models (`--preset` / a config's `model.preset`): backbone, parameter count (counted on
    the meta device, no memory allocated), the checkpoint layouts each loads and the paper rows that use it."""
    from segmentation import zoo
    from segmentation.engine.config import load_config
    from segmentation.models.registry import CHECKPOINT_LAYOUTS, MODELS, parameter_count

    rows: dict[str, list[str]] = {}
    for row_id in zoo.ROWS:
        rows.setdefault(load_config(row_id)["model"]["preset"], []).append(row_id)
    table = [{"name": name, "backbone": cfg.backbone, "depth": cfg.depth, "width": cfg.embed_dim,
              "parameters": parameter_count(name, num_classes), "loads": list(CHECKPOINT_LAYOUTS[name]),
              "paper_rows": rows.get(name, [])} for name, cfg in MODELS.items()]
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    click.echo(f"{'model':<18} {'backbone':<8} {'depth x width':<14} {f'params ({num_classes} cl.)':>17}  "
               f"{'loads':<27} paper rows")
    for m in table:
        click.echo(f"{m['name']:<18} {m['backbone']:<8} {str(m['depth']) + ' x ' + str(m['width']):<14} "
                   f"{m['parameters'] / 1e6:>16.1f}M  {', '.join(m['loads']):<27} {len(m['paper_rows'])}")
