"""`prolab convert` (mmseg 0.x layout -> prolab checkpoint) and pretrained backbone loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation.models import ModelConfig, build_model
from segmentation.engine.convert import convert_checkpoint
from segmentation.models.pretrained import load_pretrained

NAMES = ["wall", "sky", "tree", "road", "person"]
TINY_BEIT = ModelConfig(backbone="beit", embed_dim=32, depth=4, num_heads=2, img_size=64,
                        drop_path_rate=0.0, conv_inplane=8, deform_num_heads=2, init_values=1e-6,
                        interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
                        decode_channels=16, aux_channels=8)


def _mmseg_file(path, model, classes=None, drop=()):
    """Write ``model`` the way mmseg 0.x saves it (DDP prefixes, meta with CLASSES, optimizer)."""
    sd = {f"module.{k}": v for k, v in model.state_dict().items() if not any(d in k for d in drop)}
    meta = {"mmcv_version": "1.4.2", "config": "model = dict(...)", "iter": np.int64(160000),
            "hook_msgs": {"best_score": np.float64(0.48)}, "time": "Mon Jan  2 10:00:00 2023"}
    if classes:
        meta["CLASSES"] = tuple(classes)
        meta["PALETTE"] = [[i, i, i] for i in range(len(classes))]
    torch.save({"meta": meta, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def _same_outputs(a, b, x):
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(b.encode_decode(x), a.encode_decode(x), rtol=0, atol=0)


def test_convert_round_trip_through_the_cli(tmp_path):
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint

    torch.manual_seed(0)
    model = build_model("vit-adapter-nano", num_classes=len(NAMES))
    src = _mmseg_file(tmp_path / "iter_160000.pth", model, NAMES)
    dst = tmp_path / "out" / "nano.pth"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    assert "vit-adapter-nano" in result.output and "missing keys: none" in result.output
    ckpt = load_checkpoint(dst)
    assert ckpt["meta"]["classes"] == NAMES and ckpt["meta"]["head"] == "onehot"
    assert ckpt["meta"]["source"]["iter"] == 160000 and type(ckpt["meta"]["source"]["iter"]) is int
    loaded, classes, _ = model_from_checkpoint(ckpt)
    assert classes == NAMES
    _same_outputs(model, loaded, torch.randn(1, 3, 64, 64))
    from segmentation.engine.evaluate import evaluate

    with pytest.raises(ProlabError, match=r"nano.pth: the checkpoint records no dataset .*give eval.dataset"):
        evaluate(dst, tmp_path, progress=False)


def test_convert_reports_unexpected_and_refuses_missing_keys(tmp_path):
    torch.manual_seed(0)
    model = build_model("vit-adapter-nano", num_classes=3)
    src = tmp_path / "extra.pth"
    sd = dict(model.state_dict(), **{"decode_head.conv_seg_extra.weight": torch.zeros(1)})
    torch.save({"state_dict": sd, "meta": {}}, src)
    report = convert_checkpoint(src, tmp_path / "a.pth", preset="vit-adapter-nano")
    assert report.unexpected == ["decode_head.conv_seg_extra.weight"] and report.missing == []
    assert report.classes == ["class_0", "class_1", "class_2"]
    gap = _mmseg_file(tmp_path / "gap.pth", model, drop=("backbone.up.",))
    result = CliRunner().invoke(main, ["convert", str(gap), str(tmp_path / "b.pth"), "--preset", "vit-adapter-nano"])
    assert result.exit_code == 1 and "missing" in result.output and "backbone.up" in result.output
    report = convert_checkpoint(gap, tmp_path / "c.pth", preset="vit-adapter-nano", allow_missing=True)
    assert sorted(report.missing) == ["backbone.up.bias", "backbone.up.weight"]
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "nope.pth"), str(tmp_path / "d.pth")])
    assert result.exit_code == 1 and "not found" in result.output


def test_convert_beit_without_relative_position_index(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY_BEIT, num_classes=3)
    src = _mmseg_file(tmp_path / "beit.pth", model, drop=("relative_position_index",))
    report = convert_checkpoint(src, tmp_path / "beit_out.pth", preset=TINY_BEIT)
    assert len(report.filled) == 4 and report.missing == []
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint

    loaded, _, _ = model_from_checkpoint(load_checkpoint(tmp_path / "beit_out.pth"))
    _same_outputs(model, loaded, torch.randn(1, 3, 64, 64))


def test_convert_prolab_checkpoint_with_a_label_space(tmp_path):
    from prolab_cli.artifact import LabelSpace
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint

    rng = np.random.default_rng(0)
    rows = (rng.random((len(NAMES), 6)) < 0.5).astype(np.float32)
    rows[:, 1] = 1
    space = LabelSpace.from_arrays("toy", NAMES, rows, rng.normal(size=(6, 16)).astype(np.float32))
    art = space.save(tmp_path)
    torch.manual_seed(0)
    model = build_model("vit-adapter-nano", class_rows=rows, centres=space.centres)
    src = _mmseg_file(tmp_path / "prolab.pth", model)
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "p.pth"), "--label-space", str(art)])
    assert result.exit_code == 1 and "fits no paper row" in result.output and "--temperature" in result.output
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "p.pth"), "--label-space", str(art),
                                       "--temperature", "0.04"])
    assert result.exit_code == 0, result.output
    loaded, classes, _ = model_from_checkpoint(load_checkpoint(tmp_path / "p.pth"))
    assert classes == NAMES and loaded.is_property_head
    _same_outputs(model, loaded, torch.randn(1, 3, 64, 64))
    wrong = LabelSpace.from_arrays("wide", NAMES, rows, np.ones((6, 8), np.float32)).save(tmp_path)
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "q.pth"), "--label-space", str(wrong),
                                       "--temperature", "0.04"])
    assert result.exit_code == 1 and "D=8" in result.output


def _plain_vit_state(model, grid: int, timm_names: bool = False) -> dict:
    """A DeiT-like state dict for the nano backbone's ViT part, pos_embed on a grid x grid."""
    bb = model.backbone
    sd = {"cls_token": torch.randn(1, 1, 96), "pos_embed": torch.randn(1, 1 + grid * grid, 96),
          "patch_embed.proj.weight": torch.randn_like(bb.patch_embed.proj.weight),
          "patch_embed.proj.bias": torch.randn(96), "norm.weight": torch.ones(96), "norm.bias": torch.zeros(96),
          "head.weight": torch.randn(1000, 96), "head.bias": torch.zeros(1000)}
    for k, v in bb.blocks.state_dict().items():
        name = f"blocks.{k}"
        if timm_names:
            name = name.replace("gamma1", "ls1.gamma").replace("gamma2", "ls2.gamma")
        sd[name] = torch.randn_like(v)
    return sd


def test_pretrained_deit_pth_and_timm_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = build_model("vit-adapter-nano", num_classes=3)
    sd = _plain_vit_state(model, grid=7)
    torch.save({"model": sd}, tmp_path / "deit.pth")
    missing, unexpected = load_pretrained(model.backbone, tmp_path / "deit.pth")
    bb = model.backbone
    assert torch.equal(bb.blocks[2].mlp.fc1.weight, sd["blocks.2.mlp.fc1.weight"])
    assert torch.equal(bb.pos_embed[:, :1], sd["pos_embed"][:, :1]) and bb.pos_embed.shape == (1, 197, 96)
    assert any(k.startswith("spm.") for k in missing) and "level_embed" in missing
    assert not any(k.startswith("blocks.") for k in missing) and unexpected == []
    timm_sd = _plain_vit_state(model, grid=14, timm_names=True)
    save_file(timm_sd, str(tmp_path / "vit.safetensors"))
    model2 = build_model("vit-adapter-nano", num_classes=3, pretrained=str(tmp_path / "vit.safetensors"))
    assert torch.equal(model2.backbone.blocks[1].gamma2, timm_sd["blocks.1.ls2.gamma"])
    assert torch.equal(model2.backbone.pos_embed, timm_sd["pos_embed"])
    assert model2.pretrained_report["unexpected"] == [] and "up.weight" in model2.pretrained_report["missing"]
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ProlabError, match="no transformer block weights"):
        load_pretrained(model.backbone, tmp_path / "other.pth")


def test_pretrained_beit_shared_relative_position_table_is_resized(tmp_path):
    model = build_model(TINY_BEIT, num_classes=3)
    bb = model.backbone
    sd = {f"blocks.{k}": torch.randn_like(v) for k, v in bb.blocks.state_dict().items()
          if "relative_position" not in k}
    sd["rel_pos_bias.relative_position_bias_table"] = torch.randn(27 * 27 + 3, 2)  # 224 pre-training
    sd["cls_token"] = torch.randn(1, 1, 32)
    torch.save({"model": sd}, tmp_path / "beit.pth")
    load_pretrained(bb, tmp_path / "beit.pth")
    table = bb.blocks[1].attn.relative_position_bias_table
    assert table.shape == (7 * 7 + 3, 2)
    assert torch.equal(table[-3:], sd["rel_pos_bias.relative_position_bias_table"][-3:])
    assert torch.equal(bb.cls_token, sd["cls_token"])


class _Opaque:
    """Stands for an arbitrary pickled object in a checkpoint's meta."""


def test_convert_refuses_arbitrary_pickles_unless_trusted(tmp_path):
    model = build_model("vit-adapter-nano", num_classes=3)
    src = tmp_path / "pickled.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"obj": _Opaque()}}, src)
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "o.pth")])
    assert result.exit_code == 1 and "--trust-pickle" in result.output and "_Opaque" in result.output
    report = convert_checkpoint(src, tmp_path / "o.pth", preset="vit-adapter-nano", trust_pickle=True)
    assert report.missing == [] and report.unexpected == []


def test_head_settings_are_read_from_an_mmseg1_checkpoint_config():
    """An MMSeg 1.x checkpoint written with the plugin heads carries its config text (meta.cfg):
    convert takes T and the normalisation from its decode head, never from a default."""
    from segmentation.engine.convert import head_settings_from_mmseg_cfg

    cfg = ("norm_cfg = dict(type='BN')\nmodel = dict(type='EncoderDecoder',\n"
           "    decode_head=dict(type='ProLabUPerHead', temperature=0.01, normalize_embedding=True, channels=8),\n"
           "    auxiliary_head=dict(type='ProLabFCNHead', temperature=0.5))\n")
    assert head_settings_from_mmseg_cfg(cfg) == {"temperature": 0.01, "normalize_embedding": True}
    assert head_settings_from_mmseg_cfg("model = dict(decode_head=dict(type='UPerHead'))") == {}
    assert head_settings_from_mmseg_cfg(None) == {} and head_settings_from_mmseg_cfg("not python (") == {}
