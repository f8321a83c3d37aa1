"""The MMSegmentation 1.x plugin on CPU: same logits and losses as prolab's model, same metric as
`prolab eval`, checkpoints crossing between the engines, a Runner run killed and resumed under
torch's weights-only loading, and the one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mmseg", reason="needs the mmseg extra: pip install 'prolab[mmseg]' (make test installs it)")

from click.testing import CliRunner  # noqa: E402

from prolab_cli.errors import ProlabError  # noqa: E402
from segmentation.data.synth import attribute_label_space, write_synth  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "segmentation/mmseg_plugin/configs/synth-vit-adapter-nano-prolab.py"
CONFIGS = REPO / "segmentation/mmseg_plugin/configs"
TOL = 1e-6


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A tiny synthetic split (generic layout) whose JPEGs are re-encoded losslessly (PNG bytes
    under the same names: both engines sniff the format), so prolab's Pillow reader and mmcv's
    OpenCV reader see the same pixels; and its oracle label space."""
    import segmentation.mmseg_plugin  # noqa: F401
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mmseg")
    data = write_synth(root / "data", "generic", num_train=4, num_val=3, size=64, num_seen=4, num_heldout=0, seed=3)
    for path in data.glob("images/*/*.jpg"):
        buf = io.BytesIO()
        Image.open(path).convert("RGB").save(buf, format="PNG")
        path.write_bytes(buf.getvalue())
    info = json.loads((data / "synth.json").read_text())
    space = attribute_label_space(data, "toy", info["seen"]).save(root / "spaces")
    os.environ["PROLAB_SYNTH_ROOT"] = str(data)
    os.environ["PROLAB_SYNTH_SPACE"] = str(space)
    return {"root": root, "data": data, "space": space, "classes": info["seen"]}


def _cfg(synth, path=TINY):
    from segmentation.mmseg_plugin.runner import load_mmseg_config

    return load_mmseg_config(path, str(synth["root"] / "work"))


def _models(synth):
    """prolab's nano model and the MMSeg-built one from the tiny config, same weights, eval mode."""
    from mmseg.registry import MODELS

    from prolab_cli.artifact import LabelSpace
    from segmentation.models import build_model

    torch.manual_seed(0)
    space = LabelSpace.load(synth["space"])
    ours = build_model("vit-adapter-nano", class_rows=space.multi_hot, centres=space.centres,
                           temperature=0.04).eval()
    with torch.no_grad():  # non-zero injector gammas and BN statistics, so every branch counts
        for name, p in ours.named_parameters():
            if name.endswith("gamma"):
                p.normal_(0, 0.5)
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    theirs = MODELS.build(_cfg(synth).model).eval()
    result = theirs.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours, theirs


def test_same_weights_give_the_same_logits_and_losses(synth):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    ours, theirs = _models(synth)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    g = torch.Generator().manual_seed(1)
    img = torch.randn(2, 3, 64, 64, generator=g)
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64))] * 2
    with torch.no_grad():
        a = ours.encode_decode(img)
        b = theirs.encode_decode(img, metas)
    assert a.shape == b.shape == (2, len(synth["classes"]), 64, 64)
    diff = (a - b).abs().max().item()
    print(f"max |logit difference| = {diff:.3e}")
    assert diff <= TOL
    assert a.argmax(1).unique().numel() > 1  # a non-degenerate comparison

    label = torch.randint(0, len(synth["classes"]), (2, 64, 64), generator=g)
    label[:, :8] = 255
    samples = []
    for i in range(2):
        s = SegDataSample(metainfo=metas[i])
        s.gt_sem_seg = PixelData(data=label[i][None])
        samples.append(s)
    with torch.no_grad():
        ours_loss = ours.forward_train(img, label)
        their_loss = theirs.loss(img, samples)
    for mine, key in (("decode.loss", "decode.loss_prop"), ("aux.loss", "aux.loss_prop")):
        d = abs(ours_loss[mine].item() - their_loss[key].item())
        print(f"{key}: prolab {ours_loss[mine].item():.8f} mmseg {their_loss[key].item():.8f} diff {d:.1e}")
        assert d <= TOL


def _mmseg_metrics(metric) -> tuple[dict, list]:
    """aAcc / mIoU / mAcc in percent, unrounded, by IoUMetric's own ``total_area_to_metrics`` on
    its summed areas (in float64: its float32 division alone moves the 7th digit), and the areas."""
    from mmseg.evaluation import IoUMetric

    areas = [sum(x) for x in zip(*metric.results)]
    raw = IoUMetric.total_area_to_metrics(*[a.double() for a in areas], ["mIoU"])
    return ({"aAcc": float(raw["aAcc"]) * 100, "mIoU": float(np.nanmean(raw["IoU"])) * 100,
             "mAcc": float(np.nanmean(raw["Acc"])) * 100}, areas)


def test_iou_metric_equals_prolab_metric_on_random_maps():
    from mmseg.evaluation import IoUMetric

    from segmentation.engine.metrics import SegMetric

    g = torch.Generator().manual_seed(2)
    n = 6
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": [f"c{i}" for i in range(n)]}
    ours = SegMetric(n)
    for _ in range(5):
        pred = torch.randint(0, n - 1, (40, 50), generator=g)  # class 5 never predicted
        label = torch.randint(0, n - 2, (40, 50), generator=g)  # class 4 and 5 never labelled
        label[torch.rand(40, 50, generator=g) < 0.2] = 255
        metric.process({}, [{"pred_sem_seg": {"data": pred[None]}, "gt_sem_seg": {"data": label[None]}}])
        ours.update(pred, label)
    mine = ours.compute()
    theirs, areas = _mmseg_metrics(metric)
    assert all(torch.equal(a.double(), b) for a, b in zip(areas, ours.state()))  # the same pixel counts
    rounded = metric.compute_metrics(metric.results)
    for key in ("aAcc", "mIoU", "mAcc"):
        print(f"{key}: prolab {mine[key]:.10f} mmseg {theirs[key]:.10f} diff {abs(mine[key] - theirs[key]):.1e}")
        assert abs(mine[key] - theirs[key]) <= TOL
        assert round(mine[key], 2) == round(float(rounded[key]), 2)  # mmseg rounds, then keeps a float32


@pytest.fixture(scope="module")
def run(synth):
    """The tiny config trained through MMSeg's Runner in a subprocess that is SIGKILLed after
    iteration 5 (checkpoint and validation at 3), then resumed in-process to iteration 6."""
    work = synth["root"] / "run"
    kill_cfg = synth["root"] / "kill.py"
    kill_cfg.write_text(
        f"_base_ = [{str(TINY)!r}]\n"
        "custom_imports = dict(imports=['segmentation.mmseg_plugin', 'mmseg_kill_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='LabelSpaceCheckHook'), dict(type='KillAtIterHook', iteration=5)]\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "prolab_cli.cli", "mmseg", "train", str(kill_cfg), "--work-dir",
                           str(work), "--threads", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (work / "iter_3.pth").is_file() and not (work / "iter_6.pth").exists()

    from segmentation.mmseg_plugin import runner as mm_runner

    resumed = mm_runner.train(TINY, str(work), resume=True)
    return {"work": work, "runner": resumed, "log": proc.stdout + proc.stderr}


def test_runner_trains_validates_is_killed_and_resumes(run):
    from segmentation.mmseg_plugin.safe_load import mmengine_safe_globals

    runner, work = run["runner"], run["work"]
    assert runner.iter == 6
    assert "Iter(val)" in run["log"] and "mIoU" in run["log"]  # validated before the kill
    assert "Iter(train) [4/6]" in run["log"] and "[6/6]" not in run["log"]  # killed in iteration 5
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(work / "iter_6.pth")  # torch's protection stays on outside mmengine's loader
    with mmengine_safe_globals():
        ckpt = torch.load(work / "iter_6.pth", map_location="cpu")  # still weights_only=True
    assert ckpt["meta"]["iter"] == 6
    assert int(ckpt["optimizer"]["state"][0]["step"]) == 6  # AdamW state carried across the kill
    logs = sorted(work.glob("*/vis_data/scalars.json"))
    resumed_log = [json.loads(line) for line in logs[-1].read_text().splitlines()]
    assert [r["iter"] for r in resumed_log if "loss" in r] == [4, 5, 6]  # continued, not restarted
    assert any("mIoU" in r for r in resumed_log)


def test_torch_load_allow_list_refuses_other_globals(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    from segmentation.mmseg_plugin.safe_load import mmengine_safe_globals

    class Sneaky:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "__init_subclass__")

    path = tmp_path / "sneaky.pth"
    torch.save({"x": Sneaky()}, path)
    with mmengine_safe_globals(), pytest.raises(Exception, match="allow-list does not permit"):
        torch.load(path)


def test_checkpoints_cross_between_engines_and_eval_matches(run, synth, tmp_path):
    """MMSeg 1.x checkpoint -> `prolab convert` -> `prolab eval`; the converted (prolab) checkpoint
    -> `prolab mmseg test` and MMSeg's IoUMetric: the same numbers."""
    from mmseg.evaluation import IoUMetric

    from prolab_cli.cli import main
    from segmentation.mmseg_plugin import runner as mm_runner
    from segmentation.mmseg_plugin.safe_load import mmengine_safe_globals

    mmseg_ckpt = run["work"] / "iter_6.pth"
    converted = tmp_path / "converted.pth"
    res = CliRunner().invoke(main, ["convert", str(mmseg_ckpt), str(converted), "--preset", "vit-adapter-nano",
                                    "--label-space", str(synth["space"]), "--temperature", "0.04",
                                    "--no-normalize-embedding"])  # the tiny config's head
    assert res.exit_code == 0, res.output
    prolab_sd = torch.load(converted)["state_dict"]
    with mmengine_safe_globals():
        mm_sd = torch.load(mmseg_ckpt)["state_dict"]
    assert sorted(prolab_sd) == sorted(mm_sd) and all(torch.equal(prolab_sd[k], mm_sd[k]) for k in mm_sd)

    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(converted), "--dataset", "generic", "--data-root", str(synth["data"]),
                                    "--mode", "whole", "--scale", "64,64", "--json", "-q"])
    assert res.exit_code == 0, res.output
    ours = json.loads(res.output[res.output.index("{"):])

    cfg = mm_runner.load_mmseg_config(TINY, str(tmp_path / "test"))
    cfg.load_from = str(converted)
    runner = mm_runner.build_runner(cfg)
    rounded = runner.test()  # the plugin loads a prolab checkpoint
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = runner.test_dataloader.dataset.metainfo
    runner.model.eval()
    with torch.no_grad():
        for batch in runner.test_dataloader:
            metric.process(batch, [s.to_dict() for s in runner.model.test_step(batch)])
    theirs, _ = _mmseg_metrics(metric)
    direct = mm_runner.test(TINY, mmseg_ckpt, str(tmp_path / "test2"))  # MMSeg's own checkpoint
    for key in ("aAcc", "mIoU", "mAcc"):
        print(f"{key}: prolab eval {ours[key]:.10f}  mmseg IoUMetric {theirs[key]:.10f} "
              f"diff {abs(ours[key] - theirs[key]):.1e} (rounded {rounded[key]})")
        assert abs(ours[key] - theirs[key]) <= TOL
        assert round(ours[key], 2) == round(float(rounded[key]), 2)  # mmseg rounds, then keeps a float32
        assert float(direct[key]) == float(rounded[key])


def test_label_space_that_does_not_fit_the_head_is_refused(synth):
    from mmseg.registry import MODELS

    cfg = _cfg(synth)
    for field, value, needle in (("num_properties", 7, "K="), ("embed_dim", 5, "D="), ("num_classes", 9, "classes")):
        head = dict(cfg.model.decode_head, **{field: value})
        with pytest.raises(ProlabError, match=needle):
            MODELS.build(head)
    ours, theirs = _models(synth)
    sd = ours.state_dict()
    sd["decode_head.conv_seg.weight"] = sd["decode_head.conv_seg.weight"][:5]
    with pytest.raises(ProlabError, match="conv_seg emits 5 channels"):
        theirs.load_state_dict(sd)


def test_dataset_classes_must_equal_the_artifact(synth):
    from mmseg.registry import DATASETS

    from segmentation.mmseg_plugin.hooks import check_classes, property_heads

    _, model = _models(synth)
    heads = property_heads(model)
    assert [n for n, _ in heads] == ["decode_head", "auxiliary_head"]
    ds_cfg = dict(_cfg(synth).val_dataloader.dataset)
    good = DATASETS.build(ds_cfg)
    check_classes(heads, good, "val")
    swapped = list(synth["classes"])
    swapped[1], swapped[2] = swapped[2], swapped[1]
    ds_cfg.pop("classes_file")
    bad = DATASETS.build(dict(ds_cfg, metainfo=dict(classes=tuple(swapped))))
    with pytest.raises(ProlabError, match=f"class 1 is {swapped[1]!r} in the dataset metainfo"):
        check_classes(heads, bad, "val")


def test_mmcv_standin_only_without_full_mmcv(monkeypatch):
    import types

    from mmengine.utils.dl_utils import mmcv_full_available

    from segmentation.mmseg_plugin import _mmcv_ext

    assert _mmcv_ext.install_standin() is True  # mmcv-lite here
    assert mmcv_full_available() is False
    from mmcv.ops import nms

    with pytest.raises(RuntimeError, match="mmcv-lite lacks"):
        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    real = types.ModuleType("mmcv._ext")
    monkeypatch.setitem(sys.modules, "mmcv._ext", real)
    assert _mmcv_ext.full_mmcv_available() and _mmcv_ext.install_standin() is False
    assert sys.modules["mmcv._ext"] is real


def test_configs_load_and_name_the_released_settings(synth):
    from mmengine.config import Config

    rows = sorted(p.stem for p in CONFIGS.glob("*-prolab.py") if not p.stem.startswith(("synth", "ade20k-segformer")))
    assert len(rows) == 7
    onehot = sorted(CONFIGS.glob("*-onehot.py"))
    assert len(onehot) == 5
    for name in rows:
        cfg = Config.fromfile(str(CONFIGS / f"{name}.py"))
        assert cfg.default_scope == "mmseg" and "segmentation.mmseg_plugin" in cfg.custom_imports["imports"]
        assert cfg.model.decode_head.type == "ProLabUPerHead"
    ade = Config.fromfile(str(CONFIGS / "ade20k-beitv2-adapter-l-896-prolab.py"))
    assert (ade.model.decode_head.temperature, ade.model.decode_head.normalize_embedding) == (0.04, False)
    assert ade.model.test_cfg.stride == (512, 512) and ade.train_cfg.max_iters == 80000
    assert ade.optim_wrapper.optimizer.lr == 4e-5
    assert any(t["type"] == "ResizeToMultiple" for t in ade.test_pipeline)
    pc = Config.fromfile(str(CONFIGS / "pascal-context-59-vit-adapter-b-prolab.py"))
    assert pc.crop_size == (512, 512) and pc.model.test_cfg.stride == (341, 341)
    base = Config.fromfile(str(CONFIGS / "ade20k-vit-adapter-b-onehot.py"))
    assert base.model.decode_head.type == "UPerHead" and base.model.decode_head.num_classes == 150
    assert "label_space" not in base.model.decode_head


def test_segformer_config_builds_on_the_shipped_ade20k_space(synth):
    from mmseg.registry import MODELS

    cfg = _cfg(synth, CONFIGS / "ade20k-segformer-mit-b0-prolab.py").model
    assert cfg.decode_head.label_space == "ade20k"  # a shipped name, resolved like --label-space
    cfg.decode_head.norm_cfg = dict(type="BN", requires_grad=True)
    head = MODELS.build(cfg.decode_head)
    assert head.num_classes == 150


def test_prolab_head_on_an_mmseg_native_backbone(synth):
    from mmseg.registry import MODELS

    cfg = _cfg(synth, CONFIGS / "ade20k-segformer-mit-b0-prolab.py").model
    cfg.decode_head.update(label_space=str(synth["space"]), num_properties=None, embed_dim=None)
    cfg.decode_head.norm_cfg = dict(type="BN", requires_grad=True)
    model = MODELS.build(cfg).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.encode_decode(img, [dict(img_shape=(64, 64), pad_shape=(64, 64))])
    assert out.shape == (1, len(synth["classes"]), 64, 64)
    assert float(out.abs().max()) <= 1.0 + 1e-6  # cosine class scores


def test_core_never_imports_mmseg_and_missing_extra_is_one_line(tmp_path):
    code = ("import sys\n"
            "import prolab_cli.cli, segmentation.models, segmentation.engine.convert, segmentation.engine.train\n"
            "import segmentation.commands.mmseg\n"
            "assert not {'mmseg', 'mmengine', 'mmcv'} & set(sys.modules), sorted(sys.modules)\n"
            "for name in ('mmseg', 'mmengine'):\n"
            "    sys.modules[name] = None\n"
            "prolab_cli.cli.main(['mmseg', 'train', 'x.py'])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'prolab[mmseg]'" in lines[0], proc.stderr


@pytest.mark.slow
def test_paper_row_configs_build_the_published_parameter_counts(tmp_path):
    """ADE20K ViT-Adapter-B rows built from the MMSeg configs have the parameter counts of the
    original code (ProLab-B 134,112,736; one-hot B 133,636,876, as the released checkpoints hold)."""
    from mmengine.config import Config
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import MODELS

    from prolab_cli.artifact import LabelSpace

    rng = np.random.default_rng(0)
    rows = (rng.random((150, 256)) < 0.05).astype(np.float32)
    rows[np.arange(150), np.arange(150)] = 1
    space = LabelSpace.from_arrays("ade-random", list(ADE20KDataset.METAINFO["classes"]), rows,
                                   rng.normal(size=(256, 768)).astype(np.float32)).save(tmp_path)
    counts = {}
    for name in ("prolab", "onehot"):
        cfg = Config.fromfile(str(CONFIGS / f"ade20k-vit-adapter-b-{name}.py"))
        cfg.model.backbone.pretrained = None
        for head in ("decode_head", "auxiliary_head"):
            if "label_space" in cfg.model[head]:
                cfg.model[head].label_space = str(space)
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in MODELS.build(cfg.model).parameters())
    assert counts == {"prolab": 134_112_736, "onehot": 133_636_876}


def test_prolab_checkpoint_of_another_label_space_version_is_refused(synth):
    from types import SimpleNamespace

    from segmentation.mmseg_plugin.hooks import LabelSpaceCheckHook

    _, model = _models(synth)
    hook = LabelSpaceCheckHook()
    version = model.decode_head.label_space.version
    runner = SimpleNamespace(model=model)
    hook.after_load_checkpoint(runner, {"meta": {"label_space": {"name": "toy", "version": version}}})
    hook.after_load_checkpoint(runner, {"meta": {"dataset_meta": {}}})  # an MMSeg checkpoint: nothing to check
    with pytest.raises(ProlabError, match="trained with label space 'toy' version 0000"):
        hook.after_load_checkpoint(runner, {"meta": {"label_space": {"name": "toy", "version": "0000"}}})


def test_backbones_are_prolabs_own_with_preset_arch(synth):
    from mmseg.registry import MODELS

    from segmentation.models import backbone as prolab_backbone
    from segmentation.ops import MSDeformAttn

    vit = MODELS.build(dict(type="ViTAdapter", arch="vit-adapter-nano"))
    assert isinstance(vit, prolab_backbone.ViTAdapter) and vit.embed_dim == 96
    beit = MODELS.build(dict(type="BEiTAdapter", arch=None, img_size=64, embed_dim=96, depth=4, num_heads=3,
                             deform_num_heads=3, conv_inplane=16, deform_ratio=1.0,
                             interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]))
    assert isinstance(beit, prolab_backbone.BEiTAdapter)
    assert any(isinstance(m, MSDeformAttn) for m in beit.modules())  # prolab's op, not mmcv's
    with torch.no_grad():
        feats = beit.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    with pytest.raises(ProlabError, match="is a beit model, not a vit one"):
        MODELS.build(dict(type="ViTAdapter", arch="beit-adapter-l"))


def test_pad_short_side_preprocessor_gives_prolab_eval_scores(synth):
    """The BEiTv2 row's PadShortSide in MMSeg 1.x (ProLabSegDataPreProcessor): the same class scores
    as prolab's eval path, where MMSeg's own test_cfg padding (cropped from the prediction) differs."""
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    from segmentation.engine.inference import inference_settings, pipeline_for, scores_for

    ours, theirs = _models(synth)
    theirs.test_cfg = ConfigDict(mode="slide", crop_size=(64, 64), stride=(40, 40))
    rgb = np.random.default_rng(5).integers(0, 256, (21, 150, 3), dtype=np.uint8)
    settings = inference_settings({"test": {"mode": "slide", "crop_size": [64, 64], "stride": [40, 40], "scale": None,
                                            "pad_short_side": 64}}, {})
    x = pipeline_for(settings)(rgb, np.zeros(rgb.shape[:2], np.uint8))["img"][None]
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255)

    def mmseg_probs(preprocessor: dict) -> torch.Tensor:
        theirs.data_preprocessor = MODELS.build(preprocessor)
        bgr = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1)))
        sample = SegDataSample(metainfo=dict(ori_shape=rgb.shape[:2], img_shape=rgb.shape[:2]))
        with torch.no_grad():
            out = theirs.test_step({"inputs": [bgr], "data_samples": [sample]})
        return torch.softmax(out[0].seg_logits.data, dim=0)

    with torch.no_grad():
        want = scores_for(settings, ours.encode_decode, x, len(synth["classes"]), rgb.shape[:2])[0]
    got = mmseg_probs(dict(type="ProLabSegDataPreProcessor", pad_short_side=64, **norm))
    diff = (got - want).abs().max().item()
    print(f"PadShortSide: max |class probability difference| = {diff:.3e}")
    assert diff <= TOL and torch.equal(got.argmax(0), want.argmax(0))
    cropped = mmseg_probs(dict(type="SegDataPreProcessor", test_cfg=dict(size=(64, 64)), **norm))
    assert (cropped - want).abs().max().item() > 1e-3
    with pytest.raises(ProlabError, match="pad_short_side must be a positive integer or null"):
        MODELS.build(dict(type="ProLabSegDataPreProcessor", pad_short_side=0, **norm))


def test_mmseg_command_line_as_mmseg_tools_read_it(tmp_path):
    from prolab_cli.cli import main
    from segmentation.commands.mmseg import _cfg_options

    assert _cfg_options(("a=1",), ("b=2", "c.d=[1,2]")) == ["a=1", "b=2", "c.d=[1,2]"]
    runner = CliRunner()
    stray = runner.invoke(main, ["mmseg", "train", str(TINY), "b=2"])
    assert stray.exit_code == 1 and "unexpected argument 'b=2'" in stray.output
    bad = runner.invoke(main, ["mmseg", "train", str(TINY), "--cfg-options", "a=1", "oops"])
    assert bad.exit_code == 1 and "'oops' is not KEY=VALUE" in bad.output
    no_dir = runner.invoke(main, ["mmseg", "train", str(TINY), "--resume"])
    assert no_dir.exit_code == 1 and "--resume continues the run in --work-dir" in no_dir.output
    from segmentation.mmseg_plugin.runner import load_mmseg_config

    assert load_mmseg_config(TINY, quiet=True).log_level == "WARNING"  # -q: no config dump, no progress lines
    empty = runner.invoke(main, ["mmseg", "train", str(TINY), "--resume", "--work-dir", str(tmp_path / "new")])
    assert empty.exit_code == 1 and "no checkpoint to resume from" in empty.output


class Pickled:
    """An object a weights-only load refuses."""


def test_mmseg_test_on_a_refused_checkpoint_is_one_line(synth, tmp_path):
    from prolab_cli.cli import main

    torch.save({"state_dict": {}, "x": Pickled()}, tmp_path / "evil.pth")
    result = CliRunner().invoke(main, ["mmseg", "test", str(TINY), str(tmp_path / "evil.pth"), "--work-dir",
                                       str(tmp_path / "w"), "-q"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()  # mmengine may add its checkpoint and metric lines
    assert len(lines) <= 3 and [line for line in lines if line.startswith("Error: ")], lines
    assert "evil.pth: not loadable without running pickled code (" in result.output
    assert "refused pickled object" in result.output and "Traceback" not in result.output
