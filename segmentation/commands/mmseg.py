"""``prolab mmseg train|test``: MMSegmentation 1.x configs through mmengine's Runner (needs the
``prolab[mmseg]`` extra; imported only when run)."""

from __future__ import annotations

import click

from prolab_cli.commands.options import SummaryGroup, quiet_option, threads_option
from prolab_cli.progress import is_quiet


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.group("mmseg", cls=SummaryGroup)
def mmseg() -> None:
    """Train and test MMSegmentation 1.x configs (the ProLab head and ViT-Adapter registered in
    mmseg; configs in segmentation/mmseg_plugin/configs/). Needs: pip install 'prolab[mmseg]'."""


def _cfg_options(given: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    """``--cfg-options`` pairs: MMSeg's tools take several after one flag (``--cfg-options a=1 b=2``),
    which click sees as extra arguments after the config; each must be KEY=VALUE."""
    for item in extra:
        if not given:
            raise click.UsageError(f"unexpected argument {item!r}")
        if "=" not in item:
            raise click.UsageError(f"--cfg-options: {item!r} is not KEY=VALUE")
    return [*given, *extra]


_CFG_OPTIONS = click.option("--cfg-options", multiple=True, metavar="KEY=VALUE [KEY=VALUE ...]",
                            help="override config keys, as MMSeg's tools: --cfg-options a=1 b=2 (or the flag repeated)")


@mmseg.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("extra", nargs=-1, metavar="")
@click.option("--work-dir", default=None, help="where logs and checkpoints go (default work_dirs/<config name>)")
@click.option("--resume", "resume", flag_value=True, default=False,
              help="continue from the last checkpoint in --work-dir (which it needs)")
@click.option("--resume-from", "resume_from", default=None, type=click.Path(dir_okay=False),
              help="continue from this checkpoint")
@_CFG_OPTIONS
@threads_option
@quiet_option
def train(config, extra, work_dir, resume, resume_from, cfg_options, threads):
    """Train with CONFIG (an MMSeg 1.x Python config)."""
    if resume and work_dir is None:
        raise click.UsageError("--resume continues the run in --work-dir: name it (--work-dir DIR), or give "
                               "--resume-from CHECKPOINT")
    options = _cfg_options(cfg_options, extra)
    _threads(threads)
    from segmentation.mmseg_plugin import runner

    runner.train(config, work_dir, resume_from or resume, options, quiet=is_quiet())


@mmseg.command("test")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("extra", nargs=-1, metavar="")
@click.option("--work-dir", default=None, help="where logs go (default work_dirs/<config name>)")
@_CFG_OPTIONS
@threads_option
@quiet_option
def test(config, checkpoint, extra, work_dir, cfg_options, threads):
    """Evaluate CHECKPOINT (written by MMSeg or by prolab) on CONFIG's test split with its
    evaluator (IoUMetric); prints the metrics."""
    options = _cfg_options(cfg_options, extra)
    _threads(threads)
    from segmentation.mmseg_plugin import runner

    metrics = runner.test(config, checkpoint, work_dir, options, quiet=is_quiet())
    click.echo("  ".join(f"{k} {v}" for k, v in metrics.items()))
