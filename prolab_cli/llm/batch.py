"""The OpenAI Batch API for many describe calls: upload, poll with progress, download, cache.

:func:`run_batch` sends calls the reply cache does not hold yet as one batch (or several, of at
most :data:`MAX_REQUESTS_PER_BATCH` each), each line's ``custom_id`` being the call's cache key, so
a downloaded reply lands in the cache exactly where the ordinary call would have put it. The id of
a batch in flight is kept in a state file in the cache folder, keyed by the set of calls: a run
killed while waiting reattaches to its batch instead of uploading again. Lines that failed, and the
calls of an expired or cancelled batch that did not run, stay out of the cache; the ordinary path
then makes them one by one (with its retries).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_json
from ..cache import Cache, content_key
from ..errors import ProlabError, RemoteCallError
from ..progress import progress_bar
from .base import Completion, MalformedReply, TransientError
from .retry import RetryPolicy, call_with_retry

#: the Batch API's limit on the requests of one input file
MAX_REQUESTS_PER_BATCH = 50_000
_FINISHED = ("completed", "failed", "expired", "cancelled")


@dataclass
class BatchCall:
    """One call: its reply-cache key, the endpoint and the JSON body."""

    key: str
    endpoint: str
    body: dict[str, Any]


@dataclass
class BatchReport:
    """What :func:`run_batch` did: batches sent or reattached, replies cached, lines that failed."""

    calls: int = 0
    batches: list[str] = field(default_factory=list)
    reattached: int = 0
    cached: int = 0
    failed: int = 0
    not_run: int = 0

    def line(self) -> str:
        """One line for the user."""
        again = f", {self.reattached} reattached after an interruption" if self.reattached else ""
        left = self.failed + self.not_run
        rest = f"; {left} left to ordinary calls ({self.failed} failed, {self.not_run} not run)" if left else ""
        return f"batch: {self.calls} calls in {len(self.batches)} batch(es){again}; {self.cached} replies cached{rest}"


def run_batch(
    backend: Any,
    calls: list[BatchCall],
    cache: Cache,
    store: Callable[[str, Completion], None],
    *,
    poll_seconds: float = 10.0,
    progress: bool = True,
    retry: RetryPolicy | None = None,
    max_per_batch: int = MAX_REQUESTS_PER_BATCH,
) -> BatchReport:
    """Run ``calls`` through ``backend``'s Batch API (an :class:`~.openai_backend.OpenAIBackend`);
    ``store(key, completion)`` puts each good reply in the reply cache as its line is read. Each
    request to the Batch API is retried by ``retry`` (a rate limit, a dropped connection)."""
    retry = retry or RetryPolicy()
    report = BatchReport(calls=len(calls))
    for start in range(0, len(calls), max_per_batch):
        part = calls[start:start + max_per_batch]
        state_path = _state_path(cache, part)
        batch_id = _reattach(state_path)
        if batch_id is None:
            batch_id = _submit(backend, part, state_path, retry)
        else:
            report.reattached += 1
        report.batches.append(batch_id)
        batch = _wait(backend, batch_id, len(part), poll_seconds, progress, retry)
        cached = _download(backend, batch, part, store, retry)
        report.cached += cached
        report.failed += batch.request_counts.failed if batch.request_counts else 0
        report.not_run += len(part) - cached - (batch.request_counts.failed if batch.request_counts else 0)
        state_path.unlink(missing_ok=True)
    return report


def _state_path(cache: Cache, calls: list[BatchCall]) -> Path:
    return cache.path.parent / "batches" / f"{content_key('batch/v1', sorted(c.key for c in calls))[:24]}.json"


def _reattach(state_path: Path) -> str | None:
    try:
        return json.loads(state_path.read_text(encoding="utf-8"))["batch_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _submit(backend: Any, calls: list[BatchCall], state_path: Path, retry: RetryPolicy) -> str:
    endpoints = {c.endpoint for c in calls}
    if len(endpoints) != 1:
        raise ProlabError(f"describe.batch: one batch takes one endpoint, these calls use {sorted(endpoints)}")
    lines = "".join(json.dumps({"custom_id": c.key, "method": "POST", "url": c.endpoint, "body": c.body},
                               ensure_ascii=False) + "\n" for c in calls)
    client = backend.client
    endpoint = endpoints.pop()
    uploaded = _api(backend, lambda: client.files.create(file=("prolab-describe.jsonl", lines.encode("utf-8")),
                                                         purpose="batch"), retry)
    batch = _api(backend, lambda: client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,
                                                        completion_window="24h"), retry)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(state_path, {"batch_id": batch.id, "input_file_id": uploaded.id, "calls": len(calls),
                            "base_url": backend.base_url, "created": int(time.time())})
    return batch.id


def _wait(backend: Any, batch_id: str, total: int, poll_seconds: float, progress: bool, retry: RetryPolicy) -> Any:
    bar = progress_bar(total, f"batch {batch_id}", "req", progress)
    shown = 0
    try:
        while True:
            batch = _api(backend, lambda: backend.client.batches.retrieve(batch_id), retry)
            counts = batch.request_counts
            done = (counts.completed + counts.failed) if counts else 0
            if done > shown:
                bar.update(done - shown)
                shown = done
            if batch.status in _FINISHED:
                return batch
            time.sleep(poll_seconds)
    finally:
        bar.close()


def _download(backend: Any, batch: Any, calls: list[BatchCall], store: Callable[[str, Completion], None],
              retry: RetryPolicy) -> int:
    """Cache every good line of the batch's output file; the number cached."""
    if not batch.output_file_id:
        return 0
    wanted = {c.key: c.endpoint for c in calls}
    text = _api(backend, lambda: backend.client.files.content(batch.output_file_id), retry).text
    cached = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            key, response = line["custom_id"], line.get("response") or {}
        except (ValueError, KeyError, TypeError):
            continue  # a broken line: its call is made again the ordinary way
        if key not in wanted or response.get("status_code") != 200:
            continue
        try:
            completion = backend.completion_from_body(wanted[key], response.get("body"))
        except MalformedReply:
            continue
        store(key, completion)
        cached += 1
    return cached


def _api(backend: Any, call: Callable[[], Any], retry: RetryPolicy) -> Any:
    """One Batch API request, retried; its failures as prolab errors naming the server."""
    openai = backend._openai

    def once() -> Any:
        try:
            return call()
        except openai.APIStatusError as exc:
            raise backend._status_error(exc) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise TransientError(f"{backend.base_url}: batch request failed ({exc})") from None
        except openai.OpenAIError as exc:
            raise RemoteCallError(f"{backend.base_url}: batch request failed ({exc})") from None

    return call_with_retry(once, retry, what=f"{backend.base_url} (Batch API)")
