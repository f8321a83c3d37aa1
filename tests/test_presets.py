"""Every paper row's training config, resolved (base chain merged, model preset applied), equals the
released config's values. The table below is an independent copy of the released configs' settings,
read from the files themselves (github.com/lambert-x/ProLab, configs/):
  ADE20K/upernet_deit_adapter_base_512_320k_ade20k_bge_base.py (max_iters from schedule_160k)
  COCO_Stuff/upernet_deit_adapter_base_512_160k_coco_stuff_bge_base.py
  pascal_context/upernet_deit_adapter_base_512_160k_pascal_context_59_bge_base_gpt3.5_cluster_128_..._unnormalized.py
  cityscapes/upernet_deit_adapter_base_768_160k_cityscapes_bge_base_gpt3.5_cluster_32_..._unnormalized.py
  bdd100k/upernet_deit_adapter_base_768_160k_bdd100k_bge_base_gpt3.5_cluster_32_..._unnormalized.py
  ADE20K/upernet_beit_adapter_large_640_160k_ade20k_bge_base.py
  ADE20K/upernet_beitv2_adapter_large_896_80k_ade20k_bge_base.py
kept here so that a wrong preset or zoo entry fails."""

from __future__ import annotations

import pytest

from prolab_cli.errors import ProlabError
from segmentation.engine.config import apply_overrides, load_config
from segmentation.models import model_config
from segmentation.zoo import ROWS

# row: dataset, K, T, e normalised, crop, scale (train = test), test stride, lr, wd, layer decay, layers
# (= backbone depth), images per GPU, iterations, fine-tuned from an earlier run (load_from)
RELEASED = {
    "ade20k-vit-adapter-b-prolab": ("ade20k", 256, 0.04, False, 512, (2048, 512), 341, 6e-5, 0.01, 0.95, 12, 2, 160_000, False),
    "coco-stuff-vit-adapter-b-prolab": ("coco-stuff", 256, 0.01, True, 512, (2048, 512), 341, 6e-5, 0.01, 0.95, 12, 2, 160_000, False),
    "pascal-context-59-vit-adapter-b-prolab": ("pascal-context-59", 128, 0.04, False, 512, (2048, 512), 341, 6e-5, 0.01, 0.95, 12, 2, 160_000, False),
    "cityscapes-vit-adapter-b-prolab": ("cityscapes", 32, 0.04, False, 768, (2048, 1024), 512, 6e-5, 0.01, 0.95, 12, 1, 160_000, False),
    "bdd100k-vit-adapter-b-prolab": ("bdd100k", 32, 0.04, False, 768, (2048, 1024), 512, 6e-5, 0.01, 0.95, 12, 1, 160_000, False),
    "ade20k-beit-adapter-l-640-prolab": ("ade20k", 256, 0.01, True, 640, (2048, 640), 426, 2e-5, 0.05, 0.90, 24, 2, 160_000, False),
    "ade20k-beitv2-adapter-l-896-prolab": ("ade20k", 256, 0.04, False, 896, (3584, 896), 512, 4e-5, 0.05, 0.90, 24, 2, 80_000, True),
}
# only these two files set `fp16 = dict(loss_scale=dict(init_scale=512))`; the other five train in fp32
FP16 = {"ade20k-vit-adapter-b-prolab", "coco-stuff-vit-adapter-b-prolab"}
# PadShortSide(size=896, pad_val=0) after Normalize in the test pipeline: the BEiTv2 file only
PAD_SHORT_SIDE = {"ade20k-beitv2-adapter-l-896-prolab": 896}
MODEL = {  # row -> model preset (backbone)
    "ade20k-beit-adapter-l-640-prolab": "beit-adapter-l",
    "ade20k-beitv2-adapter-l-896-prolab": "beitv2-adapter-l",
}
# the same in every released row
COMMON = {
    "model.head": "property", "model.loss": "cosine", "model.aux_weight": 0.4,
    "data.ratio_range": [0.5, 2.0], "data.cat_max_ratio": 0.75, "data.photometric": True,
    "test.mode": "slide", "test.flip": False, "test.size_divisor": 32,  # ResizeToMultiple(size_divisor=32)
    "optim.betas": [0.9, 0.999], "schedule.warmup_iters": 1500, "schedule.warmup_ratio": 1e-6,
    "schedule.power": 1.0, "schedule.min_lr": 0.0,
}


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("row", list(RELEASED))
def test_resolved_preset_equals_the_released_config(row):
    (dataset, k, t, norm, crop, scale, stride, lr, wd, decay, layers, imgs, iters, init_from) = RELEASED[row]
    cfg = load_config(row)
    model = model_config(cfg["model"]["preset"], img_size=cfg["model"]["img_size"])
    got = {
        "dataset": cfg["dataset"], "K": cfg["label_space"]["num_properties"], "T": cfg["model"]["temperature"],
        "norm": cfg["model"]["normalize_embedding"], "crop": cfg["data"]["crop_size"],
        "test crop": cfg["test"]["crop_size"], "train scale": cfg["data"]["scale"], "test scale": cfg["test"]["scale"],
        "stride": cfg["test"]["stride"], "lr": cfg["optim"]["lr"], "wd": cfg["optim"]["weight_decay"],
        "decay": cfg["optim"]["layer_decay"], "layers": model.depth, "imgs/GPU": cfg["data"]["batch_size"],
        "iters": cfg["schedule"]["max_iters"], "init_from_required": cfg["schedule"]["init_from_required"],
        "drop_path": model.drop_path_rate, "img_size": cfg["model"]["img_size"], "model": cfg["model"]["preset"],
        "amp": cfg["train"]["amp"], "pad_short_side": cfg["test"]["pad_short_side"],
        "fp16 loss scale": cfg["train"]["loss_scale"] if row in FP16 else None,
        "zoo pad_short_side": ROWS[row].pad_short_side,
    }
    want = {
        "dataset": dataset, "K": k, "T": t, "norm": norm, "crop": [crop, crop], "test crop": [crop, crop],
        "train scale": list(scale), "test scale": list(scale), "stride": [stride, stride], "lr": lr, "wd": wd,
        "decay": decay, "layers": layers, "imgs/GPU": imgs, "iters": iters, "init_from_required": init_from,
        "drop_path": 0.3, "img_size": crop, "model": MODEL.get(row, "vit-adapter-b"),
        "amp": "fp16" if row in FP16 else "none", "pad_short_side": PAD_SHORT_SIDE.get(row),
        "fp16 loss scale": 512.0 if row in FP16 else None,  # fp16 = dict(loss_scale=dict(init_scale=512))
        "zoo pad_short_side": PAD_SHORT_SIDE.get(row),
    }
    assert got == want
    assert {key: _get(cfg, key) for key in COMMON} == COMMON
    assert cfg["train"]["init_from"] is None


def test_beitv2_recipe_refuses_to_train_from_scratch_without_saying_so(tmp_path):
    """The preset requires --init-from; its documented first run switches that off."""
    from segmentation.engine.init_from import init_from_checkpoint

    cfg = load_config("ade20k-beitv2-adapter-l-896-prolab")
    with pytest.raises(ProlabError, match="train.init_from CHECKPOINT, or the override schedule.init_from_required=false"):
        init_from_checkpoint(None, cfg)
    first_run = apply_overrides(cfg, ["schedule.max_iters=160000", "schedule.init_from_required=false"])
    assert init_from_checkpoint(None, first_run) is None
