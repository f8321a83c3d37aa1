"""Retrying transient failures with exponential backoff and jitter, honouring Retry-After."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from ..errors import RemoteCallError
from .base import MalformedReply, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: attempt n (from 0) waits ``min(max_delay, base * 2**n)``
    times a random factor in [0.5, 1] (jitter), or the server's Retry-After when it sent one
    (capped at ``max_retry_after``)."""

    max_calls: int = 8
    max_malformed: int = 3  # calls in all when every reply is unreadable (two retries)
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.max_delay, self.base_delay * 2**attempt) * rng.uniform(0.5, 1.0)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    on_retry: Callable[[TransientError, float], None] | None = None,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn`` until it returns; retry :class:`TransientError` up to ``policy.max_calls``
    calls in all, then raise :class:`RemoteCallError` naming ``what`` and the last error. Other
    exceptions pass through at once. A set ``stop`` event ends the waiting early."""
    rng = rng or random.Random()
    malformed = 0
    for attempt in range(policy.max_calls):
        try:
            return fn()
        except TransientError as exc:
            malformed += isinstance(exc, MalformedReply)
            if malformed >= policy.max_malformed:
                raise RemoteCallError(f"{what}: gave up after {malformed} unreadable replies: {exc}") from None
            if attempt + 1 >= policy.max_calls:
                raise RemoteCallError(f"{what}: gave up after {policy.max_calls} attempts: {exc}") from None
            wait = policy.delay(attempt, exc.retry_after, rng)
            if on_retry is not None:
                on_retry(exc, wait)
            if stop is not None:
                if stop.wait(wait):
                    raise RemoteCallError(f"{what}: stopped while waiting to retry ({exc})") from None
            else:
                time.sleep(wait)
    raise AssertionError("unreachable")
