"""The MMSeg plugin's configs for the paper rows (and their one-hot baselines) say what prolab's zoo
rows and resolved training configs say, on every setting the two engines share, so the two cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmseg", reason="needs the mmseg extra: pip install 'prolab[mmseg]' (make test installs it)")

from segmentation.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from segmentation.engine.config import load_config  # noqa: E402
from segmentation.models import model_config  # noqa: E402
from segmentation.zoo import ROWS  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "segmentation/mmseg_plugin/configs"
DATASET_TYPES = {"ADE20KDataset": "ade20k", "COCOStuffDataset": "coco-stuff", "PascalContextDataset59": "pascal-context-59",
                 "CityscapesDataset": "cityscapes", "BDD100KDataset": "bdd100k"}
ONEHOT = sorted(p.stem for p in CONFIGS.glob("*-onehot.py"))


def _load(name: str):
    from mmengine.config import Config

    return Config.fromfile(str(CONFIGS / f"{name}.py"))


def _step(pipeline: list, kind: str) -> dict | None:
    found = [t for t in pipeline if t["type"] == kind]
    assert len(found) <= 1, kind
    return found[0] if found else None


def _pair(v) -> list:
    return [v, v] if isinstance(v, int) else list(v)


def _shared(cfg) -> dict:
    """The settings an MMSeg config shares with a prolab preset, in the preset's terms."""
    model, pre = cfg.model, cfg.model.data_preprocessor
    train, test = cfg.train_pipeline, cfg.test_pipeline
    multiple = _step(test, "ResizeToMultiple")
    warmup, poly = cfg.param_scheduler
    return {
        "dataset": DATASET_TYPES[cfg.train_dataloader.dataset.type],
        "data_root": cfg.train_dataloader.dataset.data_root.rstrip("/"),
        "val data_root": cfg.val_dataloader.dataset.data_root.rstrip("/"),
        "normalisation": (list(pre.mean), list(pre.std), pre.bgr_to_rgb),
        "crop": _pair(cfg.crop_size), "train crop": _pair(_step(train, "RandomCrop")["crop_size"]),
        "pad to crop": _pair(pre.size),
        "cat_max_ratio": _step(train, "RandomCrop")["cat_max_ratio"],
        "train scale": list(_step(train, "RandomResize")["scale"]),
        "ratio_range": list(_step(train, "RandomResize")["ratio_range"]),
        "test scale": list(_step(test, "Resize")["scale"]),
        "test mode": model.test_cfg.mode, "test crop": _pair(model.test_cfg.crop_size),
        "stride": _pair(model.test_cfg.stride),
        "size_divisor": multiple["size_divisor"] if multiple else None,
        "pad_short_side": pre.get("pad_short_side"),
        "flip": any(t["type"] in ("RandomFlip", "TestTimeAug") for t in test),
        "arch": model.backbone.arch, "img_size": model.backbone.get("img_size"),
        "drop_path": model.backbone.drop_path_rate,
        "lr": cfg.optim_wrapper.optimizer.lr, "wd": cfg.optim_wrapper.optimizer.weight_decay,
        "betas": list(cfg.optim_wrapper.optimizer.betas),
        "layer decay": cfg.optim_wrapper.paramwise_cfg.decay_rate, "layers": cfg.optim_wrapper.paramwise_cfg.num_layers,
        "amp": "fp16" if cfg.optim_wrapper.type == "AmpOptimWrapper" else "none",
        "batch": cfg.train_dataloader.batch_size,
        "iters": (cfg.train_cfg.max_iters, poly.end),
        "warmup": (warmup.end, warmup.start_factor, poly.begin),
        "poly": (poly.power, poly.eta_min),
    }


def _preset(row_id: str, preset: str | None = None) -> dict:
    """The same settings from prolab's resolved preset (the row's own by default) and zoo row."""
    cfg = load_config(preset or row_id)
    row = ROWS[row_id]
    arch = model_config(cfg["model"]["preset"], img_size=cfg["model"]["img_size"])
    d, t, o, s = cfg["data"], cfg["test"], cfg["optim"], cfg["schedule"]
    return {
        "dataset": cfg["dataset"], "data_root": row.data_root, "val data_root": row.data_root,
        "normalisation": (list(IMAGENET_MEAN), list(IMAGENET_STD), True),
        "crop": d["crop_size"], "train crop": d["crop_size"], "pad to crop": d["crop_size"],
        "cat_max_ratio": d["cat_max_ratio"], "train scale": d["scale"], "ratio_range": d["ratio_range"],
        "test scale": t["scale"], "test mode": t["mode"], "test crop": t["crop_size"], "stride": t["stride"],
        "size_divisor": t["size_divisor"], "pad_short_side": t["pad_short_side"], "flip": t["flip"],
        "arch": cfg["model"]["preset"], "img_size": cfg["model"]["img_size"] if arch.backbone == "beit" else None,
        "drop_path": arch.drop_path_rate,
        "lr": o["lr"], "wd": o["weight_decay"], "betas": o["betas"], "layer decay": o["layer_decay"],
        "layers": arch.depth, "amp": cfg["train"]["amp"], "batch": d["batch_size"],
        "iters": (s["max_iters"], s["max_iters"]),
        "warmup": (s["warmup_iters"], s["warmup_ratio"], s["warmup_iters"]),
        "poly": (s["power"], s["min_lr"]),
    }


@pytest.mark.parametrize("row_id", list(ROWS))
def test_row_config_shares_every_setting_with_the_preset_and_zoo_row(row_id):
    cfg = _load(row_id)
    assert _shared(cfg) == _preset(row_id)
    row, preset = ROWS[row_id], load_config(row_id)
    assert row.pad_short_side == preset["test"]["pad_short_side"]
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        assert (head.num_properties, head.temperature, head.normalize_embedding, head.embed_dim) == (
            row.num_properties, row.temperature, row.normalize_embedding, row.embed_dim)
        assert (head.num_properties, head.temperature, head.normalize_embedding) == (
            preset["label_space"]["num_properties"], preset["model"]["temperature"], preset["model"]["normalize_embedding"])
        assert head.label_space == f"label_spaces/{row.label_space}"
    assert (cfg.model.decode_head.loss_decode.loss_weight, cfg.model.auxiliary_head.loss_decode.loss_weight) == (
        1.0, preset["model"]["aux_weight"])
    assert preset["model"]["loss"] == "cosine" and cfg.model.decode_head.loss_decode.type == "PropertyCosineLoss"
    if cfg.optim_wrapper.type == "AmpOptimWrapper":  # the released `fp16 = dict(loss_scale=dict(init_scale=512))`
        assert cfg.optim_wrapper.loss_scale == {"init_scale": 512}


@pytest.mark.parametrize("name", ONEHOT)
def test_onehot_baseline_config_shares_its_row_settings(name):
    row_id = name.replace("-onehot", "-prolab")
    cfg = _load(name)
    assert _shared(cfg) == _preset(row_id)
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == ROWS[row_id].num_classes
    if (CONFIGS.parent.parent / "configs" / f"{name}.yaml").is_file():  # a prolab preset of the baseline too
        assert load_config(name)["model"]["head"] == "onehot"
        assert _shared(cfg) == _preset(row_id, name)


def test_the_five_onehot_baselines_exist():
    assert ONEHOT == sorted(f"{r.replace('-prolab', '-onehot')}" for r in ROWS if "beit" not in r)
