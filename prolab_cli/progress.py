"""Progress of long steps: a tqdm bar on a terminal, periodic plain lines in logs, nothing when quiet.

Every step that can take more than a few seconds reports through :func:`progress_bar` (or
:func:`track`). When stderr is a terminal the user sees a redrawn tqdm bar; otherwise (CI, a
redirected log) a plain line is written at each quarter of the work and at least every
:data:`LOG_EVERY_SECONDS`, never a carriage return. ``-q/--quiet`` (:func:`set_quiet`) turns
progress off for the whole process.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

#: a plain progress line is written at least this often while work goes on
LOG_EVERY_SECONDS = 10.0
#: ... and each time this fraction of the total is passed
LOG_EVERY_FRACTION = 0.25

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn progress reporting off (``True``) or back on for every later step of this process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether ``-q/--quiet`` turned progress off."""
    return _quiet


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainProgress:
    """Progress as whole lines (``desc: 30/120 img (25%), 12s elapsed, ~36s left``) for logs."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO, initial: int = 0,
                 clock: Callable[[], float] = time.monotonic, every_seconds: float | None = None,
                 every_fraction: float | None = None):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = self.start = initial
        self.clock = clock
        self.every_seconds = LOG_EVERY_SECONDS if every_seconds is None else every_seconds
        self.every_fraction = LOG_EVERY_FRACTION if every_fraction is None else every_fraction
        self.started = self.last_time = clock()
        self.last_step = self._step(initial)
        self.postfix = ""
        self.closed = False

    def _step(self, n: int) -> int:
        if not self.total or self.every_fraction <= 0:
            return 0
        return int(n / self.total / self.every_fraction + 1e-9)

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (e.g. loss, lr)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; write a line when a quarter is passed or time is up."""
        self.n += n
        now = self.clock()
        step = self._step(self.n)
        finished = self.total is not None and self.n >= self.total
        # a step that ends within a second (or fails at once) gets no progress lines, only its own output
        quarter = step > self.last_step and now - self.started >= 1.0
        if not finished and (quarter or now - self.last_time >= self.every_seconds):
            self._write(now)
        self.last_step = step

    def _write(self, now: float, done: bool = False) -> None:
        elapsed = now - self.started
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if done:
            parts.append(f"done in {_format_seconds(elapsed)}")
        elif self.closed:
            parts.append(f"stopped after {_format_seconds(elapsed)}")
        else:
            parts.append(f"{_format_seconds(elapsed)} elapsed")
            rate = (self.n - self.start) / elapsed if elapsed > 0 else 0.0
            if self.total and rate > 0:
                parts.append(f"~{_format_seconds((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        self.stream.write(", ".join(parts) + "\n")
        self.stream.flush()
        self.last_time = now

    def close(self) -> None:
        """Write the closing line (once): "done" when the total was reached, else where it stopped."""
        if not self.closed:
            self.closed = True
            self._write(self.clock(), done=self.total is None or self.n >= self.total)


class _NoProgress:
    """What a quiet or disabled step reports to: nothing."""

    n = 0

    def set_postfix(self, **values: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


class _Reporter:
    """A context manager around one of the three kinds of progress."""

    def __init__(self, impl: Any):
        self.impl = impl

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.impl.update(n)

    def set_postfix(self, **values: Any) -> None:
        """Values shown beside the count (e.g. ``loss="0.4127"``)."""
        if isinstance(self.impl, (PlainProgress, _NoProgress)):
            self.impl.set_postfix(**values)
        else:
            self.impl.set_postfix(values, refresh=False)

    def close(self) -> None:
        """End the bar (a plain log gets its closing line)."""
        self.impl.close()

    def __enter__(self) -> "_Reporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, initial: int = 0,
                 stream: TextIO | None = None, leave: bool = False) -> _Reporter:
    """Progress of ``total`` units of ``desc``: tqdm when ``stream`` (default stderr) is a terminal,
    plain periodic lines otherwise, nothing when ``enabled`` is false, the process is quiet or it is
    a torchrun worker other than rank 0."""
    if not enabled or _quiet or os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports
        return _Reporter(_NoProgress())
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return _Reporter(tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream,
                              dynamic_ncols=True, leave=leave))
    return _Reporter(PlainProgress(total, desc, unit, stream, initial=initial))


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None,
          enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` while reporting progress (see :func:`progress_bar`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit, enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
