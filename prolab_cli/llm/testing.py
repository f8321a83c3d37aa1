"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for fault-injection tests and benchmarks.

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a bullet list derived
from the prompt's hash (distinct prompts get distinct lines), after an optional latency, and
plays queued faults first: an HTTP status with headers and body, a malformed JSON body, or a
reply that arrives too late. It counts every request per prompt, so a test can prove that a
re-run or a resumed run repeats no finished call.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Fault:
    """One scripted misbehaviour: ``status`` (with ``headers`` and ``body``), ``malformed``
    (HTTP 200 with a broken JSON body) or ``slow`` (sleep ``delay`` seconds, then answer)."""

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0


def prompt_of(body: dict[str, Any]) -> str:
    """The prompt text of a request body (all messages, or the completion prompt)."""
    if "messages" in body:
        return "\n".join(str(m.get("content", "")) for m in body["messages"])
    return str(body.get("prompt", ""))


_ASPECTS = ("general look", "shape", "material", "colour", "typical context", "texture", "size", "parts")


def canned_reply(body: dict[str, Any], n: int = 5) -> str:
    """A bullet list of ``n`` (at most 8) lines unique to the request's prompt (and seed)."""
    digest = hashlib.sha256((prompt_of(body) + str(body.get("seed"))).encode()).hexdigest()[:10]
    return "\n".join(f"- {aspect} of subject {digest}" for aspect in _ASPECTS[:n])


class FakeOpenAIServer:
    """Context manager: ``with FakeOpenAIServer(latency=0.2) as server: server.base_url``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        reply: Callable[[dict[str, Any]], str] = canned_reply,
        model: str = "fake-model",
        gate: threading.Barrier | None = None,
    ):
        self.latency = latency
        self.gate = gate  # when set, each request waits until gate.parties requests are in flight
        self.reply = reply
        self.model = model
        self.faults: deque[Fault] = deque()
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def add_faults(self, *faults: Fault) -> None:
        """Queue faults for the next requests, one per request, in order."""
        with self._lock:
            self.faults.extend(faults)

    def start(self) -> "FakeOpenAIServer":
        """Bind a free port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server._handle(self, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            self._answer(handler, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests += 1
            self.counts[prompt_of(body)] += 1
            fault = self.faults.popleft() if self.faults else None
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "status":
            self._send(handler, fault.status, fault.body.encode(), fault.headers)
            return
        if fault is not None and fault.kind == "malformed":
            self._send(handler, 200, b'{"id": "x", "choices": [{"message": ', {})
            return
        text = self.reply(body)
        usage = {"prompt_tokens": len(prompt_of(body).split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if handler.path.rstrip("/").endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
            obj = "text_completion"
        payload = {
            "id": f"fake-{self.requests}", "object": obj, "created": int(time.time()),
            "model": self.model, "choices": [choice], "usage": usage,
        }
        self._send(handler, 200, json.dumps(payload).encode(), {})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
