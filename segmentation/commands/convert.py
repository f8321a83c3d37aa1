"""``prolab convert``: released mmseg 0.x ViT-Adapter / ProLab weights -> a prolab checkpoint."""

from __future__ import annotations

import click

from prolab_cli.progress import quiet_option


@click.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--preset", default=None, help="Model preset (default: inferred from the keys and shapes).")
@click.option("--label-space", "label_space", default=None, type=click.Path(),
              help="Label-space artifact: makes a property-head model (ProLab checkpoints).")
@click.option("--classes", "classes", default=None,
              help="Class list (built-in name or file) for one-hot checkpoints without meta.CLASSES.")
@click.option("--temperature", default=0.04, show_default=True, type=float, help="Property-head sigmoid temperature.")
@click.option("--normalize-embedding", is_flag=True, help="L2-normalise the pixel embedding (BEiT-L / COCO-Stuff ProLab).")
@click.option("--allow-missing", is_flag=True, help="Write the model even when checkpoint keys are missing.")
@click.option("--trust-pickle", is_flag=True,
              help="Unpickle arbitrary objects in SRC (runs code from the file: trusted sources only).")
@quiet_option
def convert(src: str, dst: str, preset: str | None, label_space: str | None, classes: str | None,
            temperature: float, normalize_embedding: bool, allow_missing: bool, trust_pickle: bool) -> None:
    """Convert an mmseg 0.x checkpoint SRC (.pth) into a prolab checkpoint DST."""
    from segmentation.models.convert import convert_checkpoint

    names = None
    if classes is not None:
        from prolab_cli.classes import load_classes

        names = load_classes(classes)
    report = convert_checkpoint(src, dst, preset, label_space, names, temperature,
                                normalize_embedding, allow_missing, trust_pickle)
    for line in report.lines():
        click.echo(line)
