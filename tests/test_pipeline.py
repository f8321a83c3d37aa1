"""``prolab pipeline``: describe (injected LLM) -> embed (MiniLM) -> cluster -> build, with stage skipping."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.cli import main
from prolab_cli.embed import get_encoder, resolve_model
from prolab_cli.errors import ProlabError
from prolab_cli.llm import Backend, Completion
from prolab_cli.pipeline import load_pipeline_config, run_pipeline

ANSWERS = {
    "road": ["flat grey asphalt surface", "painted white lane markings", "cars drive on it"],
    "car": ["four rubber wheels", "shiny painted metal body", "glass windows and doors"],
    "sky": ["blue expanse above the horizon", "white fluffy clouds", "bright sunlight during the day"],
    "tree": ["tall brown woody trunk", "green leaves on branches", "grows in parks and forests"],
}


class Canned(Backend):
    """Answers the naive template's prompt from ANSWERS; records the classes asked."""

    kind, model, mode = "canned", "v1", "chat"

    def __init__(self):
        self.calls: list[str] = []

    def complete(self, prompt, sampling, seed):
        name = re.search(r"Describe (.+?)\. Answer", prompt.messages[-1][1]).group(1)
        self.calls.append(name)
        return Completion("\n".join(f"- {line}" for line in ANSWERS[name]), 10, 10, "stop")


@pytest.fixture
def counted(monkeypatch):
    encoder = get_encoder(resolve_model("minilm"), "sentence-transformers", "mean")
    seen: list[str] = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, bs: seen.extend(texts) or original(texts, bs))
    return seen


def _config(tmp_path, **cluster) -> dict:
    (tmp_path / "classes.txt").write_text("\n".join(ANSWERS) + "\n")
    return {
        "name": "toy-minilm-k6",
        "out_dir": "spaces",
        "work_dir": "work",
        "describe": {"classes": "classes.txt", "llm": "local", "template": "naive", "min": 3},
        "embed": {"model": "minilm", "batch_size": 8},
        "cluster": {"k": 6, "seed": 0, **cluster},
    }


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_pipeline_runs_then_skips_unchanged_stages(tmp_path, counted):
    config = _write(tmp_path, _config(tmp_path))
    llm = Canned()
    first = run_pipeline(config, backend=llm, echo=lambda s: None, progress=False)
    assert first.ran == {"describe": True, "embed": True, "cluster": True, "build": True}
    assert sorted(llm.calls) == sorted(ANSWERS)
    assert first.path == tmp_path / "spaces" / "toy-minilm-k6"
    space = LabelSpace.load(first.path)
    assert space.classes == list(ANSWERS) and space.num_properties == 6 and space.dim == 384
    assert space.descriptions["car"] == ANSWERS["car"]
    prov = space.manifest["provenance"]
    assert prov["describe"]["backend"]["backend"] == "canned"
    assert prov["embed"]["model"] == "minilm" and prov["cluster"]["k"] == 6
    assert len(counted) == 16  # 12 descriptions + 4 class names

    llm2, lines = Canned(), []
    counted.clear()
    second = run_pipeline(config, backend=llm2, echo=lines.append, progress=False)
    assert second.ran == dict.fromkeys(("describe", "embed", "cluster", "build"), False)
    assert llm2.calls == [] and counted == []
    assert "build: unchanged, skipped" in lines
    assert second.space.version == first.space.version

    # a new K re-runs cluster and build only
    config = _write(tmp_path, _config(tmp_path, k=5))
    third = run_pipeline(config, backend=Canned(), echo=lambda s: None, progress=False)
    assert third.ran == {"describe": False, "embed": False, "cluster": True, "build": True}
    assert third.space.num_properties == 5 and counted == []

    # a damaged artifact is rebuilt
    tensors = third.path / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-4])
    fourth = run_pipeline(config, backend=Canned(), echo=lambda s: None, progress=False)
    assert fourth.ran["build"] and not fourth.ran["cluster"]
    assert LabelSpace.load(fourth.path).version == third.space.version


def test_pipeline_cli_from_a_descriptions_file(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ANSWERS))
    cfg = {"name": "from-file", "descriptions": "d.json", "work_dir": "w", "out_dir": "o",
           "cluster": {"k": 6}, "embed": {"model": "minilm"}}
    config = _write(tmp_path, cfg)
    res = CliRunner().invoke(main, ["pipeline", config])
    assert res.exit_code == 0, res.output
    space = LabelSpace.load(tmp_path / "o" / "from-file")
    assert space.version in res.output
    assert space.manifest["provenance"]["describe"]["descriptions_file"] == "d.json"
    res = CliRunner().invoke(main, ["pipeline", config])
    assert res.output.count("unchanged, skipped") == 3  # embed, cluster, build (no describe stage)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"name": ""}, "'name' '': must be a plain name"),
        ({"name": "../up"}, "'name' '../up': must be a plain name"),
        ({"descriptions": "d.json"}, "exactly one of 'describe'"),
        ({"cluster": {}}, "'cluster.k'"),
        ({"cluster": {"k": True}}, "'cluster.k'"),
        ({"work_dir": ["w"]}, "'work_dir' must be a path, not list"),
        ({"describe": {"classes": ["road", "car"]}}, "'describe.classes' must be a string or null, not list"),
        ({"describe": {"template": "naive"}}, "'describe.classes' is required"),
        ({"embed": {"modle": "minilm"}}, r"unknown key 'embed.modle' \(did you mean 'embed.model'\?\)"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_configs(tmp_path, change, match):
    cfg = _config(tmp_path)
    cfg.update(change)
    with pytest.raises(ProlabError, match=match):
        load_pipeline_config(_write(tmp_path, cfg))
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ProlabError, match="malformed YAML"):
        load_pipeline_config(tmp_path / "bad.yaml")


def test_describe_key_follows_the_gguf_content(tmp_path):
    from prolab_cli.pipeline import _llm_identity
    from prolab_cli.stage_options import DescribeOptions

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights v1" * 100)
    before = _llm_identity(DescribeOptions(llm=f"llama-cpp:{gguf}"))
    gguf.write_bytes(b"weights v2" * 100)  # new weights at the same path
    assert _llm_identity(DescribeOptions(llm=f"llama-cpp:{gguf}")) != before
