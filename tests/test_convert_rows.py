"""Paper rows in `prolab convert`: which row a released checkpoint is (from the released key layouts,
on the meta device), the one-line errors, and a self-describing converted checkpoint that `prolab eval`
evaluates with no other option (a small registered row, so it runs on CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from prolab_cli.classes import load_classes
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError
from segmentation import zoo
from segmentation.engine import config as config_module
from segmentation.models import build_model
from segmentation.engine.row_match import dataset_hints, match_row

KEYS = Path(__file__).resolve().parent / "data" / "checkpoint_keys"
ADE = load_classes("ade20k")


def _layout(name: str, **shape_changes) -> dict[str, torch.Tensor]:
    """A released checkpoint's state dict as meta tensors (shapes only), with some shapes changed."""
    shapes = json.loads((KEYS / name).read_text())
    out = {}
    for key, shape in shapes.items():
        for suffix, new in shape_changes.items():
            if key.endswith(suffix):
                shape = new(shape) if callable(new) else new
        out[key] = torch.empty(shape, device="meta")
    return out


PROLAB_B = "prolab_vitadapter_b_upernet.json"
B_ROWS = ["ade20k-vit-adapter-b-prolab", "coco-stuff-vit-adapter-b-prolab", "pascal-context-59-vit-adapter-b-prolab",
          "cityscapes-vit-adapter-b-prolab", "bdd100k-vit-adapter-b-prolab"]


def test_vit_b_prolab_keys_fit_five_rows_and_evidence_picks_one():
    sd = _layout(PROLAB_B)
    with pytest.raises(ProlabError) as err:
        match_row(sd, "b.pth")
    assert str(err.value.message).startswith("b.pth: ambiguous, the checkpoint fits rows " + ", ".join(B_ROWS))
    expected = {(256, 150): "ade20k-vit-adapter-b-prolab", (256, 171): "coco-stuff-vit-adapter-b-prolab",
                (128, 59): "pascal-context-59-vit-adapter-b-prolab"}
    for (k, c), row in expected.items():
        assert match_row(sd, "b.pth", bank_entries={"x_cluster_embeddings_and_labels": (k, c)}).row.id == row
    with pytest.raises(ProlabError, match="fits rows cityscapes-vit-adapter-b-prolab, bdd100k-vit-adapter-b-prolab"):
        match_row(sd, "b.pth", bank_entries={"k": (32, 19)})
    exp = "upernet_deit_adapter_base_768_160k_bdd100k_bge_base_gpt3.5_cluster_32.py"
    match = match_row(sd, "b.pth", bank_entries={"k": (32, 19)}, meta={"exp_name": exp})
    assert match.row.id == "bdd100k-vit-adapter-b-prolab" and "mmseg meta names dataset bdd100k" in match.evidence
    config = "dataset_type = 'CityscapesDataset'\ndata_root = 'data/cityscapes/'\nbank = 'cityscapes_bdd_desc.pth'"
    assert match_row(sd, "b.pth", meta={"config": config, "CLASSES": ["c"] * 19}).row.id == "cityscapes-vit-adapter-b-prolab"
    with pytest.raises(ProlabError, match=r"meta names dataset bdd100k contradicts row cityscapes-vit-adapter-b-prolab"):
        match_row(sd, "b.pth", "cityscapes-vit-adapter-b-prolab", meta={"exp_name": exp})
    with pytest.raises(ProlabError, match=r"bank entry k \(K, classes\) \(256, 150\) contradicts row pascal"):
        match_row(sd, "b.pth", "pascal-context-59-vit-adapter-b-prolab", bank_entries={"k": (256, 150)}, bank_key="k")


def test_beit_rows_are_told_apart_by_their_relative_position_tables():
    embed = {"conv_seg.weight": lambda s: [768] + s[1:], "conv_seg.bias": [768]}
    beit_l = _layout("beit_adapter_l_upernet_ade150.json", **embed)
    assert match_row(beit_l, "l.pth").row.id == "ade20k-beit-adapter-l-640-prolab"  # 40x40 window: 79^2 + 3 rows
    beit_v2 = _layout("beit_adapter_l_upernet_ade150.json", relative_position_bias_table=lambda s: [111 ** 2 + 3, s[1]],
                      **embed)  # 56x56 window at 896
    assert match_row(beit_v2, "v2.pth").row.id == "ade20k-beitv2-adapter-l-896-prolab"


def test_one_hot_and_unknown_checkpoints_fit_no_row():
    onehot_b = _layout("vitadapter_b_upernet_ade150.json")
    assert match_row(onehot_b, "oh.pth") is None
    with pytest.raises(ProlabError, match=r"oh.pth: keys/shapes do not fit row ade20k-vit-adapter-b-prolab "
                                          r"\(vit-adapter-b, img_size 512, heads emitting 768 channels\); rows they fit: none"):
        match_row(onehot_b, "oh.pth", "ade20k-vit-adapter-b-prolab")
    with pytest.raises(ProlabError, match=r"unknown row 'ade20k-b'; rows: ade20k-vit-adapter-b-prolab, coco-stuff"):
        match_row(onehot_b, "oh.pth", "ade20k-b")


def test_dataset_hints_ignore_the_shared_cityscapes_bdd_bank_name():
    assert dataset_hints({"config": "desc_weights_dict_path = 'embeddings/cityscapes_bdd_desc.pth'"}) == set()
    assert dataset_hints({"exp_name": "upernet_deit_adapter_base_512_320k_ade20k_bge_base.py"}) == {"ade20k"}
    assert dataset_hints({"exp_name": "a_ade20k_b.py", "config": "data_root = 'data/cityscapes/'"}) == set()


# --- end to end on a small registered row -------------------------------------------------------------

TINY_PRESET = """base: _base
model: {preset: vit-adapter-nano, img_size: 64, temperature: 0.02, normalize_embedding: true}
label_space: {num_properties: 8}
test: {mode: slide, crop_size: [64, 64], stride: [43, 43], scale: [160, 64], size_divisor: 32, pad_short_side: 96}
"""


def _tiny_row(row_id: str, dataset: str = "ade20k", classes: int = 150) -> zoo.Row:
    return zoo.Row(row_id, "tiny", dataset, classes, 8, 0.02, True, 0.0, f"configs/{row_id}.py", "none",
                   "tiny_bank.pth", "tiny_cluster_8_embeddings_and_labels", "tiny-space", "data", embed_dim=16)


@pytest.fixture()
def tiny_rows(tmp_path, monkeypatch):
    """Two extra rows sharing one small architecture: tiny-ade (ADE20K) and tiny-city (Cityscapes)."""
    configs = tmp_path / "configs"
    shutil.copytree(config_module.CONFIG_DIR, configs)
    (configs / "tiny-ade.yaml").write_text(TINY_PRESET + "dataset: ade20k\n")
    (configs / "tiny-city.yaml").write_text(TINY_PRESET + "dataset: cityscapes\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", configs)
    monkeypatch.setitem(zoo.ROWS, "tiny-ade", _tiny_row("tiny-ade"))
    monkeypatch.setitem(zoo.ROWS, "tiny-city", _tiny_row("tiny-city", "cityscapes", 19))


def _bank(path: Path, classes: int, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A bank .pth as ProLab's configs load it: {key: [centres [D,K], multi-hot [K,C] float64]}."""
    rng = np.random.default_rng(seed)
    rows = (rng.random((classes, 8)) < 0.4).astype(np.float64)
    rows[:, 0] = 1
    rows[np.arange(classes), 1 + np.arange(classes) % 7] = 1
    centres = rng.normal(size=(8, 16)).astype(np.float32)
    torch.save({"tiny_cluster_8_embeddings_and_labels": [torch.from_numpy(centres.T.copy()), torch.from_numpy(rows.T.copy())]},
               path)
    return path, rows, centres


def _released(path: Path, model, meta: dict | None = None) -> Path:
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "meta": meta or {}}, path)
    return path


def _ade_split(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(64, 96), (80, 64)]):
        img, ann = root / "images" / "validation", root / "annotations" / "validation"
        img.mkdir(parents=True, exist_ok=True), ann.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img / f"ADE_val_{i}.jpg")
        Image.fromarray(rng.integers(0, 6, (h, w), dtype=np.uint8)).save(ann / f"ADE_val_{i}.png")
    return root


def test_converted_row_checkpoint_evaluates_as_its_preset_with_no_other_option(tiny_rows, tmp_path):
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint

    bank, rows, centres = _bank(tmp_path / "tiny_bank.pth", 150)
    torch.manual_seed(0)
    original = build_model("vit-adapter-nano", class_rows=rows, centres=centres, temperature=0.02,
                               normalize_embedding=True)
    src = _released(tmp_path / "released.pth", original, {"CLASSES": tuple(ADE), "exp_name": "tiny_ade20k.py"})
    dst = tmp_path / "converted.pth"
    res = CliRunner().invoke(main, ["convert", str(src), str(dst), "--bank", str(bank)])
    assert res.exit_code == 0, res.output
    assert "row tiny-ade (inferred;" in res.output
    assert ("eval will use: dataset ade20k, slide 64/43, scale (160, 64), size_divisor 32, pad short side 96, K 8, T 0.02, "
            "embedding normalised") in res.output

    ckpt = load_checkpoint(dst)
    assert ckpt["meta"]["row"] == "tiny-ade" and ckpt["meta"]["dataset"] == "ade20k"
    assert ckpt["meta"]["classes"] == ADE and ckpt["config"]["test"]["size_divisor"] == 32
    assert ckpt["config"]["test"]["pad_short_side"] == 96
    assert ckpt["meta"]["model_kwargs"]["temperature"] == 0.02 and ckpt["meta"]["model_kwargs"]["normalize_embedding"]
    loaded, classes, _ = model_from_checkpoint(ckpt)
    original.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_decode(x), original.encode_decode(x), rtol=0, atol=0)

    data = _ade_split(tmp_path / "ade")
    out = tmp_path / "metrics.json"
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(dst), "--data-root", str(data), "-o", str(out),
                                    "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "evaluating" in res.output and "(row tiny-ade)" in res.output
    assert ("slide crop 64x64 stride 43x43, resize to 160x64 (keep ratio), size_divisor 32, pad short side 96, "
            "flip off") in res.output
    used = json.loads(out.read_text())["settings"]
    assert {k: used[k] for k in ("row", "dataset", "num_classes", "head", "K", "T", "normalize_embedding", "mode",
                                 "crop_size", "stride", "scale", "size_divisor", "pad_short_side", "flip",
                                 "overridden")} == {
        "row": "tiny-ade", "dataset": "ade20k", "num_classes": 150, "head": "property", "K": 8, "T": 0.02,
        "normalize_embedding": True, "mode": "slide", "crop_size": [64, 64], "stride": [43, 43], "scale": [160, 64],
        "size_divisor": 32, "pad_short_side": 96, "flip": False, "overridden": []}
    assert json.loads(out.read_text())["test"]["pad_short_side"] == 96


def test_named_row_with_a_label_space_and_explicit_overrides(tiny_rows, tmp_path):
    from prolab_cli.artifact import LabelSpace
    from segmentation.engine.checkpoint import load_checkpoint

    _, rows, centres = _bank(tmp_path / "b.pth", 19, seed=1)
    art = LabelSpace.from_arrays("city8", load_classes("cityscapes"), rows, centres).save(tmp_path)
    torch.manual_seed(0)
    src = _released(tmp_path / "city.pth", build_model("vit-adapter-nano", class_rows=rows, centres=centres))
    res = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "c.pth"), "--row", "tiny-city",
                                    "--label-space", str(art), "--temperature", "0.05"])
    assert res.exit_code == 0, res.output
    assert "row tiny-city (named;" in res.output and "T 0.05" in res.output
    ckpt = load_checkpoint(tmp_path / "c.pth")
    assert ckpt["config"]["model"]["temperature"] == 0.05 and ckpt["meta"]["dataset"] == "cityscapes"
    res = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "d.pth"), "--row", "tiny-ade",
                                    "--label-space", str(art)])
    assert res.exit_code == 1 and "label space 'city8' K=8, 19 classes contradicts row tiny-ade" in res.output


def _one_line_error(res, *parts: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    for part in parts:
        assert part in res.output, res.output


def test_convert_errors_are_one_line(tiny_rows, tmp_path):
    bank, rows, centres = _bank(tmp_path / "bank19.pth", 19)
    torch.manual_seed(0)
    prolab = _released(tmp_path / "p.pth", build_model("vit-adapter-nano", class_rows=rows, centres=centres))
    run = CliRunner().invoke
    # no bank and no meta: both tiny rows fit the keys
    _one_line_error(run(main, ["convert", str(prolab), str(tmp_path / "o.pth")]),
                    "ambiguous, the checkpoint fits rows", "tiny-ade, tiny-city", "--row")
    _one_line_error(run(main, ["convert", str(prolab), str(tmp_path / "o.pth"), "--row", "nope"]),
                    "unknown row 'nope'; rows: ade20k-vit-adapter-b-prolab", "tiny-city")
    onehot = _released(tmp_path / "oh.pth", build_model("vit-adapter-nano", num_classes=19))
    _one_line_error(run(main, ["convert", str(onehot), str(tmp_path / "o.pth"), "--row", "cityscapes-vit-adapter-b-prolab"]),
                    "keys/shapes do not fit row cityscapes-vit-adapter-b-prolab", "rows they fit: none")
    _one_line_error(run(main, ["convert", str(prolab), str(tmp_path / "o.pth"), "--row", "tiny-city"]),
                    "row tiny-city is a ProLab model: give --bank embeddings/tiny_bank.pth")
    _one_line_error(run(main, ["convert", str(prolab), str(tmp_path / "o.pth"), "--bank", str(bank), "--bank-key", "x"]),
                    "bank has no entry 'x' (entries: tiny_cluster_8_embeddings_and_labels)")
    two = tmp_path / "two.pth"
    entry = [torch.from_numpy(centres.T.copy()), torch.from_numpy(rows.T.copy())]
    torch.save({"a_cluster_8_embeddings_and_labels": entry, "b_cluster_8_embeddings_and_labels": entry}, two)
    _one_line_error(run(main, ["convert", str(prolab), str(tmp_path / "o.pth"), "--row", "tiny-city", "--bank", str(two)]),
                    "no entry 'tiny_cluster_8_embeddings_and_labels' and 2 entries with K=8, 19 classes", "--bank-key")
    # a property head that is no paper row needs its T named
    torch.manual_seed(0)
    other = _released(tmp_path / "k9.pth", build_model("vit-adapter-nano", class_rows=np.ones((19, 9)),
                                                            centres=np.ones((9, 16), np.float32)))
    k9 = tmp_path / "k9bank.pth"
    torch.save({"m_cluster_9_embeddings_and_labels": [torch.ones(16, 9), torch.ones(9, 19, dtype=torch.float64)]}, k9)
    _one_line_error(run(main, ["convert", str(other), str(tmp_path / "o.pth"), "--bank", str(k9),
                               "--classes", "cityscapes"]), "fits no paper row", "--temperature")
    res = run(main, ["convert", str(other), str(tmp_path / "o.pth"), "--bank", str(k9), "--classes", "cityscapes",
                     "--temperature", "0.04", "--no-normalize-embedding"])
    assert res.exit_code == 0 and "no paper row" in res.output, res.output
