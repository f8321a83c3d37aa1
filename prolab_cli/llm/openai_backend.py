"""OpenAI-compatible chat/completions endpoints (OpenAI, vLLM, llama.cpp server, Ollama) via ``openai``.

The client's own retries are off (``max_retries=0``): the describe stage retries, so it can
count retries, honour Retry-After and stop early. 429, 5xx, timeouts (408 included), connection
errors and unreadable replies are :class:`TransientError`; any other 4xx (409 included, which
the openai client itself would retry) is a :class:`RemoteCallError` carrying the server's message.

API key: ``OPENAI_API_KEY``. When it is unset and ``--base-url`` points at this machine
(127.0.0.1, localhost, ::1), a placeholder key is sent, since local servers do not check it.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import ProlabError, RemoteCallError
from ..extras import require
from ..templates import Prompt
from .base import Backend, Completion, MalformedReply, TransientError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "sk-local-no-key"
_RETRYABLE_STATUS = {408, 429}  # 408 is a request timeout; 5xx are handled by range


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is this machine."""
    host = (urlparse(url).hostname or "").lower()
    return host in {"localhost", "::1"} or host.startswith("127.")


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class OpenAIBackend(Backend):
    """Chat (or legacy completions) calls to an OpenAI-compatible server."""

    kind = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        mode: str = "chat",
    ):
        openai = require("openai", "the OpenAI backend (--llm NAME, openai:NAME, --base-url)")
        if mode not in ("chat", "completion"):
            raise ProlabError(f"describe.mode for an OpenAI-compatible server must be chat or completion, not {mode!r}")
        self._openai = openai
        self.model = model
        self.mode = mode
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not is_loopback(self.base_url):
                raise ProlabError(
                    f"OPENAI_API_KEY is not set (needed for {self.base_url}); export it, or use describe.llm local"
                )
            key = LOCAL_PLACEHOLDER_KEY
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0)

    def details(self) -> dict[str, Any]:
        return {"base_url": self.base_url}

    def request(self, prompt: Prompt, sampling: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) of one call: what :meth:`complete` sends and what a line of a
        Batch API input file holds."""
        options = {k: sampling[k] for k in ("temperature", "top_p", "max_tokens") if k in sampling}
        if prompt.mode == "chat":
            messages = [{"role": role, "content": content} for role, content in prompt.messages]
            return "/v1/chat/completions", {"model": self.model, "messages": messages, "seed": seed, **options}
        body = {"model": self.model, "prompt": prompt.text, "seed": seed, **options}
        if prompt.stop:
            body["stop"] = list(prompt.stop)
        return "/v1/completions", body

    def complete(self, prompt: Prompt, sampling: dict[str, Any], seed: int) -> Completion:
        endpoint, body = self.request(prompt, sampling, seed)
        create = self.client.chat.completions.create if endpoint == "/v1/chat/completions" else \
            self.client.completions.create
        return self._completion(self.send(lambda: create(**body)))

    def send(self, call: Callable[[], Any], *, missing_ok: bool = False) -> Any:
        """``call()`` (one request through the openai client), its failures as prolab errors: a
        429/5xx, a timeout or a dropped connection as :class:`TransientError` (the caller retries),
        an unreadable body as :class:`MalformedReply`, any other failure as
        :class:`RemoteCallError` with the server's message. With ``missing_ok`` a 404 gives None."""
        openai = self._openai
        try:
            return call()
        except openai.NotFoundError as exc:
            if missing_ok:
                return None
            raise self._status_error(exc) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise TransientError(f"{self.base_url}: request timed out") from None
        except openai.APIConnectionError as exc:
            raise TransientError(f"{self.base_url}: connection failed ({exc.__cause__ or exc})") from None
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            raise MalformedReply(f"{self.base_url}: unreadable reply ({exc})") from None
        except openai.OpenAIError as exc:
            raise RemoteCallError(f"{self.base_url}: request failed ({exc})") from None

    def completion_from_body(self, endpoint: str, body: Any) -> Completion:
        """The :class:`Completion` in a response body of ``endpoint`` (a Batch API output line's)."""
        types = self._openai.types
        model = types.chat.ChatCompletion if endpoint == "/v1/chat/completions" else types.Completion
        try:
            reply = model.model_validate(body)
        except Exception as exc:  # pydantic's ValidationError, whatever the openai version
            raise MalformedReply(f"{self.base_url}: unreadable batch reply ({str(exc)[:120]})") from None
        return self._completion(reply)

    def _completion(self, reply: Any) -> Completion:
        openai = self._openai
        if not isinstance(reply, (openai.types.chat.ChatCompletion, openai.types.Completion)):
            raise MalformedReply(f"{self.base_url}: unreadable reply ({str(reply)[:80]!r})")
        try:
            choice = reply.choices[0]
            text = (choice.message.content if isinstance(reply, openai.types.chat.ChatCompletion) else choice.text) or ""
        except (IndexError, AttributeError, TypeError) as exc:
            raise MalformedReply(f"{self.base_url}: reply without choices ({exc})") from None
        usage = getattr(reply, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason=getattr(choice, "finish_reason", None),
            model=getattr(reply, "model", None),
        )

    def _status_error(self, exc: Any) -> Exception:
        status = exc.status_code
        message = _server_message(exc)
        if status in _RETRYABLE_STATUS or status >= 500:
            return TransientError(
                f"{self.base_url}: HTTP {status}: {message}",
                retry_after=parse_retry_after(getattr(exc.response, "headers", None)),
            )
        return RemoteCallError(f"{self.base_url} (model {self.model}): HTTP {status}: {message}")

    def close(self) -> None:
        self.client.close()


def _server_message(exc: Any) -> str:
    """The server's own error message, on one line."""
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    if not message:
        try:
            message = exc.response.text.strip()
        except Exception:  # a streamed or closed response has no text to show
            message = None
    if not message:
        message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:500]
