"""Options have one typed definition: the training config schema (YAML and ``--set`` checked against
it), one options dataclass per label-space stage shared by the CLI and the pipeline YAML, and
engine entry points whose options are keyword-only."""

from __future__ import annotations

import dataclasses
import types
import typing

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from prolab_cli.pipeline import DescribeSection, load_pipeline_config as load_pipeline
from prolab_cli.stage_options import DEFAULT_OUT_DIR, BuildOptions, ClusterOptions, DescribeOptions, EmbedOptions
from segmentation.engine.config import (
    TrainingConfig, apply_overrides, apply_resume_overrides, check_config, load_config, config_names,
)

# --- training config ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nano() -> dict:
    return load_config("synth-vit-adapter-nano")


@pytest.mark.parametrize("item, message", [
    ("optim.lrr=1", r"unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"),
    ("schedule.max_iter=5", r"unknown key 'schedule.max_iter' \(did you mean 'schedule.max_iters'\?\)"),
    ("modle.head=onehot", r"unknown key 'modle.head' \(did you mean 'model.head'\?\)"),
    ("optim.lr=fast", r"'optim.lr' must be a number, not str 'fast'"),
    ("schedule.max_iters=1.5", r"'schedule.max_iters' must be an integer, not float"),
    ("train.amp=fp32", r"'train.amp' must be one of none, fp16, bf16"),
    ("data.crop_size=[64, 64, 3]", r"'data.crop_size' must be a pair \[A, B\] of integers"),
    ("data.photometric=1", r"'data.photometric' must be a boolean"),
    ("optim=1", r"'optim' is a section"),
])
def test_set_refuses_unknown_keys_and_wrong_types(nano, item, message):
    with pytest.raises(ProlabError, match=message) as info:
        apply_overrides(nano, [item])
    assert "\n" not in str(info.value) and str(info.value).startswith(f"train.overrides {item!r}: ")


def test_set_values_take_the_schema_type(nano):
    cfg = apply_overrides(nano, ["optim.lr=1e-4", "schedule.max_iters=7", "test.size_divisor=32",
                                 "train.init_from=null", "model.kwargs={drop_path_rate: 0.1}"])
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and isinstance(cfg["optim"]["lr"], float)  # YAML reads 1e-4 as text
    assert cfg["schedule"]["max_iters"] == 7 and cfg["test"]["size_divisor"] == 32
    assert cfg["model"]["kwargs"] == {"drop_path_rate": 0.1} and nano["optim"]["lr"] == 2e-3


def test_resume_overrides_are_checked_too(nano):
    with pytest.raises(ProlabError, match=r"'schedule.max_iters' must be an integer"):
        apply_resume_overrides(nano, ["schedule.max_iters=many"])
    with pytest.raises(ProlabError, match=r"did you mean 'schedule.warmup_iters'"):
        apply_resume_overrides(nano, ["schedule.warmup_iter=3"])
    assert apply_resume_overrides(nano, ["schedule.max_iters=400"])["schedule"]["max_iters"] == 400


def _yaml(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_config_files_are_checked_against_the_schema(tmp_path):
    ok = load_config(_yaml(tmp_path, "base: synth-vit-adapter-nano\noptim: {lr: 1e-3}\n"))
    assert ok["optim"]["lr"] == 1e-3 and ok["model"]["preset"] == "vit-adapter-nano"
    path = _yaml(tmp_path, "base: synth-vit-adapter-nano\noptim: {lrr: 1.0e-3}\n")
    with pytest.raises(ProlabError, match=rf"{path}: unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        load_config(path)
    with pytest.raises(ProlabError, match=r"'schedule.max_iters' must be an integer, not str 'long'"):
        load_config(_yaml(tmp_path, "base: _base\nschedule: {max_iters: long}\n"))
    with pytest.raises(ProlabError, match=r"'test.mode' must be one of slide, whole"):
        load_config(_yaml(tmp_path, "base: _base\ntest: {mode: tiled}\n"))
    with pytest.raises(ProlabError, match=r"missing key 'model'"):  # no base: no defaults
        load_config(_yaml(tmp_path, "dataset: ade20k\n"))


def test_base_yaml_is_the_one_home_of_the_defaults():
    hints = typing.get_type_hints(TrainingConfig)
    sections = [hints[f.name] for f in dataclasses.fields(TrainingConfig) if dataclasses.is_dataclass(hints[f.name])]
    assert [s.__name__ for s in sections] == ["ModelSection", "LabelSpaceSection", "DataSection", "TestSection",
                                              "OptimSection", "ScheduleSection", "TrainSection"]
    for cls in [TrainingConfig, *sections]:  # the schema holds types only; the values are the YAML files'
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (cls, f.name)
    for name in config_names():  # every shipped config resolves to a complete, well-typed config
        cfg = load_config(name)
        assert check_config(cfg) == cfg


def test_the_train_command_refuses_a_misspelt_set(tmp_path):
    result = CliRunner().invoke(main, ["train", "--data-root", str(tmp_path), "--work-dir", str(tmp_path / "w"),
                                       "--config", "synth-vit-adapter-nano", "--set", "optim.lrr=1"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --set 'optim.lrr=1': unknown key 'optim.lrr' (did you mean 'optim.lr'?)"


# --- engine entry points -----------------------------------------------------------------------


def test_engine_options_are_keyword_only(tmp_path, nano):
    from segmentation.engine.evaluate import evaluate
    from segmentation.engine.predict import predict
    from segmentation.engine.train import train

    import inspect

    # what may be given by position: the inputs; every option is keyword-only (the old positional
    # (checkpoint, dataset, data_root) order of evaluate cannot come back unnoticed)
    for function, positional in ((train, ["config", "data_root"]), (evaluate, ["checkpoint", "data_root"]),
                                 (predict, ["images", "checkpoint"])):
        params = inspect.signature(function).parameters.values()
        assert [p.name for p in params if p.kind is not p.KEYWORD_ONLY] == positional, function.__name__
    with pytest.raises(ProlabError, match=r"unknown key 'optim.lrr'"):
        train(dict(nano, optim=dict(nano["optim"], lrr=1)), tmp_path, work_dir=tmp_path / "w")
    with pytest.raises(ProlabError, match=r"'train.seed' must be an integer"):
        train(dict(nano, train=dict(nano["train"], seed="0")), tmp_path, work_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()  # refused before anything was written


# --- label-space stages ------------------------------------------------------------------------


def _pipeline(tmp_path, **sections):
    cfg = {"name": "toy", "descriptions": "d.json", "cluster": {"k": 2}, **sections}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("section, message", [
    ({"describe": {"classes": "cityscapes", "attempt": 5}, "descriptions": None},
     r"unknown key 'describe.attempt' \(did you mean 'describe.attempts'\?\)"),
    ({"embed": {"batchsize": 8}}, r"unknown key 'embed.batchsize' \(did you mean 'embed.batch_size'\?\)"),
    ({"cluster": {"k": 2, "sead": 1}}, r"unknown key 'cluster.sead' \(did you mean 'cluster.seed'\?\)"),
    ({"build": {"allow_collision": True}}, r"did you mean 'build.allow_collisions'\?"),
    ({"out_dri": "x"}, r"unknown key 'out_dri' \(did you mean 'out_dir'\?\)"),
    ({"embed": {"batch_size": "big"}}, r"'embed.batch_size' must be an integer, not str 'big'"),
    ({"cluster": {"k": 2.5}}, r"'cluster.k' must be an integer or null, not float"),
    ({"describe": {"classes": "cityscapes", "mode": "fewshot"}, "descriptions": None},
     r"'describe.mode' must be one of auto, chat, completion"),
])
def test_pipeline_yaml_is_checked_against_the_stage_options(tmp_path, section, message):
    (tmp_path / "d.json").write_text("{}")
    path = _pipeline(tmp_path, **section)
    with pytest.raises(ProlabError, match=message) as info:
        load_pipeline(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


@pytest.fixture
def captured(monkeypatch):
    """Replace each stage function by one that records the options the CLI built."""
    import prolab_cli.build
    import prolab_cli.cluster
    import prolab_cli.describe
    import prolab_cli.embed

    got: dict = {}

    class _Result:
        failed: list = []
        notes: list = []

        def summary(self):
            return "ok"

    class _Space:
        version, num_classes, num_properties, dim = "v", 2, 2, 4

        def collisions(self):
            return []

    def fake(name, result):
        def run(*args, **kwargs):
            got[name] = kwargs["options"]
            return result
        return run

    monkeypatch.setattr(prolab_cli.describe, "run_describe", fake("describe", _Result()))
    embedded = types.SimpleNamespace(report=lambda output: "embedded")
    monkeypatch.setattr(prolab_cli.embed, "run_embed", fake("embed", (embedded, [])))
    monkeypatch.setattr(prolab_cli.cluster, "run_cluster", fake("cluster", "clustered"))
    monkeypatch.setattr(prolab_cli.build, "run_build", fake("build", (_Space(), "out")))
    return got


def test_cli_without_flags_and_minimal_yaml_give_the_same_options(tmp_path, captured):
    runner = CliRunner()
    for args in (["describe", "--classes", "cityscapes", "-o", str(tmp_path / "d.json")],
                 ["embed", str(tmp_path / "d.json"), "-o", str(tmp_path / "e")],
                 ["cluster", str(tmp_path / "e"), "-k", "2", "-o", str(tmp_path / "c")],
                 ["build", "--embeddings", "e", "--clusters", "c", "--name", "toy"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    assert captured["embed"] == EmbedOptions()
    (tmp_path / "d.json").write_text("{}")
    from_yaml = load_pipeline(_pipeline(tmp_path))
    assert (from_yaml.embed, from_yaml.cluster, from_yaml.build) == (captured["embed"], captured["cluster"],
                                                                     captured["build"])
    assert from_yaml.cluster == ClusterOptions(k=2) and from_yaml.out_dir.name == DEFAULT_OUT_DIR
    described = load_pipeline(_pipeline(tmp_path, describe={"classes": "cityscapes"}, descriptions=None)).describe
    assert isinstance(described, DescribeSection) and described.classes == "cityscapes"
    assert DescribeOptions(**{k: v for k, v in dataclasses.asdict(described).items() if k != "classes"}) \
        == captured["describe"] == DescribeOptions()


def test_a_flag_given_sets_its_field(tmp_path, captured):
    runner = CliRunner()
    result = runner.invoke(main, ["embed", "d.json", "-o", "e", "--batch-size", "8", "--no-lowercase", "--drop-empty"])
    assert result.exit_code == 0, result.output
    assert captured["embed"] == EmbedOptions(batch_size=8, lowercase=False, drop_empty=True)
    result = runner.invoke(main, ["describe", "--classes", "cityscapes", "-o", str(tmp_path / "d.json"), "--min", "2",
                                  "--max-retries", "0", "--temperature", "0.5"])
    assert result.exit_code == 0, result.output
    assert captured["describe"] == DescribeOptions(min=2, max_retries=0, sampling={"temperature": 0.5})
    assert captured["describe"].retry_policy().max_calls == 1


@pytest.mark.parametrize("command, cls, params", [
    ("describe", DescribeOptions, {"min": "min_descriptions"}),
    ("embed", EmbedOptions, {}),
    ("import-properties", EmbedOptions, {}),
    ("cluster", ClusterOptions, {}),
    ("build", BuildOptions, {}),
])
def test_help_shows_the_options_defaults(command, cls, params):
    """A flag's ``default=`` is only what ``--help`` shows (a flag left out takes the dataclass
    default): the two must agree."""
    cmd = main.get_command(click.Context(main), command)
    ctx = click.Context(cmd)
    flags = {p.name: p for p in cmd.params}
    compared = 0
    for f in dataclasses.fields(cls):
        param = flags.get(params.get(f.name, f.name))
        if param is None:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        shown = param.get_default(ctx)
        assert shown == default, f"{command} --{param.name}: {shown!r} != {default!r}"
        compared += 1
    assert compared >= {"describe": 13, "embed": 8, "import-properties": 6, "cluster": 3, "build": 1}[command]
    if "out_dir" in flags:
        assert flags["out_dir"].get_default(ctx) == DEFAULT_OUT_DIR
