"""describe_classes with injected backends: caching, validation retries, failures, concurrency."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest
from click.testing import CliRunner

from prolab_cli.cache import Cache
from prolab_cli.cli import main
from prolab_cli.describe import (
    CACHE_NAMESPACE, describe_classes, provenance_path, reply_cache_key, write_descriptions,
)
from prolab_cli.errors import ProlabError
from prolab_cli.llm import Backend, Completion, RetryPolicy, TransientError, call_with_retry
from prolab_cli.templates import load_template

FAST = RetryPolicy(max_calls=3, base_delay=0.001, max_delay=0.002)


class Scripted(Backend):
    """Replies from a function of (class name, seed, sampling); records every call."""

    kind, model, mode = "scripted", "v1", "chat"

    def __init__(self, answer, delay: float = 0.0, gate: threading.Barrier | None = None):
        self.answer = answer
        self.delay = delay
        self.gate = gate  # each call waits until gate.parties calls are in flight together
        self.calls: list[tuple[str, int, dict]] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def complete(self, prompt, sampling, seed):
        name = prompt.messages[-1][1].rsplit("describe ", 1)[1].rstrip(".")
        with self._lock:
            self.calls.append((name, seed, dict(sampling)))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(timeout=60)
            if self.delay:
                time.sleep(self.delay)
            return self.answer(name, seed, sampling)
        finally:
            with self._lock:
                self.active -= 1


def good(name, seed, sampling):
    return Completion(f"- {name} trait one\n- {name} trait two\n- {name} trait three\n", 10, 5, "stop")


def test_describes_in_class_order_and_rerun_uses_the_cache(tmp_path):
    classes = ["sky", "potted_plant", "car"]
    backend = Scripted(good)
    result = describe_classes(classes, backend, "prolab", progress=False)
    assert list(result.descriptions) == classes
    assert result.descriptions["potted_plant"][0] == "potted plant trait one"
    assert result.failed == []
    prov = result.provenance
    assert prov["backend"] == {"backend": "scripted", "model": "v1", "mode": "chat"}
    assert prov["template"]["name"] == "prolab" and len(prov["template"]["sha256"]) == 64
    assert prov["sampling"] == {"temperature": 0, "max_tokens": 400}
    assert prov["totals"]["calls"] == 3 and prov["totals"]["cache_hits"] == 0
    assert prov["totals"]["prompt_tokens"] == 30 and prov["totals"]["new_tokens"] == 45
    assert prov["per_class"]["car"]["seeds"] == [0]
    assert prov["display_names"] == {"potted_plant": "potted plant"}
    assert "3/3 classes (0 failed): 3 calls, 0 cache hits, 0 retries, 45 tokens" in result.summary()

    again = Scripted(good)
    second = describe_classes(classes, again, "prolab", progress=False)
    assert again.calls == []
    assert second.descriptions == result.descriptions
    assert second.provenance["totals"]["cache_hits"] == 3 and second.provenance["totals"]["new_tokens"] == 0


def test_short_reply_is_retried_with_a_new_seed_and_retry_temperature():
    def answer(name, seed, sampling):
        return good(name, seed, sampling) if seed == 7 else Completion("- only one line\n- car")

    backend = Scripted(answer)
    result = describe_classes(["car"], backend, "prolab", seed=6, progress=False)
    assert result.descriptions == {"car": ["car trait one", "car trait two", "car trait three"]}
    assert [(seed, s["temperature"]) for _, seed, s in backend.calls] == [(6, 0), (7, 0.7)]
    record = result.provenance["per_class"]["car"]
    assert record["attempts"] == 2 and record["seeds"] == [6, 7]
    assert record["dropped"] == {"class name alone": 1}


def test_class_still_short_is_reported_and_the_rest_kept(tmp_path):
    def answer(name, seed, sampling):
        return Completion("- nothing useful") if name == "fog" else good(name, seed, sampling)

    backend = Scripted(answer)
    result = describe_classes(["road", "fog", "sky"], backend, "prolab", attempts=2, progress=False)
    assert result.failed == ["fog"]
    assert list(result.descriptions) == ["road", "sky"]
    assert result.provenance["failed"]["fog"]["best"] == ["nothing useful"]
    assert len([c for c in backend.calls if c[0] == "fog"]) == 2
    out, sidecar = write_descriptions(result, tmp_path / "descriptions.json")
    assert sidecar.name == "descriptions.provenance.json"
    written = json.loads(out.read_text())
    assert list(written) == ["road", "sky"]
    side = json.loads(sidecar.read_text())
    assert side["descriptions_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert side["failed"]["fog"]["best"] == ["nothing useful"]


def test_jobs_run_calls_concurrently_but_respect_backend_limit():
    names = [f"class {i}" for i in range(8)]
    backend = Scripted(good, gate=threading.Barrier(4))  # a run with fewer than 4 calls in flight breaks it
    result = describe_classes(names, backend, "prolab", jobs=4, progress=False)
    assert backend.peak == 4 and not backend.gate.broken and result.failed == []
    serial = Scripted(good, delay=0.01)
    serial.max_concurrency = 1
    describe_classes([n + "x" for n in names], serial, "prolab", jobs=4, progress=False)
    assert serial.peak == 1


def test_transient_errors_are_retried_and_counted():
    failures = {"n": 0}

    def answer(name, seed, sampling):
        if failures["n"] < 2:
            failures["n"] += 1
            raise TransientError("HTTP 503: busy")
        return good(name, seed, sampling)

    result = describe_classes(["car"], Scripted(answer), "prolab", retry=FAST, progress=False)
    assert result.provenance["per_class"]["car"]["retries"] == 2
    assert result.provenance["totals"]["calls"] == 1


def test_fatal_error_stops_the_run_and_keeps_finished_replies():
    def answer(name, seed, sampling):
        if name == "bad":
            raise ProlabError("HTTP 401: invalid key")
        return good(name, seed, sampling)

    with pytest.raises(ProlabError, match="HTTP 401"):
        describe_classes(["fine", "bad", "later"], Scripted(answer), "prolab", progress=False)
    rerun = Scripted(good)
    describe_classes(["fine"], rerun, "prolab", progress=False)
    assert rerun.calls == []


def test_retry_policy_gives_up_with_the_last_error():
    calls = []

    def always_busy():
        calls.append(1)
        raise TransientError("HTTP 429: slow down", retry_after=0.0)

    with pytest.raises(ProlabError, match="car: gave up after 3 attempts: HTTP 429: slow down"):
        call_with_retry(always_busy, FAST, what="car")
    assert len(calls) == 3


def test_backoff_grows_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, max_retry_after=30.0)
    rng = random.Random(0)
    delays = [policy.delay(n, None, rng) for n in range(6)]
    for n, delay in enumerate(delays):
        cap = min(10.0, 2.0**n)
        assert cap / 2 <= delay <= cap
    assert policy.delay(0, 7.5, rng) == 7.5
    assert policy.delay(0, 500.0, rng) == 30.0


def test_cache_key_covers_backend_prompt_sampling_and_seed():
    template = load_template("prolab")
    backend = Scripted(good)
    prompt = template.render("car", "chat").as_dict()
    base = reply_cache_key(backend, prompt, {"temperature": 0}, 0)
    assert base == reply_cache_key(Scripted(good), prompt, {"temperature": 0}, 0)
    other = Scripted(good)
    other.model = "v2"
    variants = [
        reply_cache_key(other, prompt, {"temperature": 0}, 0),
        reply_cache_key(backend, template.render("bus", "chat").as_dict(), {"temperature": 0}, 0),
        reply_cache_key(backend, prompt, {"temperature": 0.7}, 0),
        reply_cache_key(backend, prompt, {"temperature": 0}, 1),
    ]
    assert len({base, *variants}) == 5


def test_replies_are_stored_in_the_llm_namespace():
    cache = Cache()
    describe_classes(["car", "bus"], Scripted(good), "prolab", cache=cache, progress=False)
    assert cache.count(CACHE_NAMESPACE) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": []}, "no classes to describe"),
        ({"classes": ["car", "Car"]}, "duplicate class 'Car'"),
        ({"classes": ["car", " "]}, "empty class name"),
        ({"min_descriptions": 0}, r"describe\.min must be at least 1"),
        ({"jobs": 0}, r"describe\.jobs must be at least 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"classes": ["car"], **kwargs}
    classes = args.pop("classes")
    with pytest.raises(ProlabError, match=message):
        describe_classes(classes, Scripted(good), "prolab", progress=False, **args)


def test_provenance_path():
    assert provenance_path("out/descriptions.json").as_posix() == "out/descriptions.provenance.json"
    assert provenance_path("out/desc").as_posix() == "out/desc.provenance.json"


def test_cli_missing_api_key_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = CliRunner().invoke(main, ["describe", "--classes", "cityscapes", "--llm", "gpt-3.5",
                                       "-o", str(tmp_path / "d.json")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: OPENAI_API_KEY is not set (needed for https://api.openai.com/v1); export it, or use --llm local\n"
    )
    assert not (tmp_path / "d.json").exists()


def test_cli_rejects_bad_class_file_and_template(tmp_path):
    classes = tmp_path / "c.txt"
    classes.write_text("car\n\nbus\n")
    runner = CliRunner()
    result = runner.invoke(main, ["describe", "--classes", str(classes), "-o", str(tmp_path / "d.json")])
    assert result.exit_code == 1 and f"{classes}: line 2: empty class name" in result.output
    result = runner.invoke(main, ["describe", "--classes", "bdd", "--template", "nope", "-o", str(tmp_path / "d.json")])
    assert result.exit_code == 1 and "template 'nope'" in result.output
