"""Backend selection and the llama.cpp repeat guard, without loading a model."""

from __future__ import annotations

import pytest

from prolab_cli.errors import ProlabError
from prolab_cli.llm import ALIASES, resolve_backend
from prolab_cli.llm.base import Completion
from prolab_cli.llm.llama_backend import RepeatGuard


class Pieces:
    """Token id i decodes to ``pieces[i]``."""

    def __init__(self, pieces):
        self.pieces = pieces

    def detokenize(self, ids):
        return "".join(self.pieces[i] for i in ids).encode()


def feed(guard, pieces, prompt_len=3):
    """Call the guard as llama.cpp does; return how many generated pieces it let through."""
    ids = list(range(prompt_len))
    assert guard(ids, None) is False
    for i in range(prompt_len, len(pieces)):
        ids.append(i)
        if guard(ids, None):
            return i - prompt_len + 1
    return None


def test_repeat_guard_stops_at_a_repeated_line_ignoring_numbers():
    pieces = ["P", "R", "O", "1st floor", "\n- ", "2nd floor", "\n- ", "3rd floor", "\n"]
    assert feed(RepeatGuard(Pieces(pieces)), pieces) == 4  # after "2nd floor\n"


def test_repeat_guard_lets_distinct_lines_through():
    pieces = ["P", "R", "O", "Four wheels", "\n- ", "Metal body", "\n- ", "Headlights", "\n"]
    guard = RepeatGuard(Pieces(pieces))
    assert feed(guard, pieces) is None and not guard.fired


def test_repeat_guard_stops_a_runaway_line():
    pieces = ["P", "R", "O"] + ["1-2-"] * 100
    assert feed(RepeatGuard(Pieces(pieces), max_chars=40), pieces) == 11


def test_llm_names(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert ALIASES["gpt-3.5"] == "gpt-3.5-turbo"
    assert resolve_backend("gpt-3.5").model == "gpt-3.5-turbo"
    assert resolve_backend("openai:gpt-3.5").model == "gpt-3.5-turbo"
    backend = resolve_backend("openai:my-model", base_url="http://127.0.0.1:9/v1/", mode="completion")
    assert backend.identity() == {"backend": "openai", "model": "my-model", "mode": "completion",
                                  "base_url": "http://127.0.0.1:9/v1"}
    for spec, message in [("", "empty model name"), ("openai:", "needs a model name")]:
        with pytest.raises(ProlabError, match=message):
            resolve_backend(spec)
    with pytest.raises(ProlabError, match="completion mode only"):
        resolve_backend("local", mode="chat")


def test_completion_json_round_trip():
    reply = Completion("- a", 3, 1, "stop", "m")
    assert Completion.from_json(reply.to_json()) == reply
