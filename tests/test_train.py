"""Training, kill-and-resume, NaN stop, DDP, eval and predict on a tiny synthetic dataset (CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prolab_cli.errors import ProlabError
from segmentation.data.synth import attribute_label_space
from segmentation.engine.checkpoint import load_checkpoint
from segmentation.engine.evaluate import evaluate
from segmentation.engine.predict import predict
from segmentation.engine.train import train

from conftest import synth_world, tiny_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    torch.set_num_threads(1)
    world = synth_world(tmp_path_factory.mktemp("synth"), num_train=16, num_val=4, size=64, num_seen=6, seed=1)
    world["other"] = attribute_label_space(world["data"], "toy-other", seed=5).save(world["root"] / "spaces")
    return world


def _config(**sets):
    return tiny_config(64, **{"schedule.max_iters": 30, "schedule.warmup_iters": 3, "train.log_interval": 1,
                              "train.ckpt_interval": 1000, **sets})


@pytest.fixture(scope="module")
def trained(synth):
    losses = []
    work = synth["root"] / "run"
    result = train(_config(), synth["data"], work_dir=work, label_space=synth["seen"], progress=False,
                   on_iteration=lambda it, rec: losses.append(rec["loss"]), map_classes_by_name=True)
    return {"work": work, "losses": losses, "result": result}


def test_loss_falls_and_checkpoint_is_complete(trained, synth):
    losses = trained["losses"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    ckpt = load_checkpoint(trained["work"])
    assert ckpt["iteration"] == 30 and ckpt["meta"]["preset"] == "vit-adapter-nano"
    assert ckpt["meta"]["label_space"]["name"] == "toy-seen"
    assert ckpt["meta"]["classes"] == synth["info"]["seen"]
    assert {"optimizer", "scheduler", "rng", "config", "bank"} <= set(ckpt)
    log = [json.loads(line) for line in (trained["work"] / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == list(range(1, 31)) and {"lr", "loss", "decode.loss", "aux.loss"} <= set(log[0])


def test_kill_and_resume_gives_the_same_weights(synth, tmp_path):
    cfg = _config(**{"schedule.max_iters": 6, "train.ckpt_interval": 3})
    straight = train(cfg, synth["data"], work_dir=tmp_path / "a", label_space=synth["seen"], progress=False, map_classes_by_name=True)

    def kill(it, rec):
        if it == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, synth["data"], work_dir=tmp_path / "b", label_space=synth["seen"], progress=False, on_iteration=kill,
              map_classes_by_name=True)
    assert (tmp_path / "b" / "last_checkpoint").read_text().strip() == "iter_3.pth"
    resumed = train(cfg, synth["data"], work_dir=tmp_path / "b", label_space=None, resume=True, progress=False)  # label space from the checkpoint
    a = load_checkpoint(straight["checkpoint"])["state_dict"]
    b = load_checkpoint(resumed["checkpoint"])["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["loss"] == resumed["loss"]


def test_resume_with_a_raised_max_iters_extends_the_run(synth, tmp_path):
    flat = {"schedule.warmup_iters": 0, "schedule.power": 0, "train.ckpt_interval": 2}  # constant lr
    straight = train(_config(**flat, **{"schedule.max_iters": 4}), synth["data"], work_dir=tmp_path / "a", label_space=synth["seen"],
                     progress=False, map_classes_by_name=True)
    short = _config(**flat, **{"schedule.max_iters": 2})
    train(short, synth["data"], work_dir=tmp_path / "b", label_space=synth["seen"], progress=False, map_classes_by_name=True)
    with pytest.raises(ProlabError, match=r"already trained 2 of schedule.max_iters=2 .*override schedule.max_iters"):
        train(None, synth["data"], work_dir=tmp_path / "b", resume=True, progress=False)
    with pytest.raises(ProlabError, match=r"train.overrides 'model.preset=vit-adapter-t': a resumed run keeps"):
        train(None, synth["data"], work_dir=tmp_path / "b", resume=True, progress=False,
              overrides=["schedule.max_iters=4", "model.preset=vit-adapter-t"])
    longer = train(None, synth["data"], work_dir=tmp_path / "b", resume=True, progress=False,
                   overrides=["schedule.max_iters=4"])
    assert longer["iterations"] == 4 and longer["checkpoint"].endswith("iter_4.pth")
    a = load_checkpoint(straight["checkpoint"])
    b = load_checkpoint(longer["checkpoint"])
    assert b["config"]["schedule"]["max_iters"] == 4 and b["scheduler"]["max_iters"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert json.loads((tmp_path / "b" / "config.json").read_text())["schedule"]["max_iters"] == 4


def test_cli_resume_refuses_flags_that_would_change_the_config(tmp_path):
    from click.testing import CliRunner

    from prolab_cli.cli import main

    res = CliRunner().invoke(main, ["train", "--data-root", str(tmp_path), "--work-dir", str(tmp_path),
                                    "--resume", "--preset", "vit-adapter-t", "--config", "synth-vit-adapter-nano"])
    assert res.exit_code == 1
    assert "--resume continues the checkpoint's config: --config, --preset cannot change it" in res.output


def test_resume_refuses_another_label_space(synth, trained):
    with pytest.raises(ProlabError, match="trained with label space 'toy-seen'"):
        train(_config(), synth["data"], work_dir=trained["work"], label_space=synth["all"], resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(synth, tmp_path):
    cfg = _config(**{"optim.lr": 1e36, "schedule.warmup_iters": 0, "train.ckpt_interval": 1, "model.head": "onehot"})
    with pytest.raises(ProlabError, match=r"loss is (nan|inf) at iteration \d+: training stopped; the last good checkpoint is .*iter_\d+\.pth"):
        train(cfg, synth["data"], work_dir=tmp_path / "nan", label_space=synth["seen"], progress=False, map_classes_by_name=True)
    assert list((tmp_path / "nan").glob("iter_*.pth"))


def test_eval_on_synthetic_data_and_held_out_classes(synth, trained, tmp_path):
    with pytest.raises(ProlabError, match=r"the classes of .*: its class list differs from the ade20k dataset's \(9 classes\) at "
                                          r".*eval.map_classes_by_name to match"):
        evaluate(trained["work"], synth["data"], progress=False)
    seen = evaluate(trained["work"], synth["data"], output=tmp_path / "seen.json", progress=False,
                    map_classes_by_name=True)
    written = json.loads((tmp_path / "seen.json").read_text())
    assert written["mIoU"] == seen["mIoU"]
    assert written["class_mapping"]["by_name"] and written["class_mapping"]["ignored_dataset_classes"] == synth["info"]["heldout"]
    assert [r["class"] for r in seen["per_class"]] == synth["info"]["seen"]
    assert seen["aAcc"] > 50 and not seen["swapped_class_rows"]
    full = evaluate(trained["work"], synth["data"], label_space=synth["all"], mode="slide",
                    crop=(32, 32), stride=(16, 16), flip=True, progress=False)
    for result in (seen, full):  # the headline number is the mean over the classes the table scores
        scored = [r["IoU"] for r in result["per_class"] if r["IoU"] is not None]
        assert result["mIoU"] == pytest.approx(sum(scored) / len(scored))
    assert full["swapped_class_rows"]
    assert [r["class"] for r in full["per_class"]] == synth["info"]["seen"] + synth["info"]["heldout"]
    # held-out pixels are ignored under the seen label space and scored under the full one
    held = [r for r in full["per_class"] if r["class"] in synth["info"]["heldout"]]
    assert any(r["Acc"] is not None for r in held)
    with pytest.raises(ProlabError, match="different centres"):
        evaluate(trained["work"], synth["data"], label_space=synth["other"], progress=False)


def test_onehot_head_trains_without_a_label_space(synth, tmp_path):
    cfg = _config(**{"schedule.max_iters": 2, "model.head": "onehot"})
    result = train(cfg, synth["data"], work_dir=tmp_path / "oh", label_space=None, progress=False)
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["meta"]["head"] == "onehot" and len(ckpt["meta"]["classes"]) == 9


def test_predict_writes_masks_overlays_and_property_maps(synth, trained, tmp_path):
    image = sorted((synth["data"] / "images" / "validation").glob("*.jpg"))[0]
    summaries = predict([image], trained["work"], out_dir=tmp_path / "pred", top_properties=2)
    stem = image.stem
    for suffix in ("_mask.png", "_overlay.png", ".json"):
        assert (tmp_path / "pred" / f"{stem}{suffix}").is_file()
    from PIL import Image

    labels = np.asarray(Image.open(tmp_path / "pred" / "labels" / f"{stem}.png"))  # raw ids, apart from the pictures
    overlay = np.asarray(Image.open(tmp_path / "pred" / f"{stem}_overlay.png"))
    assert overlay.shape[1] > labels.shape[1] and overlay.shape[0] >= labels.shape[0]  # the legend panel beside it
    region = summaries[0]["regions"][0]
    assert len(region["top_properties"]) == 2
    maps = [np.asarray(Image.open(tmp_path / "pred" / p["map"])) for p in region["top_properties"]]
    assert not np.array_equal(maps[0], maps[1])  # each map stretched over its own range
    lo, hi = region["top_properties"][0]["display_range"]
    assert 0.0 <= lo <= hi <= 1.0
    assert region["top_properties"][0]["name"] in ["ground", "red", "green", "blue", "yellow", "purple", "cyan",
                                                   "plain", "striped", "dotted", "checkered", "disc", "square",
                                                   "triangle", "cross"]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(synth, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "prolab_cli.cli", "train", "--config", "synth-vit-adapter-nano", "--data-root", str(synth["data"]),
           "--label-space", str(synth["seen"]), "--map-classes-by-name", "--work-dir", str(tmp_path / "ddp"), "--device", "cpu",
           "--threads", "1", "-q", "--set", "schedule.max_iters=3", "--set", "data.batch_size=2",
           "--set", "data.crop_size=[64,64]", "--set", "model.img_size=64", "--set", "train.log_interval=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3], "only rank 0 logs"
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt["iteration"] == 3 and not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_accumulation_clipping_and_bf16_autocast(synth, tmp_path):
    records = []
    cfg = _config(**{"schedule.max_iters": 2, "train.accum_steps": 2, "optim.grad_clip": 1.0, "train.amp": "bf16"})
    train(cfg, synth["data"], work_dir=tmp_path / "acc", label_space=synth["seen"], progress=False,
          on_iteration=lambda it, rec: records.append(rec), map_classes_by_name=True)
    assert len(records) == 2 and all(r["grad_norm"] > 0 for r in records)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


def test_label_space_with_foreign_classes_is_refused(synth, tmp_path):
    import numpy as np

    from prolab_cli.artifact import LabelSpace

    space = LabelSpace.from_arrays("zoo", ["ground", "zebra"], np.eye(2, dtype=np.float32), np.eye(2, 4, dtype=np.float32))
    path = space.save(tmp_path)
    cfg = _config(**{"schedule.max_iters": 1})
    second = re.escape(repr((synth["data"] / "classes.txt").read_text().split("\n")[1]))
    with pytest.raises(ProlabError, match=r"label space 'zoo': its class list differs from the ade20k dataset at .* "
                                          rf"\(9 classes\) at index 1: 'zebra' vs {second}"):
        train(cfg, synth["data"], work_dir=tmp_path / "zoo-run", label_space=path, progress=False)
    with pytest.raises(ProlabError, match=r"label space 'zoo': classes \['zebra'\] are not classes of the ade20k dataset"):
        train(cfg, synth["data"], work_dir=tmp_path / "zoo-run", label_space=path, progress=False, map_classes_by_name=True)


def test_predict_refuses_two_images_with_one_stem(trained, tmp_path):
    with pytest.raises(ProlabError, match=r"a/x.jpg and .*b/x.png: both would write x_\*.png"):
        predict([tmp_path / "a/x.jpg", tmp_path / "b/x.png"], trained["work"], out_dir=tmp_path / "out")


def test_predict_restricted_to_a_class_list(synth, trained, tmp_path):
    (tmp_path / "two.txt").write_text("ground\n" + synth["info"]["seen"][1] + "\n")
    image = sorted((synth["data"] / "images" / "validation").glob("*.jpg"))[1]
    summary = predict([image], trained["work"], out_dir=tmp_path / "p2", classes=tmp_path / "two.txt")[0]
    assert summary["classes"] == ["ground", synth["info"]["seen"][1]]
    from PIL import Image

    assert set(np.unique(np.asarray(Image.open(tmp_path / "p2" / "labels" / f"{image.stem}.png"))).tolist()) <= {0, 1}
    (tmp_path / "bad.txt").write_text("unicorn\n")
    with pytest.raises(ProlabError, match=r"bad.txt: classes \['unicorn'\] are not classes of the model"):
        predict([image], trained["work"], out_dir=tmp_path / "p3", classes=tmp_path / "bad.txt")


def test_bad_mask_found_by_a_loader_worker_is_a_one_line_error(synth, tmp_path):
    import shutil

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(synth["data"], data)
    for mask in (data / "annotations" / "training").glob("*.png"):
        Image.fromarray(np.full((8, 8), 1, np.uint8)).save(mask)
    cfg = _config(**{"schedule.max_iters": 1, "data.num_workers": 1})
    with pytest.raises(ProlabError) as info:
        train(cfg, data, work_dir=tmp_path / "w", label_space=synth["seen"], progress=False, map_classes_by_name=True)
    assert "\n" not in info.value.message and "mask is 8x8 but its image is 64x64" in info.value.message


def test_class_list_mismatch_is_a_one_line_cli_error_and_by_name_mapping_is_explicit(synth, trained, tmp_path):
    from click.testing import CliRunner

    from prolab_cli.cli import main

    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(trained["work"]), "--data-root", str(synth["data"]),
                                    "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and f"differs from the ade20k dataset's (9 classes) at index 7: (none) vs " \
                                f"{synth['info']['heldout'][0]!r} (7 classes vs 9)" in lines[0]
    assert "or --map-classes-by-name to match the classes by name" in lines[0]  # the CLI spells the field as its flag
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(trained["work"]), "--data-root", str(synth["data"]),
                                    "-q", "--map-classes-by-name", "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert f"dataset classes with no match (ignored): {synth['info']['heldout']}" in res.output
    assert json.loads((tmp_path / "m.json").read_text())["class_mapping"]["ignored_dataset_classes"] == \
        synth["info"]["heldout"]

    image = sorted((synth["data"] / "images" / "validation").glob("*.jpg"))[0]
    # toy-all extends the trained classes (they come first, as `prolab extend` writes): accepted as it is
    summary = predict([image], trained["work"], out_dir=tmp_path / "p", label_space=synth["all"])[0]
    assert summary["classes"][-2:] == synth["info"]["heldout"]
    from prolab_cli.artifact import LabelSpace

    full = LabelSpace.load(synth["all"])
    reordered = full.subset(list(reversed(full.classes)), "toy-reversed").save(tmp_path)
    first = re.escape(repr(full.classes[-1]))
    with pytest.raises(ProlabError, match=r"label space 'toy-reversed': its class list differs from the classes of "
                                          rf".* at index 0: {first} vs .* or predict.map_classes_by_name to match"):
        predict([image], trained["work"], out_dir=tmp_path / "p", label_space=reordered)
    summary = predict([image], trained["work"], out_dir=tmp_path / "p", label_space=reordered, map_classes_by_name=True)[0]
    assert summary["classes"] == list(reversed(full.classes))


def test_banded_labels_equal_the_whole_image_ones():
    """Above the memory budget the labels come band by band from the model-resolution scores; they equal
    the whole-image argmax (flip included) and the rows equal F.interpolate up to float rounding."""
    from torch.nn import functional as F

    from segmentation.engine.inference import labels_for, upsample_rows

    torch.manual_seed(0)
    low = torch.randn(1, 5, 37, 53)
    full = F.interpolate(low, size=(701, 1003), mode="bilinear", align_corners=False)
    rows = torch.cat([upsample_rows(low, (701, 1003), r, min(r + 97, 701)) for r in range(0, 701, 97)], dim=2)
    torch.testing.assert_close(rows, full, atol=1e-6, rtol=0)
    weights = torch.randn(7, 3, 1, 1)

    def score_fn(x):  # a 1x1 conv at a quarter of the input's resolution, as a segmentor's decoder scores
        return F.conv2d(F.avg_pool2d(x, 4), weights).repeat_interleave(4, -1).repeat_interleave(4, -2)

    img = torch.randn(1, 3, 96, 128)
    for flip in (False, True):
        settings = {"mode": "whole", "crop_size": [64, 64], "stride": [32, 32], "flip": flip}
        whole, scores, low = labels_for(settings, score_fn, img, 7, (480, 640), num_classes=5, keep=[0, 2, 3, 4])
        banded, none, low = labels_for(settings, score_fn, img, 7, (480, 640), num_classes=5, keep=[0, 2, 3, 4],
                                       full_max_bytes=0, band_bytes=7 * 640 * 4 * 13)
        assert scores is not None and none is None and low.shape == (1, 7, 96, 128)
        assert torch.equal(whole.long(), banded.long())


def test_predict_bounds_a_huge_image_and_refuses_one_past_the_limit(synth, trained, tmp_path, monkeypatch):
    from PIL import Image

    import segmentation.engine.inference as inference

    canvas = Image.new("P", (3000, 2200))  # a palette PNG: a few KB on disk, 6.6 megapixels decoded
    canvas.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    canvas.paste(1, (500, 400, 1500, 1600))
    canvas.save(tmp_path / "big.png")
    whole = predict([tmp_path / "big.png"], trained["work"], out_dir=tmp_path / "whole", top_properties=1)[0]
    monkeypatch.setattr(inference, "FULL_SCORES_MAX_BYTES", 2**20)  # what a 12000x12000 image meets
    banded = predict([tmp_path / "big.png"], trained["work"], out_dir=tmp_path / "banded", top_properties=1)[0]
    ids = [np.asarray(Image.open(tmp_path / d / "labels" / "big.png")) for d in ("whole", "banded")]
    assert ids[0].shape == (2200, 3000) and (ids[0] == ids[1]).mean() > 0.9999
    assert [r["class"] for r in banded["regions"]] == [r["class"] for r in whole["regions"]]
    overlay = Image.open(tmp_path / "banded" / "big_overlay.png")
    assert max(overlay.size) <= 2048 + 400  # a display-size picture (plus its legend), not 3000 px
    with pytest.raises(ProlabError, match=r"big.png: 3000x2200 = 6.6 megapixels, above the limit of 5 \(max_pixels"):
        predict([tmp_path / "big.png"], trained["work"], out_dir=tmp_path / "refused", max_pixels=5_000_000)
    assert not (tmp_path / "refused").exists()
