"""Optimiser groups, schedule, configs, sampler, sliding-window inference, checkpoint files, CLI."""

from __future__ import annotations

import itertools

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation.engine.checkpoint import load_checkpoint, save_checkpoint, save_run_checkpoint
from segmentation.engine.config import apply_overrides, load_config, config_names
from segmentation.engine.distributed import ResumableInfiniteSampler
from segmentation.engine.inference import infer_scores, slide_scores
from segmentation.engine.optim import PolyWarmup, build_optimizer, layer_id, param_groups


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.backbone.level_embed = nn.Parameter(torch.zeros(3, 8))
        self.backbone.patch_embed = nn.Linear(8, 8)
        self.backbone.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.backbone.spm = nn.Conv2d(3, 8, 3)
        self.decode_head = nn.Conv2d(8, 4, 1)


def test_layer_ids_and_lr_scales():
    assert layer_id("backbone.pos_embed", 12) == 0 and layer_id("backbone.cls_token", 12) == 0
    assert layer_id("backbone.patch_embed.proj.weight", 12) == 0
    assert layer_id("backbone.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("backbone.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("backbone.interactions.0.injector.gamma", 12) == 13
    assert layer_id("decode_head.conv_seg.weight", 12) == 13
    groups = param_groups(_Toy(), lr=1.0, weight_decay=0.05, layer_decay=0.5, num_layers=3)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["backbone.pos_embed"]["lr"] == 0.5**4 and by_name["backbone.pos_embed"]["weight_decay"] == 0
    assert by_name["backbone.level_embed"]["weight_decay"] == 0 and by_name["backbone.level_embed"]["lr"] == 1.0
    assert by_name["backbone.blocks.1.weight"]["lr"] == 0.5**2 and by_name["backbone.blocks.1.weight"]["weight_decay"] == 0.05
    assert by_name["backbone.blocks.1.bias"]["weight_decay"] == 0
    assert by_name["decode_head.weight"]["lr"] == 1.0 and by_name["backbone.spm.weight"]["lr"] == 1.0


def test_poly_schedule_with_linear_warmup_follows_mmcv():
    opt = build_optimizer(_Toy(), {"lr": 0.1, "weight_decay": 0.01, "layer_decay": 0.5, "betas": [0.9, 0.999]})
    sched = PolyWarmup(opt, max_iters=100, warmup_iters=10, warmup_ratio=1e-6, power=1.0)
    assert sched.lr_at(0) == pytest.approx(0.1 * 1e-6)
    assert sched.lr_at(5) == pytest.approx(0.1 * 0.95 * (1 - 0.5 * (1 - 1e-6)))
    assert sched.lr_at(10) == pytest.approx(0.09) and sched.lr_at(100) == 0.0
    sched.step_to(50)
    scales = sorted({round(g["lr"] / 0.05, 6) for g in opt.param_groups})
    assert scales == [0.0625, 0.125, 0.25, 0.5, 1.0]
    other = PolyWarmup(opt, max_iters=1)
    other.load_state_dict(sched.state_dict())
    assert other.iteration == 50 and other.lr_at(50) == sched.lr_at(50)


def test_presets_inherit_and_overrides_apply():
    assert {"ade20k-vit-adapter-b-prolab", "cityscapes-vit-adapter-b-prolab", "bdd100k-vit-adapter-b-prolab",
            "synth-vit-adapter-nano"} <= set(config_names())
    beit = load_config("ade20k-beit-adapter-l-640-prolab")
    assert beit["optim"] == {"lr": 2e-5, "weight_decay": 0.05, "betas": [0.9, 0.999], "layer_decay": 0.9, "grad_clip": None}
    assert beit["model"]["temperature"] == 0.01 and beit["model"]["normalize_embedding"] is True
    assert beit["schedule"]["max_iters"] == 160000 and beit["data"]["crop_size"] == [640, 640]
    bdd = load_config("bdd100k-vit-adapter-b-prolab")
    assert bdd["dataset"] == "bdd100k" and bdd["label_space"]["num_properties"] == 32 and bdd["data"]["crop_size"] == [768, 768]
    assert load_config("pascal-context-59-vit-adapter-b-prolab")["label_space"]["num_properties"] == 128
    cfg = apply_overrides(beit, ["optim.lr=1.0e-4", "data.crop_size=[256, 256]"])
    assert cfg["optim"]["lr"] == 1e-4 and cfg["data"]["crop_size"] == [256, 256] and beit["optim"]["lr"] == 2e-5
    with pytest.raises(ProlabError, match=r"unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        apply_overrides(beit, ["optim.lrr=1"])
    with pytest.raises(ProlabError, match="expected key=value"):
        apply_overrides(beit, ["optim.lr"])
    with pytest.raises(ProlabError, match="no such file or shipped config"):
        load_config("nope")


def test_sampler_resumes_mid_stream_and_shards_ranks():
    full = list(itertools.islice(iter(ResumableInfiniteSampler(5, seed=3)), 12))
    assert sorted(i for i, _ in full[:5]) == list(range(5)) and sorted(i for i, _ in full[5:10]) == list(range(5))
    later = list(itertools.islice(iter(ResumableInfiniteSampler(5, seed=3, start=7)), 5))
    assert later == full[7:12]
    r0 = list(itertools.islice(iter(ResumableInfiniteSampler(5, seed=3, rank=0, world=2)), 6))
    r1 = list(itertools.islice(iter(ResumableInfiniteSampler(5, seed=3, rank=1, world=2)), 6))
    assert r0 == full[0:12:2] and r1 == full[1:12:2]
    assert len({s for _, s in full}) == 12, "every element gets its own augmentation seed"


def test_sliding_window_matches_whole_image_for_a_pointwise_model():
    conv = nn.Conv2d(3, 4, 1)
    img = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        whole = infer_scores(conv, img, 4, (70, 90), "whole")
        slide = slide_scores(conv, img, 4, (32, 32), (20, 20))
        flipped = infer_scores(conv, img, 4, (35, 45), "slide", (64, 64), (32, 32), flip=True)
    assert torch.allclose(whole, conv(img), atol=1e-6)
    assert torch.allclose(slide, conv(img), atol=1e-6)
    assert flipped.shape == (1, 4, 35, 45)


def test_whole_mode_pads_to_multiples_of_32():
    seen = []

    def fn(x):
        seen.append(tuple(x.shape[-2:]))
        return x[:, :1]

    out = infer_scores(fn, torch.ones(1, 3, 50, 70), 1, (50, 70), "whole")
    assert seen == [(64, 96)] and out.shape == (1, 1, 50, 70)


def test_checkpoint_files(tmp_path):
    meta = {"preset": "vit-adapter-nano", "model_kwargs": {}, "head": "onehot", "classes": ["a"]}
    (tmp_path / "iter_best.pth").write_bytes(b"")  # a user's file beside the run's: left alone
    for it in (1, 2, 3):
        save_run_checkpoint(tmp_path, it, {"state_dict": {"w": torch.ones(2) * it}, "meta": meta}, max_keep=2)
    assert sorted(p.name for p in tmp_path.glob("iter_*.pth")) == ["iter_2.pth", "iter_3.pth", "iter_best.pth"]
    (tmp_path / "iter_best.pth").unlink()
    assert torch.equal(load_checkpoint(tmp_path)["state_dict"]["w"], torch.full((2,), 3.0))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ProlabError, match="junk.pth: not a readable prolab checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")
    (tmp_path / "empty.pth").write_bytes(b"")  # a truncated file: one line naming it, not a traceback
    with pytest.raises(ProlabError, match=r"empty.pth: not a readable prolab checkpoint \(EOFError\)"):
        load_checkpoint(tmp_path / "empty.pth")
    torch.save({"state_dict": {}}, tmp_path / "mmseg.pth")
    with pytest.raises(ProlabError, match="mmseg.pth: not a prolab checkpoint"):
        load_checkpoint(tmp_path / "mmseg.pth")
    with pytest.raises(ProlabError, match="no last_checkpoint"):
        load_checkpoint(tmp_path / "empty_run" if (tmp_path / "empty_run").mkdir() is None else None)
    save_checkpoint(tmp_path / "x.pth", {"state_dict": {}, "meta": {"preset": "p"}})
    with pytest.raises(ProlabError, match="lacks preset/model_kwargs/head/classes"):
        load_checkpoint(tmp_path / "x.pth")


def test_cli_synth_check_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cs"
    result = runner.invoke(main, ["data", "synth", "--layout", "cityscapes", "--out-dir", str(out), "--train", "2",
                                  "--val", "1", "--size", "32", "--seen", "3", "--heldout", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "gtFine" / "train").rglob("*_gtFine_labelTrainIds.png"))) == 2
    result = runner.invoke(main, ["data", "check", "--dataset", "cityscapes", "--data-root", str(out), "--split", "train"])
    assert result.exit_code == 0 and "2 good samples, 0 bad" in result.output
    next((out / "gtFine" / "train").rglob("*.png")).unlink()
    result = runner.invoke(main, ["data", "check", "--dataset", "cityscapes", "--data-root", str(out), "--split", "train"])
    assert result.exit_code == 1 and "image without a mask" in result.output
    result = runner.invoke(main, ["train", "--data-root", str(out), "--work-dir", str(tmp_path / "w"),
                                  "--dataset", "cityscapes", "--set", "nope=1"])
    assert result.exit_code == 1 and "unknown key 'nope'" in result.output
    result = runner.invoke(main, ["train", "--data-root", str(out), "--work-dir", str(tmp_path / "w"),
                                  "--dataset", "cityscapes"])
    assert result.exit_code == 1 and "needs --label-space" in result.output


def test_work_dir_policy_refuses_mixing_runs_and_restores_an_overwritten_run_on_failure(tmp_path):
    from segmentation.engine.work_dir import work_dir_policy

    work = tmp_path / "run"
    work.mkdir()
    (work / "iter_10.pth").write_bytes(b"old")
    (work / "last_checkpoint").write_text("iter_10.pth\n")
    with pytest.raises(ProlabError, match=r"holds checkpoints of an earlier run \(iter_10.pth, last_checkpoint\)"):
        with work_dir_policy(work, resume=False, overwrite=False):
            pass
    with pytest.raises(ProlabError, match="give one of them"):
        with work_dir_policy(work, resume=True, overwrite=True):
            pass
    with pytest.raises(RuntimeError):
        with work_dir_policy(work, resume=False, overwrite=True):
            assert not (work / "iter_10.pth").exists() and (work / ".overwritten" / "iter_10.pth").is_file()
            raise RuntimeError("the new run fails before its first checkpoint")
    assert (work / "iter_10.pth").read_bytes() == b"old" and not (work / ".overwritten").exists()
    with work_dir_policy(work, resume=False, overwrite=True):
        (work / "iter_1.pth").write_bytes(b"new")
    assert sorted(p.name for p in work.iterdir()) == ["iter_1.pth"]
