"""``prolab convert``: released mmseg 0.x ViT-Adapter / ProLab weights -> a prolab checkpoint."""

from __future__ import annotations

import click

from prolab_cli.commands.options import classes_option, quiet_option


def _known_row(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check --row against `prolab zoo` before any file is read."""
    if value is not None:
        from segmentation.zoo import get_row

        get_row(value)
    return value


@click.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--row", default=None, callback=_known_row,
              help="Paper row (`prolab zoo`), e.g. ade20k-vit-adapter-b-prolab (default: inferred from the keys, "
                   "the label space and the checkpoint's meta; an error when several fit).")
@click.option("--bank", default=None, type=click.Path(dir_okay=False),
              help="ProLab bank .pth (centres + multi-hot): makes a property-head model (ProLab checkpoints).")
@click.option("--bank-key", default=None, help="Bank entry (default: the row's, or the only one that fits).")
@click.option("--preset", default=None, help="Model preset (default: inferred from the keys and shapes).")
@click.option("--label-space", "label_space", default=None, type=click.Path(),
              help="Label-space artifact: makes a property-head model (ProLab checkpoints).")
@classes_option("class list (built-in name, alias or file): for one-hot checkpoints without meta.CLASSES, or a "
                "bank's classes")
@click.option("--temperature", default=None, type=float,
              help="Property-head sigmoid temperature (default: the row's; required outside the paper rows).")
@click.option("--normalize-embedding/--no-normalize-embedding", default=None,
              help="L2-normalise the pixel embedding (default: the row's).")
@click.option("--allow-missing", is_flag=True, help="Write the model even when checkpoint keys are missing.")
@click.option("--trust-pickle", is_flag=True,
              help="Unpickle arbitrary objects in SRC (runs code from the file: trusted sources only).")
@quiet_option
def convert(src: str, dst: str, row: str | None, bank: str | None, bank_key: str | None, preset: str | None,
            label_space: str | None, classes: str | None, temperature: float | None,
            normalize_embedding: bool | None, allow_missing: bool, trust_pickle: bool) -> None:
    """Convert an mmseg 0.x or 1.x checkpoint SRC (.pth) into a prolab checkpoint DST that `prolab eval`
    evaluates as the released test config (paper rows) with no other option."""
    from segmentation.engine.convert import convert_checkpoint

    names = None
    if classes is not None:
        from prolab_cli.classes import load_classes

        names = load_classes(classes)
    report = convert_checkpoint(src, dst, preset=preset, label_space=label_space, classes=names,
                                temperature=temperature, normalize_embedding=normalize_embedding,
                                allow_missing=allow_missing, trust_pickle=trust_pickle, row=row, bank=bank,
                                bank_key=bank_key)
    for line in report.lines():
        click.echo(line)
