"""Each dataset loader on a tree in its real layout, and every bad-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prolab_cli.errors import ProlabError
from segmentation.data.datasets import SegDataset, reduce_zero_label
from segmentation.data.layouts import LAYOUTS
from segmentation.data.synth import write_synth


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(h: int = 8, w: int = 10) -> np.ndarray:
    return np.full((h, w, 3), 100, np.uint8)


def test_ade20k_hand_made_tree_reduces_zero_label(tmp_path):
    raw = np.array([[0, 1, 150, 2]] * 3, np.uint8)
    _png(tmp_path / "images/training/ADE_train_1.jpg", _rgb(3, 4))
    _png(tmp_path / "annotations/training/ADE_train_1.png", raw)
    ds = SegDataset("ade20k", tmp_path, "train")
    assert len(ds.classes) == 150 and ds.classes[0] == "wall"
    _, label = ds.load(ds.samples[0])
    assert label[0].tolist() == [255, 0, 149, 1]


def test_cityscapes_recursive_cities_and_suffixes(tmp_path):
    for city in ("aachen", "bremen"):
        stem = f"{city}_000000_000019"
        _png(tmp_path / f"leftImg8bit/val/{city}/{stem}_leftImg8bit.png", _rgb())
        _png(tmp_path / f"gtFine/val/{city}/{stem}_gtFine_labelTrainIds.png", np.full((8, 10), 18, np.uint8))
        # other gtFine files of the real layout must not be mistaken for images or masks
        _png(tmp_path / f"gtFine/val/{city}/{stem}_gtFine_labelIds.png", np.full((8, 10), 33, np.uint8))
    ds = SegDataset("cityscapes", tmp_path, "val")
    assert [s.name for s in ds.samples] == ["aachen/aachen_000000_000019", "bremen/bremen_000000_000019"]
    assert ds.load(ds.samples[0])[1].max() == 18 and len(ds.classes) == 19


def test_coco_stuff_label_train_ids_keep_zero(tmp_path):
    _png(tmp_path / "images/val2017/000000000139.jpg", _rgb(2, 9))
    _png(tmp_path / "annotations/val2017/000000000139_labelTrainIds.png", np.array([[0, 170, 255] * 3] * 2, np.uint8))
    _png(tmp_path / "images/val2017/000000000285.jpg", _rgb(2, 9))
    _png(tmp_path / "annotations/val2017/000000000285_labelTrainIds.png", np.zeros((2, 9), np.uint8))
    ds = SegDataset("coco-stuff", tmp_path, "val")
    labels = {s.name: ds.load(s)[1] for s in ds.samples}
    assert labels["000000000285"].shape == (2, 9)
    assert labels["000000000139"][0, :3].tolist() == [0, 170, 255]
    assert len(ds.classes) == 171


def test_pascal_context_split_file(tmp_path):
    for stem in ("2008_000002", "2008_000007"):
        _png(tmp_path / f"JPEGImages/{stem}.jpg", _rgb())
        _png(tmp_path / f"SegmentationClassContext/{stem}.png", np.full((8, 10), 59, np.uint8))
    (tmp_path / "ImageSets/SegmentationContext").mkdir(parents=True)
    (tmp_path / "ImageSets/SegmentationContext/val.txt").write_text("2008_000007\n")
    ds = SegDataset("pascal-context-59", tmp_path, "val")
    assert [s.name for s in ds.samples] == ["2008_000007"]
    assert ds.load(ds.samples[0])[1].max() == 58


@pytest.mark.parametrize("layout", sorted(name for name, lay in LAYOUTS.items() if lay.class_count is None))
def test_synth_writes_every_layout_and_loader_reads_it(tmp_path, layout):
    root = write_synth(tmp_path / layout, layout=layout, num_train=3, num_val=2, size=32, num_seen=4, num_heldout=2)
    classes = (root / "classes.txt").read_text().split("\n")[:-1]
    assert len(classes) == 7
    train, val = SegDataset(layout, root, "train"), SegDataset(layout, root, "val")
    assert (len(train), len(val)) == (3, 2) and train.classes == classes
    train_ids = set()
    for ds in (train,):
        for s in ds.samples:
            train_ids |= set(np.unique(ds.load(s)[1]).tolist())
    assert train_ids <= set(range(5)), "held-out classes must never appear in training"
    val_ids = set(np.unique(val.load(val.samples[0])[1]).tolist())
    assert val_ids & {5, 6}, "the first validation image carries a held-out class"


def test_target_classes_map_by_name_and_ignore_the_rest(tmp_path):
    root = write_synth(tmp_path / "s", layout="generic", num_train=1, num_val=2, size=32, num_seen=4, num_heldout=2)
    names = (root / "classes.txt").read_text().split("\n")[:-1]
    ds = SegDataset("generic", root, "val", target_classes=[names[0], *names[1:5]])
    full = SegDataset("generic", root, "val")
    a, b = ds.load(ds.samples[0])[1], full.load(full.samples[0])[1]
    assert np.array_equal(a[b < 5], b[b < 5]) and (a[b >= 5] == 255).all()


def test_missing_folder_names_it(tmp_path):
    (tmp_path / "images/training").mkdir(parents=True)
    with pytest.raises(ProlabError, match="annotations/training: folder not found"):
        SegDataset("ade20k", tmp_path, "train")


def test_image_without_mask_is_an_error_or_skipped(tmp_path):
    _png(tmp_path / "images/training/a.jpg", _rgb())
    _png(tmp_path / "annotations/training/a.png", np.ones((8, 10), np.uint8))
    _png(tmp_path / "images/training/b.jpg", _rgb())
    with pytest.raises(ProlabError, match="b.jpg: image without a mask"):
        SegDataset("ade20k", tmp_path, "train")
    ds = SegDataset("ade20k", tmp_path, "train", skip_bad=True)
    assert len(ds) == 1 and [p.name for p, _ in ds.skipped] == ["b.jpg"]


def test_wrong_mask_size_and_out_of_range_labels(tmp_path):
    _png(tmp_path / "images/training/a.jpg", _rgb())
    _png(tmp_path / "annotations/training/a.png", np.ones((4, 10), np.uint8))
    _png(tmp_path / "images/training/b.jpg", _rgb())
    _png(tmp_path / "annotations/training/b.png", np.full((8, 10), 151, np.uint8))
    _png(tmp_path / "images/training/c.jpg", _rgb())
    _png(tmp_path / "annotations/training/c.png", np.full((8, 10), 150, np.uint8))
    ds = SegDataset("ade20k", tmp_path, "train")
    with pytest.raises(ProlabError, match=r"a.png: mask is 10x4 but its image is 10x8"):
        ds[0]
    with pytest.raises(ProlabError, match=r"b.png: label 151 out of range \(150 classes, reduce_zero_label\)"):
        ds[1]
    skipping = SegDataset("ade20k", tmp_path, "train", skip_bad=True)
    assert [s.name for s in skipping.samples] == ["c"] and len(skipping.skipped) == 2


def test_16_bit_mask_reads_and_refuses_labels_above_255(tmp_path):
    _png(tmp_path / "images/10k/train/a.jpg", _rgb())
    _png(tmp_path / "labels/sem_seg/masks/train/a.png", np.full((8, 10), 3, np.uint16))
    _png(tmp_path / "images/10k/train/b.jpg", _rgb())
    _png(tmp_path / "labels/sem_seg/masks/train/b.png", np.full((8, 10), 300, np.uint16))
    ds = SegDataset("bdd100k", tmp_path, "train")
    assert ds.load(ds.samples[0])[1].dtype == np.uint8 and (ds.load(ds.samples[0])[1] == 3).all()
    with pytest.raises(ProlabError, match=r"b.png: label 300 out of range \(at most 255\)"):
        ds[1]


def test_rgb_mask_is_refused(tmp_path):
    _png(tmp_path / "images/10k/train/x.jpg", _rgb())
    _png(tmp_path / "labels/sem_seg/masks/train/x.png", _rgb())
    with pytest.raises(ProlabError, match="x.png: mask has mode RGB"):
        SegDataset("bdd100k", tmp_path, "train")[0]


def test_generic_layout_needs_a_class_list(tmp_path):
    _png(tmp_path / "images/train/a.png", _rgb())
    _png(tmp_path / "masks/train/a.png", np.ones((8, 10), np.uint8))
    with pytest.raises(ProlabError, match="classes.txt"):
        SegDataset("generic", tmp_path, "train")
    (tmp_path / "mine.txt").write_text("sky\nroad\n")
    assert SegDataset("generic", tmp_path, "train", classes=tmp_path / "mine.txt").classes == ["sky", "road"]


def test_reduce_zero_label_function():
    raw = np.array([0, 1, 2, 255], np.uint8)
    assert reduce_zero_label(raw).tolist() == [255, 0, 1, 255]


def test_subset_label_space_keeps_the_seen_rows_over_the_same_centres(tmp_path):
    import json

    from prolab_cli.artifact import LabelSpace
    from prolab_cli.extend import run_extend
    from segmentation.data.synth import attribute_label_space

    root = write_synth(tmp_path / "s", layout="generic", num_train=1, num_val=1, size=32, num_seen=4, num_heldout=2)
    full = attribute_label_space(root, "toy-all").save(tmp_path / "spaces")
    _, path, _ = run_extend(full, keep=str(root / "descriptions_seen.json"), name="toy-seen",
                            out_dir=tmp_path / "spaces")
    space, sub = LabelSpace.load(full), LabelSpace.load(path)
    seen = list(json.loads((root / "descriptions_seen.json").read_text()))
    assert sub.classes == seen and sub.centres_hash == space.centres_hash
    assert np.array_equal(sub.multi_hot, space.multi_hot[[space.classes.index(c) for c in seen]])
    assert sub.property_names == space.property_names
    assert sub.manifest["provenance"]["subset_of"]["name"] == "toy-all"
