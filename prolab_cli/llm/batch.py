"""The OpenAI Batch API for many describe calls: upload, poll with progress, download, cache.

:func:`run_batch` sends the calls the reply cache does not hold yet as one batch (or several, of at
most :data:`MAX_REQUESTS_PER_BATCH` each). Each line's ``custom_id`` is the call's reply-cache key,
so a downloaded reply lands in the cache exactly where the ordinary call would have put it, and the
describe stage then reads, parses and lints it like any cached reply (a reply with too few good
lines is asked again the ordinary way, with the next seed).

Resuming: the id of a batch in flight is kept in a state file in the cache folder
(``batches/<hash of its calls>.json``, written atomically) with the custom ids it holds. A run
first reattaches to every recorded batch that holds calls it still needs (a killed run's batch,
even when the set of calls has changed since), and uploads only the calls no batch holds. A state
file is removed once its batch's results are in the cache; one whose batch the server does not
know (404) is dropped and its calls are sent again.

Lines that failed, the calls of an expired, cancelled or failed batch that did not run, and
replies that cannot be read stay out of the cache: the ordinary path then makes them one by one
(with its retries), not a second batch, so a run ends in one pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..atomic import write_json
from ..cache import Cache, content_key
from ..errors import ProlabError
from ..progress import progress_bar
from .base import Completion, MalformedReply
from .retry import RetryPolicy, call_with_retry

#: the Batch API's limit on the requests of one input file
MAX_REQUESTS_PER_BATCH = 50_000
_FINISHED = ("completed", "failed", "expired", "cancelled")
_STATE_FORMAT = "prolab.batch-state"
_MAX_ERRORS = 3  # distinct error messages kept for the report


@dataclass
class BatchCall:
    """One call: its reply-cache key, the endpoint and the JSON body."""

    key: str
    endpoint: str
    body: dict[str, Any]


@dataclass
class BatchReport:
    """What :func:`run_batch` did: batches sent or reattached, replies cached, lines that failed or
    never ran (both left to ordinary calls), and the first distinct error messages."""

    calls: int = 0
    batches: list[str] = field(default_factory=list)
    reattached: int = 0
    cached: int = 0
    failed: int = 0
    not_run: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the user."""
        again = f", {self.reattached} reattached after an interruption" if self.reattached else ""
        left = self.failed + self.not_run
        rest = f"; {left} left to ordinary calls ({self.failed} failed, {self.not_run} not run)" if left else ""
        first = f"; first error: {self.errors[0]}" if self.errors else ""
        return (f"batch: {self.calls} calls in {len(self.batches)} batch(es){again}; {self.cached} replies cached"
                f"{rest}{first}")

    def _error(self, message: str) -> None:
        message = " ".join(str(message).split())[:200]
        if message and message not in self.errors and len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)


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
    if not poll_seconds > 0:
        raise ProlabError(f"describe.batch_poll must be more than 0 seconds, not {poll_seconds}")
    if max_per_batch < 1:
        raise ProlabError(f"at most {max_per_batch} requests per batch: must be at least 1")
    retry = retry or RetryPolicy()
    pending = {c.key: c for c in calls}  # one line per custom id: two classes may share a prompt
    report = BatchReport(calls=len(pending))
    if not pending:
        return report
    folder = _state_dir(cache)
    for state_path, state in _recorded_batches(folder, backend.base_url):
        part = [pending[k] for k in state["keys"] if k in pending]
        if not part:
            continue  # another run's batch
        batch = _api(backend, lambda: backend.client.batches.retrieve(state["batch_id"]), retry, missing_ok=True)
        if batch is None:
            state_path.unlink(missing_ok=True)  # the server does not know it (another account, deleted)
            continue
        report.reattached += 1
        _finish(backend, state["batch_id"], part, state_path, store, report, poll_seconds, progress, retry,
                seen=batch)
        for call in part:
            del pending[call.key]
    rest = list(pending.values())
    for start in range(0, len(rest), max_per_batch):
        part = rest[start:start + max_per_batch]
        state_path = folder / f"{content_key('batch/v1', sorted(c.key for c in part))[:24]}.json"
        batch_id = _submit(backend, part, state_path, retry)
        _finish(backend, batch_id, part, state_path, store, report, poll_seconds, progress, retry)
    return report


def _state_dir(cache: Cache) -> Path:
    return cache.path.parent / "batches"


def _recorded_batches(folder: Path, base_url: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The readable state files of batches sent to ``base_url``, oldest first."""
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            ok = (state.get("format") == _STATE_FORMAT and state.get("base_url") == base_url
                  and isinstance(state.get("batch_id"), str) and isinstance(state.get("keys"), list))
        except (OSError, ValueError, AttributeError):
            continue
        if ok:
            found.append((state.get("created", 0), path.name, path, state))
    for _, _, path, state in sorted(found, key=lambda item: item[:2]):
        yield path, state


def _submit(backend: Any, calls: list[BatchCall], state_path: Path, retry: RetryPolicy) -> str:
    """Upload ``calls`` as one JSONL input file, create its batch and record it; the batch id."""
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
    write_json(state_path, {"format": _STATE_FORMAT, "version": 1, "batch_id": batch.id,
                            "input_file_id": uploaded.id, "base_url": backend.base_url, "endpoint": endpoint,
                            "created": time.time(), "keys": [c.key for c in calls]})
    return batch.id


def _finish(backend: Any, batch_id: str, part: list[BatchCall], state_path: Path,
            store: Callable[[str, Completion], None], report: BatchReport, poll_seconds: float, progress: bool,
            retry: RetryPolicy, seen: Any = None) -> None:
    """Wait for batch ``batch_id`` (``seen``: its state just retrieved), cache its good replies to
    ``part``, count the rest, forget it."""
    report.batches.append(batch_id)
    batch = _wait(backend, batch_id, len(part), poll_seconds, progress, retry, seen)
    for error in getattr(getattr(batch, "errors", None), "data", None) or ():  # the batch as a whole failed
        report._error(getattr(error, "message", None) or getattr(error, "code", ""))
    wanted = {c.key: c.endpoint for c in part}
    done: set[str] = set()
    failed: set[str] = set()
    for file_id in (batch.output_file_id, getattr(batch, "error_file_id", None)):
        if file_id:
            text = _api(backend, lambda: backend.client.files.content(file_id), retry).text
            _read_results(backend, text, wanted, store, done, failed, report)
    report.cached += len(done)
    report.failed += len(failed - done)
    report.not_run += len(wanted) - len(done | failed)
    state_path.unlink(missing_ok=True)


def _wait(backend: Any, batch_id: str, total: int, poll_seconds: float, progress: bool, retry: RetryPolicy,
          seen: Any = None) -> Any:
    """Poll the batch until it is finished, a progress line showing its counts; the last batch object."""
    bar = None
    shown = 0
    try:
        while True:
            batch = seen if seen is not None else _api(backend, lambda: backend.client.batches.retrieve(batch_id),
                                                       retry)
            seen = None
            counts = batch.request_counts
            if bar is None:
                bar = progress_bar((counts.total if counts and counts.total else total), f"batch {batch_id}", "req",
                                   progress)
            done = (counts.completed + counts.failed) if counts else 0
            bar.set_postfix(status=batch.status, failed=counts.failed if counts else 0)
            if done > shown:
                bar.update(done - shown)
                shown = done
            if batch.status in _FINISHED:
                return batch
            time.sleep(poll_seconds)
    finally:
        if bar is not None:
            bar.close()


def _read_results(backend: Any, text: str, wanted: dict[str, str], store: Callable[[str, Completion], None],
                  done: set[str], failed: set[str], report: BatchReport) -> None:
    """Cache every good line of an output (or error) file; note the keys that failed and why. A
    line of the Batch API's own ``batch_expired`` error never ran: its key is in neither set."""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            key = line["custom_id"]
            response = line.get("response") or {}
            error = line.get("error") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            report._error("an unreadable result line")
            continue  # its call is made again the ordinary way
        if key not in wanted or key in done:
            continue
        if isinstance(error, dict) and error.get("code") == "batch_expired":
            continue
        status = response.get("status_code") if isinstance(response, dict) else None
        if error or status != 200:
            failed.add(key)
            report._error(_line_error(error, response, status))
            continue
        try:
            completion = backend.completion_from_body(wanted[key], response.get("body"))
        except MalformedReply as exc:
            failed.add(key)
            report._error(str(exc))
            continue
        store(key, completion)
        done.add(key)


def _line_error(error: Any, response: Any, status: Any) -> str:
    """The message of a failed result line."""
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    body = response.get("body") if isinstance(response, dict) else None
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _api(backend: Any, call: Callable[[], Any], retry: RetryPolicy, *, missing_ok: bool = False) -> Any:
    """One Batch API request through the backend's own error mapping
    (:meth:`~.openai_backend.OpenAIBackend.send`), retried. With ``missing_ok`` a 404 gives None."""
    return call_with_retry(lambda: backend.send(call, missing_ok=missing_ok), retry,
                           what=f"{backend.base_url} (Batch API)")
