"""The OpenAI-compatible backend against a local HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from email.utils import formatdate

import openai  # noqa: F401  (imported up front so timings measure waiting, not importing)
import pytest
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.describe import describe_classes
from prolab_cli.errors import ProlabError
from prolab_cli.llm import RetryPolicy, resolve_backend
from prolab_cli.llm.openai_backend import is_loopback, parse_retry_after
from prolab_cli.llm.testing import FakeOpenAIServer, Fault

TINY = RetryPolicy(max_calls=4, base_delay=0.001, max_delay=0.005)

pytestmark = pytest.mark.usefixtures("no_openai_env")


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def run(server, classes=("car",), timeout=5.0, **kwargs):
    backend = resolve_backend("openai:fake-model", base_url=server.base_url, timeout=timeout)
    try:
        return describe_classes(list(classes), backend, "prolab", retry=kwargs.pop("retry", TINY),
                                progress=False, **kwargs)
    finally:
        backend.close()


def test_429_waits_for_retry_after(server, monkeypatch):
    waits = []
    delay = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, *args: waits.append(delay(self, *args)) or waits[-1])
    server.add_faults(Fault("status", 429, {"Retry-After": "1"}, '{"error": {"message": "rate limited"}}'))
    start = time.perf_counter()
    result = run(server)
    assert waits == [1.0]  # the server's Retry-After, not TINY's millisecond backoff
    assert time.perf_counter() - start >= 1.0  # and it really waited that long
    assert result.provenance["per_class"]["car"]["retries"] == 1
    assert server.requests == 2 and len(result.descriptions["car"]) == 5


def test_500_and_malformed_json_are_retried(server):
    server.add_faults(Fault("status", 500, body="upstream exploded"), Fault("malformed"),
                      Fault("status", 502, body="<html>bad gateway</html>"))
    result = run(server)
    assert result.provenance["per_class"]["car"]["retries"] == 3
    assert server.requests == 4 and result.failed == []


def test_malformed_replies_are_retried_twice_not_eight_times(server):
    server.add_faults(*[Fault("malformed")] * 5)
    with pytest.raises(ProlabError, match=r"class 'car': gave up after 3 unreadable replies"):
        run(server, retry=RetryPolicy(max_calls=8, base_delay=0.001, max_delay=0.002))
    assert server.requests == 3


def test_slow_reply_times_out_and_is_retried(server):
    server.add_faults(Fault("slow", delay=1.5))
    result = run(server, timeout=0.3)
    # one retry means the client gave up on the 1.5 s reply instead of waiting for it
    assert result.provenance["per_class"]["car"]["retries"] == 1 and result.failed == []


@pytest.mark.parametrize("status", [400, 409])
def test_4xx_fails_fast_with_the_server_message(server, status):
    server.add_faults(Fault("status", status, body='{"error": {"message": "model fake-model does not exist"}}'))
    with pytest.raises(ProlabError) as info:
        run(server, retry=RetryPolicy(max_calls=5, base_delay=5.0))
    assert f"HTTP {status}: model fake-model does not exist" in info.value.message
    assert server.requests == 1


def test_persistent_503_gives_up_after_max_attempts(server):
    server.add_faults(*[Fault("status", 503, body="overloaded")] * 4)
    with pytest.raises(ProlabError, match=r"class 'car': gave up after 4 attempts: .*HTTP 503: overloaded"):
        run(server)
    assert server.requests == 4


def test_completion_mode_uses_the_completions_endpoint(server):
    backend = resolve_backend("openai:base", base_url=server.base_url, mode="completion")
    result = describe_classes(["car"], backend, "prolab", progress=False)
    assert backend.identity()["mode"] == "completion"
    (prompt,) = server.counts
    assert prompt.endswith("\n\ncar:\n- ")
    assert len(result.descriptions["car"]) == 5


def test_jobs_overlap_calls():
    with FakeOpenAIServer(gate=threading.Barrier(4)) as gated:  # fewer than 4 requests in flight breaks it
        result = run(gated, classes=[f"class {i}" for i in range(8)], jobs=8, timeout=60.0)
        assert gated.requests == 8 and not gated.gate.broken and result.failed == []
        assert gated.peak_in_flight >= 4
    with FakeOpenAIServer(latency=0.05) as serial:
        run(serial, classes=[f"class {i}" for i in range(3)], jobs=1)
        assert serial.requests == 3 and serial.peak_in_flight == 1


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 9 <= parse_retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_key_rules(monkeypatch):
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost/v1")
    assert not is_loopback("https://api.example.com/v1")
    with pytest.raises(ProlabError, match="OPENAI_API_KEY is not set"):
        resolve_backend("gpt-3.5", base_url="https://api.example.com/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    backend = resolve_backend("gpt-3.5", base_url="https://api.example.com/v1")
    assert backend.identity() == {"backend": "openai", "model": "gpt-3.5-turbo", "mode": "chat",
                                  "base_url": "https://api.example.com/v1"}


def test_killed_run_resumes_without_repeating_finished_calls(tmp_path):
    classes = [f"class {i}" for i in range(6)]
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    out = tmp_path / "descriptions.json"
    args = ["describe", "--classes", str(tmp_path / "classes.txt"), "--llm", "openai:fake-model",
            "--jobs", "1", "-q", "-o", str(out)]
    with FakeOpenAIServer(latency=0.3) as server:
        args += ["--base-url", server.base_url]
        proc = subprocess.Popen([sys.executable, "-m", "prolab_cli.cli", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
        deadline = time.time() + 30
        while server.requests < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert server.requests == 3, proc.stderr.read().decode()
        assert not out.exists()
        first_run = dict(server.counts)

        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert list(json.loads(out.read_text())) == classes
        counts = list(server.counts.values())
        # the two replies received before the kill are not asked again; the one in flight may be
        assert len(counts) == 6 and sum(counts) in (6, 7)
        assert sorted(counts)[-2] == 1
        assert sum(1 for n in counts if n == 2) <= 1
        assert "2 cache hits" in result.output and "0 retries" in result.output
        assert len(first_run) == 3


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = resolve_backend("openai:fake-model", base_url=f"http://127.0.0.1:{port}/v1", timeout=2)
    with pytest.raises(ProlabError, match=r"gave up after 4 attempts: .*connection failed"):
        describe_classes(["car"], backend, "prolab", retry=TINY, progress=False)
