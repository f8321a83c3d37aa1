"""``prolab mmseg train|test``: MMSegmentation 1.x configs through mmengine's Runner (needs the
``prolab[mmseg]`` extra; imported only when run)."""

from __future__ import annotations

import click

from prolab_cli.commands.options import SummaryGroup, quiet_option, threads_option


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.group("mmseg", cls=SummaryGroup)
def mmseg() -> None:
    """Train and test MMSegmentation 1.x configs (the ProLab head and ViT-Adapter registered in
    mmseg; configs in segmentation/mmseg_plugin/configs/). Needs: pip install 'prolab[mmseg]'."""


@mmseg.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--work-dir", default=None, help="where logs and checkpoints go (default work_dirs/<config name>)")
@click.option("--resume", "resume", flag_value=True, default=False,
              help="continue from the work dir's last checkpoint")
@click.option("--resume-from", "resume_from", default=None, type=click.Path(dir_okay=False),
              help="continue from this checkpoint")
@click.option("--cfg-options", multiple=True, metavar="KEY=VALUE",
              help="override a config key (repeatable), as MMSeg's tools/train.py --cfg-options")
@threads_option
@quiet_option
def train(config, work_dir, resume, resume_from, cfg_options, threads):
    """Train with CONFIG (an MMSeg 1.x Python config)."""
    _threads(threads)
    from segmentation.mmseg_plugin import runner

    runner.train(config, work_dir, resume_from or resume, cfg_options)


@mmseg.command("test")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--work-dir", default=None, help="where logs go (default work_dirs/<config name>)")
@click.option("--cfg-options", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@threads_option
@quiet_option
def test(config, checkpoint, work_dir, cfg_options, threads):
    """Evaluate CHECKPOINT (written by MMSeg or by prolab) on CONFIG's test split with its
    evaluator (IoUMetric); prints the metrics."""
    _threads(threads)
    from segmentation.mmseg_plugin import runner

    metrics = runner.test(config, checkpoint, work_dir, cfg_options)
    click.echo("  ".join(f"{k} {v}" for k, v in metrics.items()))
