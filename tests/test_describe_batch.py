"""`prolab describe --batch`: the OpenAI Batch API against the local fake server's batch endpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from prolab_cli.cache import Cache
from prolab_cli.cli import main
from prolab_cli.describe import describe_classes
from prolab_cli.llm import RetryPolicy, resolve_backend
from prolab_cli.llm.testing import FakeOpenAIServer

TINY = RetryPolicy(max_calls=4, base_delay=0.001, max_delay=0.005)
CLASSES = [f"class {i}" for i in range(12)]

pytestmark = pytest.mark.usefixtures("no_openai_env")


def describe(server, classes=CLASSES, **kwargs):
    backend = resolve_backend("openai:fake-model", base_url=server.base_url)
    try:
        return describe_classes(list(classes), backend, "prolab", retry=TINY, progress=False, batch_poll=0.02,
                                **kwargs)
    finally:
        backend.close()


def test_a_batch_fills_the_cache_with_the_replies_ordinary_calls_would_get(monkeypatch):
    with FakeOpenAIServer() as server:
        batched = describe(server, batch=True)
        assert server.requests == len(CLASSES)  # each class's reply made once, inside the batch
        assert server.http_requests >= 4  # upload, create, at least one poll, download
        assert batched.provenance["batch"]["cached"] == len(CLASSES)
        assert batched.provenance["totals"]["cache_hits"] == len(CLASSES)
        assert batched.notes == [f"batch: {len(CLASSES)} calls in 1 batch(es); {len(CLASSES)} replies cached"]
    monkeypatch.setenv("PROLAB_CACHE", os.environ["PROLAB_CACHE"] + "-ordinary")  # a cold cache for the other path
    with FakeOpenAIServer() as server:
        ordinary = describe(server)
        assert server.requests == len(CLASSES)
    assert batched.descriptions == ordinary.descriptions


def test_cached_classes_are_not_sent_and_a_rerun_sends_nothing():
    with FakeOpenAIServer() as server:
        describe(server, classes=CLASSES[:5])
        assert server.requests == 5
        result = describe(server, batch=True)
        assert server.requests == len(CLASSES)  # only the 7 new classes went into the batch
        assert result.provenance["batch"]["calls"] == 7
        before = server.http_requests
        again = describe(server, batch=True)
        assert server.http_requests == before and again.provenance["batch"]["calls"] == 0


def first_key(server, name):
    """The reply-cache key (the batch line's custom_id) of ``name``'s first call."""
    from prolab_cli.describe import reply_cache_key
    from prolab_cli.templates import load_template

    backend = resolve_backend("openai:fake-model", base_url=server.base_url)
    template = load_template("prolab")
    sampling = {k: v for k, v in template.sampling.items() if k != "retry_temperature"}
    key = reply_cache_key(backend, template.render(name, backend.mode).as_dict(), sampling, 0)
    backend.close()
    return key


def test_failed_malformed_and_expired_lines_are_made_again_the_ordinary_way():
    with FakeOpenAIServer() as server:
        server.batch_failing = {first_key(server, CLASSES[3])}
        server.batch_malformed = {first_key(server, CLASSES[5])}
        server.batch_expire_after = 9  # of 12: lines 9, 10 and 11 never run
        result = describe(server, batch=True)
        report = result.provenance["batch"]
        assert (report["cached"], report["failed"], report["not_run"]) == (7, 2, 3)
        assert sorted(result.descriptions) == sorted(CLASSES) and not result.failed
        assert server.requests == 9 + 5  # 9 lines ran in the batch, then 5 ordinary calls
        assert "5 left to ordinary calls (2 failed, 3 not run); first error: " in result.notes[0]
        assert "unreadable batch reply" in report["errors"][0] and report["errors"][1] == "HTTP 500: server error"


def test_a_rejected_batch_leaves_every_call_to_the_ordinary_path_and_says_why():
    with FakeOpenAIServer() as server:
        server.batch_reject = "model fake-model is not available in the Batch API"
        result = describe(server, batch=True)
        assert sorted(result.descriptions) == sorted(CLASSES) and server.requests == len(CLASSES)
        assert result.notes[0].endswith(f"{len(CLASSES)} left to ordinary calls (0 failed, {len(CLASSES)} not run);"
                                        " first error: model fake-model is not available in the Batch API")


def test_a_rerun_reattaches_to_the_killed_runs_batch_and_sends_only_what_it_lacks(monkeypatch):
    import prolab_cli.llm.batch as batch_module

    real_wait = batch_module._wait

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run dies while it waits for its batch

    with FakeOpenAIServer() as server:
        monkeypatch.setattr(batch_module, "_wait", killed)
        with pytest.raises(KeyboardInterrupt):
            describe(server, classes=CLASSES[:8], batch=True)
        assert len(server.batches) == 1
        monkeypatch.setattr(batch_module, "_wait", real_wait)
        result = describe(server, batch=True)  # more classes than the killed run had
        report = result.provenance["batch"]
        assert report["reattached"] == 1 and len(report["batches"]) == 2 and report["cached"] == len(CLASSES)
        assert [b["request_counts"]["total"] for b in server.batches.values()] == [8, 4]
        assert server.requests == len(CLASSES) and len(server.files) == 2 + 2  # two uploads, two outputs


def test_a_state_file_of_a_batch_the_server_does_not_know_is_dropped():
    with FakeOpenAIServer() as server:
        keys = [first_key(server, name) for name in CLASSES]
        states = Cache().path.parent / "batches"
        states.mkdir(parents=True, exist_ok=True)
        (states / "stale.json").write_text(json.dumps({
            "format": "prolab.batch-state", "batch_id": "batch-gone", "base_url": server.base_url.rstrip("/"),
            "keys": keys, "created": 0}))
        result = describe(server, batch=True)
        assert result.provenance["batch"]["reattached"] == 0 and result.provenance["batch"]["cached"] == len(CLASSES)
        assert not list(states.glob("*.json"))


def test_the_progress_line_shows_the_batch_counts(capsys):
    with FakeOpenAIServer() as server:
        backend = resolve_backend("openai:fake-model", base_url=server.base_url)
        describe_classes(CLASSES, backend, "prolab", retry=TINY, progress=True, batch=True, batch_poll=0.02)
        backend.close()
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("batch batch-"))
    assert f": {len(CLASSES)}/{len(CLASSES)} req (100%), done in" in line and "status=completed, failed=0" in line


def test_a_killed_run_reattaches_to_its_batch_without_uploading_again(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    out = tmp_path / "descriptions.json"
    with FakeOpenAIServer() as server:
        server.batch_seconds_per_request = 0.2
        args = ["describe", "--classes", str(tmp_path / "classes.txt"), "--llm", "openai:fake-model", "--batch",
                "--batch-poll", "0.05", "--base-url", server.base_url, "-q", "-o", str(out)]
        proc = subprocess.Popen([sys.executable, "-m", "prolab_cli.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=os.environ.copy())
        states = Cache().path.parent / "batches"
        deadline = time.time() + 60
        while not list(states.glob("*.json")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # while it waits for the batch (12 x 0.2 s)
        proc.wait()
        assert len(server.batches) == 1 and len(server.files) == 1, proc.stderr.read().decode()
        state = list(states.glob("*.json"))
        assert len(state) == 1 and json.loads(state[0].read_text())["batch_id"] in server.batches

        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert len(server.batches) == 1  # reattached: no second upload, no second batch
        assert "1 reattached after an interruption" in result.output
        assert list(json.loads(out.read_text())) == CLASSES and server.requests == len(CLASSES)
        assert not list((Cache().path.parent / "batches").glob("*.json"))  # the state file is gone


@pytest.mark.parametrize("llm", [None, "local", "llama-cpp:/no/such/model.gguf"])
def test_batch_needs_an_openai_compatible_backend(tmp_path, llm):
    args = ["describe", "--classes", "cityscapes", "--batch", "-o", str(tmp_path / "d.json")]
    res = CliRunner().invoke(main, args + (["--llm", llm] if llm else []))
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--batch needs an OpenAI-compatible API" in res.stderr and f"not --llm {llm or 'shipped'}" in res.stderr


def test_batch_needs_an_openai_compatible_backend_in_code_too():
    from prolab_cli.errors import ProlabError
    from prolab_cli.llm.base import Backend

    class Local(Backend):
        kind, model, mode = "llama", "m", "chat"

        def complete(self, prompt, sampling, seed):
            raise AssertionError("no call expected")

    with pytest.raises(ProlabError, match="describe.batch needs an OpenAI-compatible API, not the llama backend"):
        describe_classes(CLASSES, Local(), "prolab", batch=True, progress=False)


def test_batch_calls_are_split_at_the_limit_of_one_batch():
    from prolab_cli.llm.batch import BatchCall, run_batch
    from prolab_cli.templates import Prompt

    with FakeOpenAIServer() as server:
        backend = resolve_backend("openai:fake-model", base_url=server.base_url)
        calls = [BatchCall(f"key{i}", *backend.request(Prompt("chat", (("user", f"c{i}"),)), {}, 0)) for i in range(5)]
        stored = {}
        report = run_batch(backend, calls, Cache(), stored.__setitem__, poll_seconds=0.02, progress=False,
                           max_per_batch=2)
        backend.close()
    assert len(report.batches) == 3 and report.cached == 5 and sorted(stored) == [f"key{i}" for i in range(5)]


def test_calls_that_share_a_key_go_in_once():
    from prolab_cli.llm.batch import BatchCall, run_batch
    from prolab_cli.templates import Prompt

    with FakeOpenAIServer() as server:  # it fails a batch that repeats a custom_id, as the real one does
        backend = resolve_backend("openai:fake-model", base_url=server.base_url)
        call = BatchCall("same", *backend.request(Prompt("chat", (("user", "c"),)), {}, 0))
        stored = {}
        report = run_batch(backend, [call, call], Cache(), stored.__setitem__, poll_seconds=0.02, progress=False)
        backend.close()
    assert report.calls == 1 and report.cached == 1 and list(stored) == ["same"]
