"""The describe stage: class names -> prompts -> LLM replies (cached) -> validated descriptions.

Every reply is stored in the ``llm`` namespace of the SQLite :class:`~prolab_cli.cache.Cache`
under the hash of (backend identity, rendered prompt, sampling, seed), as soon as it arrives:
a re-run makes no call and a killed run resumes where it stopped. A reply with fewer than
``min_descriptions`` valid lines is asked again with a new seed (and the template's
``retry_temperature``); a class still short after ``attempts`` tries is reported as failed
while the other classes are kept.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .atomic import json_bytes, write_bytes, write_json
from .cache import Cache, content_key
from .classes import builtin_name, load_classes, validated_names
from .errors import ProlabError
from .llm import backend_kind, resolve_backend
from .llm.base import Backend, Completion, TransientError
from .llm.replies import parse_reply, validate
from .llm.retry import RetryPolicy, call_with_retry
from .progress import progress_bar
from .stage_options import DescribeOptions
from .templates import Prompt, Template, display_name, load_template

CACHE_NAMESPACE = "llm"
PROVENANCE_FORMAT = "prolab.descriptions.provenance"
#: ``--llm shipped`` (the default): prolab's shipped descriptions, the local model for what they miss
SHIPPED = "shipped"
LOCAL_MODEL_WARNING = ("warning: the local model is Gemma-3-270M; its descriptions are often false or boilerplate:"
                       " read them before you train on them")
_TOTAL_KEYS = ("calls", "cache_hits", "retries", "prompt_tokens", "completion_tokens", "new_tokens")


@dataclass
class ClassRecord:
    """What happened for one class."""

    attempts: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    new_tokens: int = 0
    seeds: list[int] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    best: list[str] = field(default_factory=list)

    def count(self, completion: Completion, cached: bool, seed: int) -> None:
        """Count one attempt's reply: from the cache or a new call, its tokens and seed."""
        if cached:
            self.cache_hits += 1
        else:
            self.calls += 1
            self.new_tokens += (completion.prompt_tokens or 0) + (completion.completion_tokens or 0)
        self.attempts += 1
        self.seeds.append(seed)
        self.prompt_tokens += completion.prompt_tokens or 0
        self.completion_tokens += completion.completion_tokens or 0

    def to_json(self) -> dict[str, Any]:
        """The provenance entry (the best partial list goes under ``failed`` instead)."""
        return {k: v for k, v in self.__dict__.items() if k != "best"}


@dataclass
class DescribeResult:
    """Descriptions of the classes that passed validation (in class order), the provenance
    record, the classes that did not get ``min_descriptions`` valid lines, and lines the user
    must read (where descriptions came from, what a small local model's need)."""

    descriptions: dict[str, list[str]]
    provenance: dict[str, Any]
    failed: list[str]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: classes, calls, cache hits, retries, tokens, time."""
        t = self.provenance["totals"]
        n = len(self.provenance["classes"])
        return (
            f"described {n - len(self.failed)}/{n} classes ({len(self.failed)} failed):"
            f" {t['calls']} calls, {t['cache_hits']} cache hits, {t['retries']} retries,"
            f" {t['new_tokens']} tokens, {t['descriptions']} descriptions,"
            f" {self.provenance['elapsed_s']:.1f} s"
        )


def run_describe(
    classes: str | Path,
    output: str | Path,
    *,
    options: DescribeOptions = DescribeOptions(),
    backend: Backend | None = None,
    progress: bool = True,
) -> DescribeResult:
    """The ``prolab describe`` stage: a class list (built-in name or file) -> the descriptions file
    and its sidecar. ``backend`` replaces the one ``options.llm`` names (tests, servers). Classes
    that failed are left out of the file; the caller reports them."""
    names = load_classes(classes)
    load_template(options.template)  # a bad template is refused even when no class needs the LLM
    names_api = options.llm.strip() != SHIPPED and backend_kind(options.llm) == "openai"
    if options.batch and backend is None and not names_api:
        raise ProlabError(f"describe.batch needs an OpenAI-compatible API (describe.llm NAME, openai:NAME or "
                          f"describe.base_url), not describe.llm {options.llm}")
    if options.llm == SHIPPED:
        list_name = None if isinstance(classes, Path) else builtin_name(str(classes))
        result = describe_from_shipped(names, list_name, options, backend=backend, progress=progress)
    else:
        result = _describe_with_llm(names, options, backend, progress)
    write_descriptions(result, output)
    return result


def _describe_with_llm(names: list[str], options: DescribeOptions, backend: Backend | None,
                       progress: bool) -> DescribeResult:
    """``names`` described by the LLM ``options.llm`` names (or ``backend``)."""
    prompt_template = load_template(options.template)
    own = backend is None
    if own:
        backend = resolve_backend(options.llm, base_url=options.base_url, threads=options.threads,
                                  n_ctx=options.n_ctx, timeout=options.timeout, mode=options.mode)
    try:
        result = describe_classes(
            names, backend, prompt_template, min_descriptions=options.min, attempts=options.attempts,
            seed=options.seed, jobs=options.jobs, retry=options.retry_policy(), sampling=options.sampling,
            progress=progress, batch=options.batch, batch_poll=options.batch_poll,
        )
    finally:
        if own:
            backend.close()
    if backend.kind == "local":
        result.notes.append(LOCAL_MODEL_WARNING)
    return result


def describe_from_shipped(
    names: list[str],
    list_name: str | None,
    options: DescribeOptions = DescribeOptions(),
    *,
    backend: Backend | None = None,
    progress: bool = True,
) -> DescribeResult:
    """``names`` described from prolab's shipped descriptions (:mod:`prolab_cli.shipped`; a built-in
    ``list_name`` uses its own file), and by the local model (or ``backend``) for the names they do not
    cover, which the notes name."""
    from .shipped import descriptions_dir, find_descriptions

    started = time.time()
    found, missing = find_descriptions(names, list_name)
    model = _describe_with_llm(missing, replace(options, llm="local"), backend, progress) if missing else None
    described = {**{n: f.descriptions for n, f in found.items()}, **(model.descriptions if model else {})}
    descriptions = {n: described[n] for n in names if n in described}
    files = sorted({f.list_name for f in found.values()})
    notes = []
    if found:
        where = ", ".join(str(descriptions_dir() / f"{name}.json") for name in files)
        notes.append(f"served {len(found)} of {len(names)} classes from prolab's shipped, reviewed descriptions ({where})")
    if missing:
        notes.append(f"the shipped descriptions do not cover {len(missing)} class(es), described by the local model:"
                     f" {', '.join(missing)}")
        notes += model.notes
    totals = dict(model.provenance["totals"]) if model else {k: 0 for k in _TOTAL_KEYS}
    totals["descriptions"] = sum(len(v) for v in descriptions.values())
    provenance = {
        "format": PROVENANCE_FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prolab_version": __version__,
        "source": SHIPPED,
        "classes": names,
        "shipped": {"files": {name: _file_sha256(descriptions_dir() / f"{name}.json") for name in files},
                    "classes": {n: [f.list_name, f.key] for n, f in found.items()}},
        "local_model": model.provenance if model else None,
        "totals": totals,
        "elapsed_s": round(time.time() - started, 3),
    }
    return DescribeResult(descriptions, provenance, model.failed if model else [], notes)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reply_cache_key(backend: Backend, prompt_json: dict[str, Any], sampling: dict[str, Any], seed: int) -> str:
    """The cache key of one call: backend identity, rendered prompt, sampling and seed."""
    return content_key("llm-reply/v1", backend.identity(), prompt_json, sampling, seed)


def cached_completion(
    cache: Cache,
    backend: Backend,
    prompt: Prompt,
    sampling: dict[str, Any],
    seed: int,
    retry: RetryPolicy,
    *,
    what: str,
    on_retry: Callable[[TransientError, float], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[Completion, bool]:
    """The reply to ``prompt`` from the reply cache, else from ``backend`` (retried), then stored
    tagged with the backend and model; and whether it came from the cache."""
    key = reply_cache_key(backend, prompt.as_dict(), sampling, seed)
    stored = cache.get_json(CACHE_NAMESPACE, key)
    if stored is not None:
        return Completion.from_json(stored), True
    completion = call_with_retry(lambda: backend.complete(prompt, sampling, seed), retry, what=what,
                                 on_retry=on_retry, stop=stop)
    store_reply(cache, backend, key, completion)
    return completion, False


def store_reply(cache: Cache, backend: Backend, key: str, completion: Completion) -> None:
    """Put ``completion`` in the reply cache under ``key`` (:func:`reply_cache_key`), tagged with
    the backend and model (``prolab cache`` lists and clears by them)."""
    cache.put_json(CACHE_NAMESPACE, key, completion.to_json(), backend=backend.kind, model=str(backend.model))


def describe_classes(
    classes: Sequence[str],
    backend: Backend,
    template: Template | str | Path = "prolab",
    *,
    min_descriptions: int = 3,
    attempts: int = 3,
    seed: int = 0,
    jobs: int = 1,
    cache: Cache | None = None,
    retry: RetryPolicy | None = None,
    sampling: dict[str, Any] | None = None,
    progress: bool = True,
    lint: bool | None = None,
    batch: bool = False,
    batch_poll: float = 10.0,
) -> DescribeResult:
    """Describe every class with ``backend`` through ``template`` (a Template, a shipped name or
    a YAML path). ``sampling`` overrides the template's sampling (temperature, top_p,
    max_tokens, retry_temperature). ``lint`` drops numbered, boilerplate and example-copying lines
    (:func:`~prolab_cli.llm.replies.validate`); by default only for the local model, so an API model
    with the paper's prompt keeps the paper's lines. Raises :class:`ProlabError` when a call fails for good
    (a 4xx, or transient errors beyond ``retry.max_calls``); replies received before that
    stay cached. ``batch`` (an OpenAI-compatible backend only) first asks every class's first
    reply through the Batch API (:mod:`prolab_cli.llm.batch`, polled every ``batch_poll`` seconds)
    into the cache; retries and failed lines then go the ordinary way."""
    if not isinstance(template, Template):
        template = load_template(template)
    classes = list(classes)
    _check_describe_arguments(classes, backend, min_descriptions, attempts, jobs, batch)
    cache = cache if cache is not None else Cache()
    retry = retry or RetryPolicy()
    options = {**template.sampling, **(sampling or {})}
    retry_temperature = options.pop("retry_temperature", 0.7)
    first_sampling = options
    later_sampling = {**options, "temperature": retry_temperature}
    lint = backend.kind == "local" if lint is None else lint
    started = time.time()
    batch_report = None
    if batch:
        batch_report = _first_replies_by_batch(classes, backend, template, cache, first_sampling, seed, retry,
                                               batch_poll, progress)
    describer = _ClassDescriber(backend, template, cache, retry, first_sampling, later_sampling, seed, attempts,
                                min_descriptions, lint, {name: ClassRecord() for name in classes})
    _run_in_pool(classes, describer.describe, max(1, min(jobs, backend.max_concurrency, len(classes))), progress,
                 describer.stop)
    records, kept = describer.records, describer.kept

    failed = [name for name in classes if name not in kept]
    descriptions = {name: kept[name] for name in classes if name in kept}
    provenance = _provenance(
        classes, backend, template, records, failed, lint=lint,
        first_sampling=first_sampling, later_sampling=later_sampling, seed=seed,
        attempts=attempts, min_descriptions=min_descriptions,
        elapsed=time.time() - started, n_descriptions=sum(len(v) for v in descriptions.values()),
    )
    notes = []
    if batch_report is not None:
        provenance["batch"] = asdict(batch_report)
        notes.append(batch_report.line())
    return DescribeResult(descriptions=descriptions, provenance=provenance, failed=failed, notes=notes)


def _check_describe_arguments(classes: list[str], backend: Backend, min_descriptions: int, attempts: int,
                              jobs: int, batch: bool) -> None:
    _check_classes(classes)
    if min_descriptions < 1:
        raise ProlabError(f"describe.min must be at least 1, not {min_descriptions}")
    if attempts < 1:
        raise ProlabError(f"describe.attempts must be at least 1, not {attempts}")
    if jobs < 1:
        raise ProlabError(f"describe.jobs must be at least 1, not {jobs}")
    if batch and backend.kind != "openai":
        raise ProlabError(f"describe.batch needs an OpenAI-compatible API, not the {backend.kind} backend")


@dataclass
class _ClassDescriber:
    """Asks for one class's descriptions until enough lines pass validation or the attempts run out
    (each attempt a new seed and the retry temperature); records what every class cost. One
    worker thread per class at a time: a class's record is touched by its own worker only."""

    backend: Backend
    template: Template
    cache: Cache
    retry: RetryPolicy
    first_sampling: dict[str, Any]
    later_sampling: dict[str, Any]
    seed: int
    attempts: int
    min_descriptions: int
    lint: bool
    records: dict[str, ClassRecord]
    kept: dict[str, list[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self, name: str) -> None:
        """Describe ``name``: its lines go to ``kept`` once ``min_descriptions`` of them pass."""
        record = self.records[name]
        template, backend = self.template, self.backend
        prompt = template.render(name, backend.mode)
        allowed = template.example_lines(name)
        examples = template.example_lines(mode=backend.mode)
        for attempt in range(self.attempts):
            if self.stop.is_set():
                return
            call_sampling = self.first_sampling if attempt == 0 else self.later_sampling
            call_seed = self.seed + attempt

            def on_retry(exc: TransientError, wait_s: float) -> None:
                record.retries += 1

            completion, cached = cached_completion(self.cache, backend, prompt, call_sampling, call_seed, self.retry,
                                                   what=f"class {name!r}", on_retry=on_retry, stop=self.stop)
            record.count(completion, cached, call_seed)
            lines = parse_reply(prompt.answer_prefix + completion.text, template.parser)
            checked = validate(
                lines,
                class_name=name,
                prompt_text=prompt.visible_text(),
                allowed_echo=allowed,
                truncated=completion.finish_reason == "length",
                max_descriptions=template.max_descriptions,
                example_lines=examples,
                lint=self.lint,
            )
            for reason, dropped in checked.dropped.items():
                record.dropped[reason] = record.dropped.get(reason, 0) + len(dropped)
            if len(checked.kept) > len(record.best):
                record.best = checked.kept
            if len(checked.kept) >= self.min_descriptions:
                with self._lock:
                    self.kept[name] = checked.kept
                record.kept = len(checked.kept)
                return


def _run_in_pool(classes: list[str], work: Callable[[str], None], workers: int, progress: bool,
                 stop: threading.Event) -> None:
    """``work(name)`` for every class on ``workers`` threads, a progress bar ticking per class; the
    first error sets ``stop`` (the other workers finish their call and quit) and is raised."""
    bar = _progress_bar(len(classes), progress)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="describe")
    try:
        futures = {pool.submit(work, name): name for name in classes}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
                bar.update(1)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)


def _first_replies_by_batch(classes: list[str], backend: Backend, template: Template, cache: Cache,
                            sampling: dict[str, Any], seed: int, retry: RetryPolicy, poll_seconds: float,
                            progress: bool) -> Any:
    """Every class's first call that the cache lacks, made through the Batch API into the cache."""
    from .llm.batch import BatchCall, run_batch

    calls = []
    for name in classes:
        prompt = template.render(name, backend.mode)
        key = reply_cache_key(backend, prompt.as_dict(), sampling, seed)
        if cache.get_json(CACHE_NAMESPACE, key) is None:
            calls.append(BatchCall(key, *backend.request(prompt, sampling, seed)))
    return run_batch(backend, calls, cache, lambda key, completion: store_reply(cache, backend, key, completion),
                     poll_seconds=poll_seconds, progress=progress, retry=retry)


def _check_classes(classes: list[str]) -> None:
    """The class-list rules of :mod:`prolab_cli.classes`, for a list given in code."""
    if not classes:
        raise ProlabError("no classes to describe")
    for index, name in enumerate(classes):
        if not isinstance(name, str):
            raise ProlabError(f"class list: item {index} is {type(name).__name__}, not a class name")
    validated_names([(f"item {index}", name) for index, name in enumerate(classes)], "class list")


def _progress_bar(total: int, enabled: bool):
    return progress_bar(total, "describe", "class", enabled)


def _provenance(
    classes: list[str],
    backend: Backend,
    template: Template,
    records: dict[str, ClassRecord],
    failed: list[str],
    *,
    lint: bool,
    first_sampling: dict[str, Any],
    later_sampling: dict[str, Any],
    seed: int,
    attempts: int,
    min_descriptions: int,
    elapsed: float,
    n_descriptions: int,
) -> dict[str, Any]:
    return {
        "format": PROVENANCE_FORMAT,
        "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prolab_version": __version__,
        "backend": backend.identity(),
        "template": {
            "name": template.name,
            "source": template.source,
            "sha256": template.sha256,
            "parser": template.parser,
        },
        "sampling": first_sampling,
        "retry_sampling": later_sampling,
        "seed": seed,
        "attempts": attempts,
        "min_descriptions": min_descriptions,
        "max_descriptions": template.max_descriptions,
        "lint": lint,
        "dropped": _dropped_totals(records),
        "display_names": {name: display_name(name) for name in classes if display_name(name) != name},
        "classes": classes,
        "per_class": {name: records[name].to_json() for name in classes},
        "failed": {name: {"best": records[name].best, "dropped": records[name].dropped} for name in failed},
        "totals": {
            "calls": sum(r.calls for r in records.values()),
            "cache_hits": sum(r.cache_hits for r in records.values()),
            "retries": sum(r.retries for r in records.values()),
            "prompt_tokens": sum(r.prompt_tokens for r in records.values()),
            "completion_tokens": sum(r.completion_tokens for r in records.values()),
            "new_tokens": sum(r.new_tokens for r in records.values()),
            "descriptions": n_descriptions,
        },
        "elapsed_s": round(elapsed, 3),
    }


def _dropped_totals(records: dict[str, ClassRecord]) -> dict[str, int]:
    """Lines dropped over all classes, per reason."""
    totals: dict[str, int] = {}
    for record in records.values():
        for reason, count in record.dropped.items():
            totals[reason] = totals.get(reason, 0) + count
    return dict(sorted(totals.items()))


def provenance_path(path: str | Path) -> Path:
    """The sidecar of an output file: ``descriptions.json`` -> ``descriptions.provenance.json``."""
    path = Path(path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(f"{stem}.provenance.json")


def write_descriptions(result: DescribeResult, path: str | Path) -> tuple[Path, Path]:
    """Write ``{class: [descriptions]}`` (class order) and its provenance sidecar, atomically.
    The sidecar records the SHA-256 of the descriptions file it belongs to."""
    path = Path(path)
    blob = json_bytes(result.descriptions)
    write_bytes(path, blob)
    sidecar = provenance_path(path)
    provenance = {**result.provenance, "descriptions_file": path.name,
                  "descriptions_sha256": hashlib.sha256(blob).hexdigest()}
    write_json(sidecar, provenance)
    return path, sidecar
