"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for fault-injection tests and benchmarks.

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a bullet list derived
from the prompt's hash (distinct prompts get distinct lines), after an optional latency, and
plays queued faults first: an HTTP status with headers and body, a malformed JSON body, or a
reply that arrives too late. It counts every request per prompt, so a test can prove that a
re-run or a resumed run repeats no finished call.

It also implements the Batch API: ``POST /v1/files`` (multipart upload), ``POST /v1/batches``,
``GET /v1/batches/{id}`` and ``GET /v1/files/{id}/content``. A batch is worked through in a
background thread (``batch_seconds_per_request`` each), so polling sees it in progress; listed
custom ids fail (``batch_failing``: an HTTP 500 line in the error file) or get an unreadable body
(``batch_malformed``), and a batch can expire after some of its requests (``batch_expire_after``),
leaving a partial output file and ``batch_expired`` lines in the error file, as the real service
does. A batch whose input repeats a custom id, or any batch while ``batch_reject`` holds a message,
fails validation (status ``failed``, nothing run).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
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
        self.http_requests = 0  # every HTTP request, batch endpoints included
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_seconds_per_request = 0.0
        self.batch_failing: set[str] = set()
        self.batch_malformed: set[str] = set()
        self.batch_expire_after: int | None = None
        self.batch_reject: str | None = None
        self._ids = itertools.count(1)
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
            # headers and body go out in two writes: with Nagle on, the second waits for the client's
            # delayed ACK (~40 ms per request on Linux), which would swamp the latency under test
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server._lock:
                    server.http_requests += 1
                if self.path.rstrip("/").endswith("/files"):
                    server._upload(self, raw)
                elif self.path.rstrip("/").endswith("/batches"):
                    server._create_batch(self, json.loads(raw or b"{}"))
                else:
                    server._handle(self, json.loads(raw or b"{}"))

            def do_GET(self) -> None:
                with server._lock:
                    server.http_requests += 1
                server._get(self)

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
        payload = self._completion(body, handler.path.rstrip("/").endswith("/chat/completions"))
        self._send(handler, 200, json.dumps(payload).encode(), {})

    def _completion(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        text = self.reply(body)
        usage = {"prompt_tokens": len(prompt_of(body).split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if chat:
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
            obj = "text_completion"
        return {"id": f"fake-{self.requests}", "object": obj, "created": int(time.time()),
                "model": self.model, "choices": [choice], "usage": usage}

    # --- the Batch API ---------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _upload(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        header = f"Content-Type: {handler.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + raw)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        data = parts["file"].get_payload(decode=True)
        with self._lock:
            file_id = self._new_id("file")
            self.files[file_id] = data
        self._send(handler, 200, json.dumps(self._file_object(file_id, parts["file"].get_filename() or "input.jsonl",
                                                              "batch")).encode(), {})

    def _file_object(self, file_id: str, filename: str, purpose: str) -> dict[str, Any]:
        return {"id": file_id, "object": "file", "bytes": len(self.files[file_id]), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}

    def _create_batch(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].decode().splitlines() if line.strip()]
        with self._lock:
            batch_id = self._new_id("batch")
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                "completion_window": body.get("completion_window", "24h"), "created_at": int(time.time()),
                "input_file_id": body["input_file_id"], "status": "in_progress",
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "output_file_id": None, "error_file_id": None,
            }
        ids = [line.get("custom_id") for line in lines]
        invalid = self.batch_reject or ("duplicate custom_id" if len(set(ids)) != len(ids) else None)
        if invalid:
            with self._lock:
                self.batches[batch_id].update(status="failed", errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": invalid, "param": None, "line": None}]})
        else:
            threading.Thread(target=self._work_batch, args=(batch_id, lines), daemon=True).start()
        self._send(handler, 200, json.dumps(self.batches[batch_id]).encode(), {})

    def _work_batch(self, batch_id: str, lines: list[dict[str, Any]]) -> None:
        batch, done, errors = self.batches[batch_id], [], []
        for n, line in enumerate(lines):
            if self.batch_expire_after is not None and n >= self.batch_expire_after:
                errors.append({"id": f"req-{n}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed"
                                         " before the completion window expired."}})
                continue
            time.sleep(self.batch_seconds_per_request)
            with self._lock:
                self.requests += 1
                self.counts[prompt_of(line["body"])] += 1
            if line["custom_id"] in self.batch_failing:
                errors.append({"id": f"req-{n}", "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "body": {"error": {"message": "server error"}}},
                               "error": None})
                batch["request_counts"]["failed"] += 1
                continue
            body = self._completion(line["body"], line["url"].endswith("/chat/completions"))
            if line["custom_id"] in self.batch_malformed:
                body = {"id": body["id"], "choices": "unreadable"}
            done.append({"id": f"req-{n}", "custom_id": line["custom_id"],
                         "response": {"status_code": 200, "request_id": f"r{n}", "body": body}, "error": None})
            batch["request_counts"]["completed"] += 1
        with self._lock:
            for key, rows in (("output_file_id", done), ("error_file_id", errors)):
                if rows:
                    file_id = self._new_id("file")
                    self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch[key] = file_id
            expired = self.batch_expire_after is not None and len(lines) > self.batch_expire_after
            batch["status"] = "expired" if expired else "completed"

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "batches" and parts[-1] in self.batches:
            with self._lock:
                data = json.dumps(self.batches[parts[-1]]).encode()
            self._send(handler, 200, data, {})
        elif len(parts) >= 3 and parts[-1] == "content" and parts[-2] in self.files:
            self._send(handler, 200, self.files[parts[-2]], {})
        else:
            self._send(handler, 404, json.dumps({"error": {"message": f"no {handler.path}"}}).encode(), {})

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
