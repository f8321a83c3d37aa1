"""`prolab train --init-from CKPT`: a run that starts from another run's model weights (mmseg's
load_from, the BEiTv2-L recipe) with a fresh optimiser, schedule and iteration count."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation.engine.checkpoint import load_checkpoint
from segmentation.engine.train import train

from conftest import synth_world, tiny_config

SETS = {"schedule.warmup_iters": 1, "data.batch_size": 2, "train.log_interval": 1, "train.ckpt_interval": 1000}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("init")
    world = synth_world(root, num_train=8, size=64, num_heldout=0, seed=2)
    data, space = world["data"], world["seen"]
    train(tiny_config(64, **SETS, **{"schedule.max_iters": 3}), data, work_dir=root / "first", label_space=space,
          progress=False)
    return {"root": root, "data": data, "space": space, "ckpt": load_checkpoint(root / "first")}


def _cli_train(first_run, work, *extra):
    sets = [a for k, v in {**SETS, "schedule.max_iters": 1, "optim.lr": 0}.items() for a in ("--set", f"{k}={v}")]
    return CliRunner().invoke(main, ["train", "--config", "synth-vit-adapter-nano", "--data-root", str(first_run["data"]),
                                     "--label-space", str(first_run["space"]), "--work-dir", str(work), "--device", "cpu",
                                     "-q", *sets, *extra])


def test_init_from_loads_the_model_weights_and_starts_a_fresh_run(first_run, tmp_path):
    res = _cli_train(first_run, tmp_path / "second", "--init-from", str(first_run["root"] / "first"))
    assert res.exit_code == 0, res.output
    assert "initialised the model from" in res.output and "(iteration 3 of its run)" in res.output
    second = load_checkpoint(tmp_path / "second")
    assert second["iteration"] == 1
    assert second["config"]["train"]["init_from"] == str((first_run["root"] / "first").resolve())
    # lr 0: one step leaves every parameter where the first run left it (BN statistics still move)
    params = {name for name, _ in torch.nn.Module.named_parameters(_model_of(second))}
    for name in params:
        assert torch.equal(second["state_dict"][name], first_run["ckpt"]["state_dict"][name]), name
    assert all(s["step"].item() == 1 for s in second["optimizer"]["state"].values())
    scratch = _cli_train(first_run, tmp_path / "scratch")
    assert scratch.exit_code == 0, scratch.output
    fresh = load_checkpoint(tmp_path / "scratch")
    assert not torch.equal(fresh["state_dict"]["decode_head.conv_seg.weight"],
                           first_run["ckpt"]["state_dict"]["decode_head.conv_seg.weight"])


def test_init_from_a_path_that_yaml_would_misread_is_taken_as_it_is(first_run, tmp_path):
    import shutil

    odd = tmp_path / "run #1: first"  # unquoted, YAML would cut at '#' or read a mapping
    shutil.copytree(first_run["root"] / "first", odd)
    res = _cli_train(first_run, tmp_path / "second", "--init-from", str(odd))
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "second")["config"]["train"]["init_from"] == str(odd.resolve())


def _model_of(ckpt):
    from segmentation.engine.builder import model_from_checkpoint

    return model_from_checkpoint(ckpt)[0]


def test_init_from_refuses_what_does_not_fit(first_run, tmp_path):
    res = _cli_train(first_run, tmp_path / "w", "--init-from", str(tmp_path / "nothing.pth"))
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "checkpoint not found" in res.output
    res = _cli_train(first_run, tmp_path / "w", "--init-from", str(first_run["root"] / "first"), "--head", "onehot")
    assert res.exit_code == 1 and "a property-head model cannot start a onehot-head run" in res.output
    res = CliRunner().invoke(main, ["train", "--data-root", str(first_run["data"]), "--work-dir", str(tmp_path / "w"),
                                    "--resume", "--init-from", str(first_run["root"] / "first")])
    assert res.exit_code == 1 and "--init-from cannot change it" in res.output
    cfg = tiny_config(64, **{"schedule.init_from_required": "true"})
    with pytest.raises(ProlabError, match="give train.init_from CHECKPOINT"):
        train(cfg, first_run["data"], work_dir=tmp_path / "req", label_space=first_run["space"], progress=False)
