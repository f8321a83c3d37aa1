"""Drive mmengine's Runner on an MMSeg 1.x config (what MMSeg's tools/train.py and tools/test.py
do, which the mmsegmentation wheel does not install as commands)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from prolab_cli.errors import ProlabError, exception_line

HOOK = "LabelSpaceCheckHook"


def parse_cfg_options(options: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs as MMSeg's ``--cfg-options`` reads them (lists, tuples, numbers)."""
    from mmengine.config import DictAction

    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ProlabError(f"cfg_options {item!r}: expected KEY=VALUE")
        out[key] = DictAction._parse_iterable(value)
    return out


def load_mmseg_config(config: str | os.PathLike, work_dir: str | None = None,
                cfg_options: Sequence[str] = (), quiet: bool = False) -> Any:
    """The mmengine Config of ``config`` with the options applied, a work dir (default
    ``work_dirs/<config name>``) and the label-space check hook present; ``quiet`` logs warnings
    only (no config dump, no progress lines)."""
    from mmengine.config import Config

    path = Path(config)
    if not path.is_file():
        raise ProlabError(f"{path}: config file not found")
    if quiet:  # mmengine logs while it reads the config, before the Runner's log_level applies
        import logging

        from mmengine.logging import MMLogger

        for handler_owner in (MMLogger.get_current_instance(),):
            handler_owner.setLevel(logging.WARNING)
            for handler in handler_owner.handlers:
                handler.setLevel(logging.WARNING)
    try:
        cfg = Config.fromfile(str(path))
    except ProlabError:
        raise
    except Exception as exc:
        raise ProlabError(f"{path}: cannot load the config ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if cfg_options:
        cfg.merge_from_dict(parse_cfg_options(cfg_options))
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / path.stem)
    if quiet:
        cfg.log_level = "WARNING"
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(isinstance(h, dict) and h.get("type") == HOOK for h in hooks):
        cfg.custom_hooks = hooks + [dict(type=HOOK)]
    return cfg


def build_runner(cfg: Any) -> Any:
    """mmengine's Runner (the config's own ``runner_type`` if it names one)."""
    import segmentation.mmseg_plugin  # noqa: F401  (registries, mmcv stand-in, torch.load allow-list)
    from mmengine.runner import Runner
    from mmseg.registry import RUNNERS

    if "runner_type" in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def train(config: str | os.PathLike, work_dir: str | None = None, resume: bool | str = False,
          cfg_options: Sequence[str] = (), quiet: bool = False) -> Any:
    """Train with the config; ``resume=True`` continues from the work dir's last checkpoint (refused
    when there is none, rather than starting again from scratch), a path resumes from that file.
    Returns the Runner."""
    import segmentation.mmseg_plugin  # noqa: F401

    cfg = load_mmseg_config(config, work_dir, cfg_options, quiet)
    if resume is True and not (Path(cfg.work_dir) / "last_checkpoint").is_file():
        raise ProlabError(f"{cfg.work_dir}: no checkpoint to resume from (no last_checkpoint file); "
                          "leave out train.resume to start a new run")
    if resume:
        cfg.resume = True
        if isinstance(resume, str):
            cfg.load_from = resume
    runner = build_runner(cfg)
    with refused_checkpoints(cfg.get("load_from") or cfg.work_dir):
        runner.train()
    return runner


def test(config: str | os.PathLike, checkpoint: str | os.PathLike, work_dir: str | None = None,
         cfg_options: Sequence[str] = (), quiet: bool = False) -> dict:
    """Evaluate ``checkpoint`` (an mmseg 1.x or prolab checkpoint) with the config's test split
    and evaluator; returns the metrics."""
    import segmentation.mmseg_plugin  # noqa: F401

    if not Path(checkpoint).is_file():
        raise ProlabError(f"{checkpoint}: checkpoint file not found")
    cfg = load_mmseg_config(config, work_dir, cfg_options, quiet)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    with refused_checkpoints(checkpoint):
        return build_runner(cfg).test()


@contextmanager
def refused_checkpoints(checkpoint: str | os.PathLike) -> Iterator[None]:
    """A checkpoint torch refuses to unpickle (an object outside the allow-list) as one line naming it,
    instead of mmengine's traceback."""
    import pickle

    try:
        yield
    except (pickle.UnpicklingError, RuntimeError) as exc:
        if "Unsupported global" not in str(exc) and "Weights only load failed" not in str(exc):
            raise
        raise ProlabError(f"{checkpoint}: not loadable without running pickled code ({exception_line(exc)})") from None
