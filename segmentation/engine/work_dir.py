"""What a training run does with its work dir, decided in one place.

A work dir that holds an earlier run's checkpoints is continued (``resume``), or replaced
(``overwrite``: the earlier run is set aside in ``<work_dir>/.overwritten``, deleted once the new run
has finished and put back if the new run fails before writing a checkpoint of its own), and is
otherwise refused: a run never mixes its checkpoints with another's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from prolab_cli.errors import ProlabError

#: what a run writes into its work dir besides the checkpoints (see :func:`run_files`)
RUN_LOGS = ("last_checkpoint", "log.jsonl", "config.json", "train_result.json", "tensorboard")
ASIDE = ".overwritten"


def run_files(work_dir: Path) -> list[Path]:
    """The checkpoints of an earlier run in ``work_dir`` (``iter_<N>.pth``, ``last_checkpoint``)."""
    if not work_dir.is_dir():
        return []
    found = sorted(work_dir.glob("iter_*.pth"), key=lambda p: (len(p.name), p.name))
    if (work_dir / "last_checkpoint").is_file():
        found.append(work_dir / "last_checkpoint")
    return found


@contextlib.contextmanager
def work_dir_policy(work_dir: str | os.PathLike, *, resume: bool, overwrite: bool, rank_zero: bool = True) -> Iterator[None]:
    """Check ``work_dir`` against ``resume``/``overwrite`` before a run, set an earlier run aside for
    ``overwrite`` (rank zero only), and after the run delete it or, when the run failed before its
    first checkpoint, put it back."""
    work_dir = Path(work_dir)
    if resume and overwrite:
        raise ProlabError("train.resume continues the run in the work dir, train.overwrite deletes it: give one of them")
    held = run_files(work_dir)
    if not resume and held and not overwrite:
        raise ProlabError(f"{work_dir}: holds checkpoints of an earlier run ({', '.join(p.name for p in held[:3])}); "
                          "continue it with train.resume or start afresh with train.overwrite")
    aside = _set_aside(work_dir, held) if held and not resume and rank_zero else None
    try:
        yield
    except BaseException:
        if aside is not None:
            _after_failure(work_dir, aside)
        raise
    if aside is not None:
        shutil.rmtree(aside)


def _set_aside(work_dir: Path, checkpoints: list[Path]) -> Path:
    aside = work_dir / ASIDE
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for path in checkpoints + [work_dir / name for name in RUN_LOGS if (work_dir / name).exists()]:
        if path.exists():
            os.replace(path, aside / path.name)
    return aside


def _after_failure(work_dir: Path, aside: Path) -> None:
    if run_files(work_dir):
        print(f"the earlier run's checkpoints are kept in {aside}", file=sys.stderr)
        return
    for path in aside.iterdir():
        target = work_dir / path.name
        if target.is_dir():
            shutil.rmtree(target)  # the failed run's own tensorboard folder
        os.replace(path, target)
    aside.rmdir()
