"""Open-vocabulary test sets (ADE20K-847, Pascal Context-459): uint16 TIFF label maps with 65535 = ignore,
a class list given as a file, labels above 255 that never wrap onto the ignore id, and `prolab eval`
of a model trained on a few classes, extended to new ones, over such a set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prolab_cli.classes import load_classes
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation.data.datasets import SegDataset
from segmentation.engine.metrics import SegMetric

IGNORE = 65535


def _tif(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint16))
    assert image.mode == "I;16"
    image.save(path)


def _jpg(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def _class_file(path: Path, n: int, placed: dict[int, str] | None = None) -> Path:
    names = [f"test class {i:03d}" for i in range(n)]
    for i, name in (placed or {}).items():
        names[i] = name
    path.write_text("\n".join(names) + "\n")
    return path


def _ade847(root: Path, labels: dict[str, np.ndarray]) -> Path:
    for stem, label in labels.items():
        _jpg(root / "images_detectron2/validation" / f"{stem}.jpg", *label.shape)
        _tif(root / "annotations_detectron2/validation" / f"{stem}.tif", label)
    return root


def test_wide_labels_metric_by_hand():
    """847 classes: 255 is a class like any other and 65535 is ignored."""
    label = np.array([[255, 255, 300, 846], [IGNORE, 300, 300, 0]])
    pred = np.array([[255, 300, 300, 846], [846, 300, 0, 0]])
    metric = SegMetric(847)
    assert metric.ignore_index == IGNORE
    metric.update(pred, label)
    result = metric.compute()
    iou = {r["class"]: r["IoU"] for r in result["per_class"] if r["IoU"] is not None}
    # valid pixels: 7. class 255: I=1, P=1, L=2 -> 1/2; class 300: I=2, P=3, L=3 -> 2/4;
    # class 846: I=1, P=1 (the ignored pixel's prediction leaves), L=1 -> 1; class 0: I=1, P=2, L=1 -> 1/2
    assert iou == pytest.approx({"255": 50.0, "300": 50.0, "846": 100.0, "0": 50.0})
    assert result["mIoU"] == pytest.approx(62.5)
    assert result["aAcc"] == pytest.approx(100.0 * 5 / 7)


def test_ade20k_847_layout_reads_uint16_tiffs(tmp_path):
    label = np.array([[0, 255, 300, 846], [IGNORE, 12, 300, 255]], np.uint16)
    root = _ade847(tmp_path / "ADE20K_2021_17_01", {"a": label})
    classes = _class_file(tmp_path / "ade847.txt", 847, {255: "wall", 300: "lighthouse", 846: "zebra"})
    ds = SegDataset("ade20k-847", root, "val", classes=classes)
    _, loaded = ds.load(ds.samples[0])
    assert loaded.dtype == np.int32 and ds.ignore_index == IGNORE
    np.testing.assert_array_equal(loaded, label.astype(np.int32))  # no wrap, ignore kept at 65535
    narrow = SegDataset("ade20k-847", root, "val", classes=classes, target_classes=["zebra", "wall", "lighthouse"])
    _, mapped = narrow.load(narrow.samples[0])
    assert mapped.dtype == np.uint8 and narrow.ignore_index == 255
    np.testing.assert_array_equal(mapped, [[255, 1, 2, 0], [255, 255, 2, 1]])
    assert ds[0]["label"].tolist() == label.astype(np.int64).tolist()


def test_ade20k_847_errors(tmp_path):
    root = _ade847(tmp_path / "ade", {"a": np.zeros((4, 4), np.uint16)})
    assert SegDataset("ade20k-847", root, "val").classes == load_classes("ade20k-847")  # the built-in list
    short = _class_file(tmp_path / "short.txt", 846)
    with pytest.raises(ProlabError, match=r"short.txt: 846 classes, but the ade20k-847 layout has 847"):
        SegDataset("ade20k-847", root, "val", classes=short)
    classes = _class_file(tmp_path / "ade847.txt", 847)
    with pytest.raises(ProlabError, match=r"has no train split \(only val"):
        SegDataset("ade20k-847", root, "train", classes=classes)
    _tif(root / "annotations_detectron2/validation/a.tif", np.full((4, 4), 847, np.uint16))
    with pytest.raises(ProlabError, match=r"a.tif: label 847 out of range \(847 classes\)"):
        SegDataset("ade20k-847", root, "val", classes=classes)[0]


def test_data_check_on_both_layouts(tmp_path):
    ade = _ade847(tmp_path / "ade", {"a": np.full((4, 5), 700, np.uint16), "b": np.full((4, 5), IGNORE, np.uint16)})
    _tif(ade / "annotations_detectron2/validation/c.tif", np.full((4, 5), 900, np.uint16))
    _jpg(ade / "images_detectron2/validation/c.jpg", 4, 5)
    ade_classes = _class_file(tmp_path / "ade847.txt", 847)
    runner = CliRunner()
    builtin = runner.invoke(main, ["data", "check", "--dataset", "ade20k-847", "--data-root", str(ade)])
    assert builtin.exit_code == 1 and "2 good samples, 1 bad" in builtin.output  # the built-in 847-class list
    bad = runner.invoke(main, ["data", "check", "--dataset", "ade20k-847", "--data-root", str(ade),
                               "--classes", str(ade_classes)])
    assert bad.exit_code == 1 and "2 good samples, 1 bad" in bad.output and "label 900 out of range" in bad.output

    pc = tmp_path / "pascal_ctx_d2"
    _jpg(pc / "images/validation/2008_000002.jpg", 3, 4)
    _tif(pc / "annotations_ctx459/validation/2008_000002.tif", np.array([[458, 400, 3, IGNORE]] * 3))
    good = runner.invoke(main, ["data", "check", "--dataset", "pascal-context-459", "--data-root", str(pc),
                                "--classes", str(_class_file(tmp_path / "pc459.txt", 459))])
    assert good.exit_code == 0 and "1 good samples, 0 bad" in good.output


def test_eval_extended_model_over_ade20k_847(tmp_path):
    """A model trained on five classes, extended to two held-out ones and 254 more (so that its label maps
    are wide too), evaluated over an 847-class set whose classes sit at ids above 255 (one at 255
    itself), with 65535 pixels and a class the model lacks."""
    import torch

    from conftest import trained_with_extension
    from segmentation.data.datasets import read_image
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint
    from segmentation.engine.inference import inference_settings, pipeline_for, scores_for
    from segmentation.label_space import load_label_space

    fillers = {f"test class {i:03d}": [f"a made-up object number {i}"] for i in range(10, 265) if i != 255}
    world = trained_with_extension(tmp_path, fillers)
    data, info, extended, run = world["data"], world["info"], world["extended"], {"checkpoint": world["checkpoint"]}

    synth_classes = (data / "classes.txt").read_text().splitlines()
    ids = dict(zip(synth_classes, [255, 3, 300, 511, 600, 700, 846]))  # held-out classes at 700 and 846
    ids["stranger"] = 5  # a dataset class no row names: ignored under --map-classes-by-name
    class_file = _class_file(tmp_path / "ade847.txt", 847, {i: name for name, i in ids.items()})
    root = tmp_path / "ADE20K_2021_17_01"
    truth = {}
    for mask in sorted((data / "annotations/validation").glob("*.png")):
        label = np.asarray(Image.open(mask)).astype(np.int64) - 1  # synth's ade20k masks: train id + 1
        raw = np.vectorize(lambda c: ids[synth_classes[c]])(label).astype(np.uint16)
        raw[0, :6] = IGNORE
        raw[-1, :4] = ids["stranger"]
        _tif(root / "annotations_detectron2/validation" / f"{mask.stem}.tif", raw)
        image = root / "images_detectron2/validation" / f"{mask.stem}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "images/validation" / f"{mask.stem}.jpg", image)
        truth[mask.stem] = raw

    args = ["eval", "--checkpoint", run["checkpoint"], "--dataset", "ade20k-847", "--data-root", str(root),
            "--classes", str(class_file), "--label-space", str(extended), "--map-classes-by-name",
            "-o", str(tmp_path / "res.json")]
    refused = CliRunner().invoke(main, args[:-3])
    assert refused.exit_code == 1 and "--map-classes-by-name" in refused.output
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    res = json.loads((tmp_path / "res.json").read_text())

    # by hand: the model's own predictions, the ground truth mapped by name, areas summed over the split
    space = load_label_space(extended)
    ckpt = load_checkpoint(run["checkpoint"])
    model, model_classes, _ = model_from_checkpoint(ckpt, space)
    n = len(model_classes)
    assert set(model_classes) == set(synth_classes) | set(fillers) and n == 7 + 254
    settings = inference_settings(ckpt.get("config"), {})
    names = class_file.read_text().splitlines()
    by_id = {i: model_classes.index(name) for i, name in enumerate(names) if name in model_classes}
    inter, pred_area, label_area = np.zeros(n), np.zeros(n), np.zeros(n)
    with torch.no_grad():
        for stem, raw in truth.items():
            img = pipeline_for(settings)(read_image(root / "images_detectron2/validation" / f"{stem}.jpg"),
                                         raw)["img"].unsqueeze(0)
            pred = scores_for(settings, model.encode_decode, img, n, raw.shape).argmax(1)[0].numpy()
            valid = (raw != IGNORE) & (raw != ids["stranger"])
            gt = np.vectorize(lambda v: by_id.get(int(v), -1))(raw)
            for c in range(n):
                inter[c] += ((pred == c) & (gt == c) & valid).sum()
                pred_area[c] += ((pred == c) & valid).sum()
                label_area[c] += ((gt == c) & valid).sum()
    union = pred_area + label_area - inter
    with np.errstate(invalid="ignore"):
        iou = 100 * inter / union
    assert res["num_images"] == 2 and res["class_mapping"]["ignored_dataset_classes"]
    assert "stranger" in res["class_mapping"]["ignored_dataset_classes"]
    for c, row in enumerate(res["per_class"]):
        assert row["class"] == model_classes[c]
        assert (row["IoU"] is None) == bool(union[c] == 0)
        if union[c]:
            assert row["IoU"] == pytest.approx(iou[c])
    assert res["mIoU"] == pytest.approx(np.nanmean(iou))
    assert res["aAcc"] == pytest.approx(100 * inter.sum() / label_area.sum())
    assert label_area[[model_classes.index(c) for c in info["heldout"]]].sum() > 0  # held-out classes are scored


def test_wide_labels_through_training_transforms_and_losses():
    """Above 255 classes the crop pads with 65535 and the losses ignore 65535, not class 255."""
    import torch
    from torch.nn import functional as F

    from segmentation.data.transforms import TrainPipeline
    from segmentation.models.property_head import PropertyBank, cross_entropy_loss

    label = np.full((8, 8), 300, np.int32)
    label[:, :2] = 255
    label[0] = IGNORE
    out = TrainPipeline(scale=(8, 8), ratio_range=(1.0, 1.0), crop_size=(12, 12), flip_prob=0.0,
                        photometric=False)(np.zeros((8, 8, 3), np.uint8), label, np.random.default_rng(0))
    y = out["label"]
    assert set(torch.unique(y).tolist()) == {255, 300, IGNORE}
    assert (y[8:] == IGNORE).all() and (y[:, 8:] == IGNORE).all()

    logits = torch.randn(1, 301, 12, 12, generator=torch.Generator().manual_seed(0))
    valid = y != IGNORE
    want = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid.unsqueeze(0)], y[valid])
    assert float(cross_entropy_loss(logits, y.unsqueeze(0))) == pytest.approx(float(want), rel=1e-5)

    rows = torch.eye(301)
    bank = PropertyBank(rows, torch.randn(301, 8, generator=torch.Generator().manual_seed(1)))
    only_ignored = torch.full((1, 4, 4), IGNORE)
    assert float(bank.loss(torch.randn(1, 8, 4, 4), only_ignored)) == 0.0
    with pytest.raises(ProlabError, match=r"label ids must be in \[0, 301\) or 65535"):
        bank.loss(torch.randn(1, 8, 4, 4), torch.full((1, 4, 4), 400))
