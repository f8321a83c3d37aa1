"""Local GGUF models through llama-cpp-python: chat mode when the GGUF carries a chat template,
few-shot completion otherwise (base models such as the offline default Gemma-3-270M)."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..cache import weights_fingerprint
from ..errors import ProlabError
from ..extras import require
from ..templates import Prompt
from .base import Backend, Completion
from .replies import repeat_key


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collect what C code writes to fd 2 (llama.cpp's load-time chatter); the lines are
    handed to the caller, who shows them only when loading fails."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


class RepeatGuard:
    """A llama.cpp stopping criterion for base models, which loop at temperature 0: stop once a
    finished line repeats an earlier one (:func:`~prolab_cli.llm.replies.repeat_key`, the key
    validation drops duplicates by, so "3rd floor" repeats "2nd floor") or a line grows past
    ``max_chars`` (validation would drop it anyway)."""

    def __init__(self, llm: Any, max_chars: int = 300):
        self.llm = llm
        self.max_chars = max_chars
        self.prompt_tokens: int | None = None
        self.fired = False

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
            return False
        text = self.llm.detokenize(list(input_ids[self.prompt_tokens:])).decode("utf-8", "ignore")
        *done, current = text.split("\n")
        if len(current) > self.max_chars:
            self.fired = True
        elif len(done) >= 2:
            keys = [repeat_key(line.lstrip("-*• ")) for line in done]
            self.fired = bool(keys[-1]) and keys[-1] in keys[:-1]
        return self.fired


class LlamaCppBackend(Backend):
    """An in-process llama.cpp model; calls are serialised (one context, not thread-safe)."""

    kind = "llama-cpp"
    max_concurrency = 1

    def __init__(
        self,
        model_path: str | Path,
        *,
        mode: str = "auto",
        threads: int = 1,
        n_ctx: int = 2048,
        fingerprint: str | None = None,
        kind: str | None = None,
    ):
        Llama = require("llama_cpp", "a local GGUF model (--llm local, llama-cpp:PATH)").Llama
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ProlabError(f"{path}: GGUF model file not found")
        if mode not in ("auto", "chat", "completion"):
            raise ProlabError(f"describe.mode must be auto, chat or completion, not {mode!r}")
        if kind:
            self.kind = kind
        self.path = path
        self.model = path.name
        self._fingerprint = fingerprint or weights_fingerprint(path)
        self._lock = threading.Lock()
        try:
            with _captured_stderr() as log:
                self.llm = Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                    seed=0, verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            reason = next((line for line in reversed(log) if line.strip()), "")
            raise ProlabError(
                f"{path}: llama.cpp cannot load this model ({exc}{'; ' + reason if reason else ''})"
            ) from None
        has_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        if mode == "auto":
            mode = "chat" if has_template else "completion"
        elif mode == "chat" and not has_template:
            raise ProlabError(f"{path}: describe.mode chat needs a GGUF with a chat template (this one has none)")
        self.mode = mode

    def details(self) -> dict[str, Any]:
        return {"gguf": self._fingerprint}

    def complete(self, prompt: Prompt, sampling: dict[str, Any], seed: int) -> Completion:
        options: dict[str, Any] = {"seed": seed}
        for key in ("temperature", "top_p", "max_tokens"):
            if key in sampling:
                options[key] = sampling[key]
        with self._lock:
            try:
                if prompt.mode == "chat":
                    reply = self.llm.create_chat_completion(
                        messages=[{"role": r, "content": c} for r, c in prompt.messages], **options
                    )
                    choice = reply["choices"][0]
                    text = choice["message"].get("content") or ""
                else:
                    from llama_cpp import StoppingCriteriaList

                    guard = RepeatGuard(self.llm)
                    reply = self.llm.create_completion(
                        prompt.text, stop=list(prompt.stop) or None,
                        stopping_criteria=StoppingCriteriaList([guard]), **options,
                    )
                    choice = reply["choices"][0]
                    text = choice.get("text") or ""
            except ValueError as exc:  # e.g. prompt longer than the context
                raise ProlabError(f"{self.path.name}: {exc} (raise describe.n_ctx)") from None
        usage = reply.get("usage") or {}
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
            model=self.model,
        )

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
