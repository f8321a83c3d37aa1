"""What every LLM backend provides, and the two kinds of failure the describe stage tells apart."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..templates import Prompt


@dataclass
class Completion:
    """One reply: its text and what the server said about it."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    model: str | None = None  # the model name the server reported

    def to_json(self) -> dict[str, Any]:
        """JSON form (stored in the cache)."""
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "model": self.model,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Completion":
        """Inverse of :meth:`to_json`."""
        return cls(**{k: data.get(k) for k in ("text", "prompt_tokens", "completion_tokens", "finish_reason", "model")})


class TransientError(Exception):
    """A failure worth retrying: rate limit, server error, timeout, broken connection, garbled reply.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class MalformedReply(TransientError):
    """A reply that arrived but cannot be read (not JSON, no choices): worth a retry or two, not eight
    (a server that answers so usually keeps doing it)."""


class Backend(ABC):
    """An LLM that turns a rendered :class:`~prolab_cli.templates.Prompt` into a :class:`Completion`.

    Subclasses set ``kind`` and ``model``, say which prompt ``mode`` they need ("chat" or
    "completion"), and implement :meth:`complete`, raising :class:`TransientError` for failures
    worth retrying and :class:`~prolab_cli.errors.ProlabError` for the others. ``identity()``
    goes into every cache key, so two backends with the same identity must give the same replies.
    A test backend needs no more than::

        class Canned(Backend):
            kind, model, mode = "canned", "v1", "chat"
            def complete(self, prompt, sampling, seed):
                return Completion("- a\n- b\n- c")
    """

    kind: str = "backend"
    model: str = ""
    mode: str = "chat"
    #: how many calls may run at once (in-process models serialise themselves)
    max_concurrency: int = 64

    def details(self) -> dict[str, Any]:
        """Backend specifics that change replies (base URL, model file hash, ...)."""
        return {}

    def identity(self) -> dict[str, Any]:
        """What determines the replies: kind, model, mode and :meth:`details`."""
        return {"backend": self.kind, "model": self.model, "mode": self.mode, **self.details()}

    @abstractmethod
    def complete(self, prompt: Prompt, sampling: dict[str, Any], seed: int) -> Completion:
        """One call: ``sampling`` has temperature, top_p and max_tokens (any may be absent)."""

    def close(self) -> None:
        """Release what the backend holds (a loaded model, an HTTP pool)."""
