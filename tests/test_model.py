"""ViT-Adapter + UperNet models: release key layouts and parameter counts (meta device), stage
shapes, both heads forward/backward, losses, class-row swapping, gradient checkpointing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from prolab_cli.errors import ProlabError
from segmentation.models import MODELS, build_model, model_config
from segmentation.models.layers import resize

RELEASES = [  # file, preset, head, published parameter count
    ("vitadapter_t_upernet_ade150.json", "vit-adapter-t", "onehot", 36_062_428),
    ("vitadapter_b_upernet_ade150.json", "vit-adapter-b", "onehot", 133_636_876),
    ("prolab_vitadapter_b_upernet.json", "vit-adapter-b", "property", 134_112_736),
    ("beit_adapter_l_upernet_ade150.json", "beit-adapter-l", "onehot", 451_919_852),
]
C, K, D = 5, 12, 16
KEYS = Path(__file__).resolve().parent / "data" / "checkpoint_keys"  # copied from the released checkpoints


def _meta_model(preset: str, head: str, out_channels: int, **kw):
    if head == "property":
        return build_model(preset, class_rows=torch.ones(150, 256), centres=torch.ones(256, out_channels),
                               device="meta", **kw)
    return build_model(preset, num_classes=out_channels, device="meta", **kw)


@pytest.mark.parametrize("fname,preset,head,count", RELEASES, ids=[r[0].split(".")[0] for r in RELEASES])
def test_release_keys_shapes_and_parameter_count(fname, preset, head, count):
    want = json.loads((KEYS / fname).read_text())
    out = want["decode_head.conv_seg.weight"][0]
    model = _meta_model(preset, head, out)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(want)  # same keys in the same order
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == count


def test_all_presets_build_on_meta_with_published_sizes():
    published = {"vit-adapter-t": 36.1e6, "vit-adapter-s": 58e6, "vit-adapter-b": 133.6e6,
                 "vit-adapter-l": 364e6, "beit-adapter-l": 451.9e6}
    for name in MODELS:
        n = sum(p.numel() for p in build_model(name, num_classes=150, device="meta").parameters())
        if name in published:
            assert abs(n - published[name]) / published[name] < 0.01, (name, n)


@pytest.fixture(scope="module")
def onehot():
    torch.manual_seed(0)
    return build_model("vit-adapter-nano", num_classes=C)


@pytest.fixture(scope="module")
def bank():
    g = torch.Generator().manual_seed(1)
    rows = (torch.rand(C, K, generator=g) < 0.4).float()
    rows[:, 0] = 1.0  # no empty row
    return rows, torch.randn(K, D, generator=g)


@pytest.fixture(scope="module")
def prop(bank):
    torch.manual_seed(0)
    return build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1])


def _img(b=2, h=64, w=64, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _label(b=2, h=64, w=64, seed=0):
    return torch.randint(0, C, (b, h, w), generator=torch.Generator().manual_seed(seed))


def test_shapes_at_every_stage(onehot, prop):
    x = _img(2, 64, 96)
    bb = onehot.eval().backbone
    with torch.no_grad():
        c1, c2, c3, c4 = bb.spm(x)
        assert c1.shape == (2, 96, 16, 24)
        assert [t.shape for t in (c2, c3, c4)] == [(2, 96, 96), (2, 24, 96), (2, 6, 96)]
        tokens, h, w = bb.patch_embed(x)
        assert tokens.shape == (2, 24, 96) and (h, w) == (4, 6)
        assert bb.pos_embed_for(h, w).shape == (1, 24, 96)
        feats = onehot.extract_feat(x)
        assert [f.shape for f in feats] == [(2, 96, 16, 24), (2, 96, 8, 12), (2, 96, 4, 6), (2, 96, 2, 3)]
        assert onehot.decode_head(feats).shape == (2, C, 16, 24)
        assert onehot.auxiliary_head(feats).shape == (2, C, 4, 6)
        assert onehot.encode_decode(x).shape == (2, C, 64, 96)
        torch.testing.assert_close(onehot(x), onehot.encode_decode(x))
        assert set(onehot(x, torch.zeros(2, 64, 96, dtype=torch.long))) == {"decode.loss", "aux.loss"}
        prop.eval()
        assert prop.head_output(x).shape == (2, D, 16, 24)
        assert prop.encode_decode(x).shape == (2, C, 64, 96)
        assert prop.property_scores(x).shape == (2, K, 64, 96)
        low = prop.property_scores(x, resize_to_input=False)
        assert low.shape == (2, K, 16, 24) and bool(((low >= 0) & (low <= 1)).all())


@pytest.mark.parametrize("head", ["onehot", "cosine", "bce"])
def test_forward_backward_both_heads(head, bank):
    torch.manual_seed(0)
    if head == "onehot":
        model = build_model("vit-adapter-nano", num_classes=C)
    else:
        model = build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1], loss=head)
    model.train()
    losses = model.forward_train(_img(), _label())
    assert set(losses) == {"decode.loss", "aux.loss"}
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]
    # the first stage's ViT block and the extractors get non-zero gradients
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.backbone.interactions[3].extra_extractors[1].ffn.fc2.weight.grad.abs().sum() > 0


def _per_pixel_losses(model, x, label):
    """Unreduced per-pixel losses at label resolution, computed independently of forward_train."""
    feats = model.extract_feat(x)
    out = resize(model.decode_head(feats), label.shape[-2:])
    if model.bank is None:
        return F.cross_entropy(out, label.clamp(max=C - 1), reduction="none")
    p = torch.sigmoid(model.bank.logits(out) / model.bank.temperature)
    y = model.bank.class_rows[label.clamp(max=C - 1)].permute(0, 3, 1, 2)
    return 1 - F.cosine_similarity(p, y, dim=1)


@pytest.mark.parametrize("which", ["onehot", "prop"])
def test_loss_ignores_255_and_averages_valid_pixels(which, onehot, prop):
    model = {"onehot": onehot, "prop": prop}[which].eval()
    x, label = _img(), _label()
    ignored = label.clone()
    ignored[:, :40] = 255
    with torch.no_grad():
        per_pixel = _per_pixel_losses(model, x, label)
        got = model.forward_train(x, ignored)["decode.loss"]
        full = model.forward_train(x, label)["decode.loss"]
        valid = ignored != 255
        torch.testing.assert_close(got, per_pixel[valid].mean(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(full, per_pixel.mean(), rtol=1e-5, atol=1e-6)
        assert abs(got.item() - full.item()) > 1e-4
        nothing = model.forward_train(x, torch.full_like(label, 255))
        assert all(v.item() == 0.0 for v in nothing.values())
    with pytest.raises(ProlabError, match="label ids"):
        model.forward_train(x, torch.full_like(label, C))


def test_aux_weight_scales_the_aux_loss_only(bank):
    x, label = _img(), _label()
    out = {}
    for w in (0.4, 1.0, 0.0):
        torch.manual_seed(0)
        model = build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1], aux_weight=w).eval()
        with torch.no_grad():
            out[w] = model.forward_train(x, label)
    torch.testing.assert_close(out[0.4]["decode.loss"], out[1.0]["decode.loss"])
    torch.testing.assert_close(out[0.4]["aux.loss"], 0.4 * out[1.0]["aux.loss"])
    assert out[1.0]["aux.loss"].item() > 0
    assert "aux.loss" not in out[0.0]


@pytest.mark.parametrize("normalize", [False, True])
def test_scores_with_properties_is_encode_decode_and_property_scores_in_one_pass(bank, normalize):
    torch.manual_seed(0)
    model = build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1],
                            normalize_embedding=normalize).eval()
    x = _img(1)
    with torch.no_grad():
        both = model.scores_with_properties(x)
        want = torch.cat([model.encode_decode(x), model.property_scores(x)], dim=1)
    torch.testing.assert_close(both, want, rtol=0, atol=0)


def test_swapping_class_rows_changes_only_the_classifier(bank):
    torch.manual_seed(0)
    model = build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1]).eval()
    x = _img(1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        props, scores = model.property_scores(x), model.encode_decode(x)
        new_rows = torch.zeros(7, K)
        new_rows[torch.arange(7), torch.arange(7)] = 1.0
        new_rows[:, 8] = 1.0
        model.set_class_rows(new_rows)
        props2, scores2 = model.property_scores(x), model.encode_decode(x)
    torch.testing.assert_close(props2, props, rtol=0, atol=0)
    assert scores2.shape == (1, 7, 64, 64) and model.num_classes == 7
    low = model.property_scores(x, resize_to_input=False)
    want = torch.einsum("bkhw,ck->bchw", F.normalize(low, dim=1), F.normalize(new_rows, dim=1))
    torch.testing.assert_close(scores2, resize(want, (64, 64)), rtol=1e-5, atol=1e-6)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert set(model.state_dict()) == set(state)  # class rows / centres are not in the state dict
    with pytest.raises(ProlabError, match="properties"):
        model.set_class_rows(torch.ones(3, K + 1))
    with pytest.raises(ProlabError, match="own no property"):
        model.set_class_rows(torch.zeros(3, K))


def test_gradient_checkpointing_gives_the_same_gradients(bank):
    x, label = _img(1), _label(1)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = build_model("vit-adapter-nano", class_rows=bank[0], centres=bank[1], with_cp=with_cp)
        model.eval()  # deterministic (no dropout); gradients still flow
        sum(model.forward_train(x, label).values()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_batch_norm_without_process_group_and_sync_on_request():
    model = build_model("vit-adapter-nano", num_classes=C, device="meta")
    assert isinstance(model.backbone.norm1, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    synced = build_model("vit-adapter-nano", num_classes=C, sync_bn=True, device="meta")
    assert isinstance(synced.decode_head.bottleneck.bn, torch.nn.SyncBatchNorm)
    assert isinstance(synced.backbone.spm.stem[1], torch.nn.SyncBatchNorm)


def test_preset_overrides_and_bad_arguments(onehot):
    assert model_config("vit-adapter-b", drop_path_rate=0.1).drop_path_rate == 0.1
    beit = build_model("beit-adapter-l", num_classes=3, img_size=320, device="meta")
    assert beit.backbone.blocks[0].attn.relative_position_bias_table.shape == (39 * 39 + 3, 16)
    with pytest.raises(ProlabError, match="unknown model 'vit-adapter-xxl'"):
        build_model("vit-adapter-xxl", num_classes=3)
    with pytest.raises(ProlabError, match="'img_sise' is not a model setting .did you mean 'img_size'"):
        build_model("vit-adapter-nano", num_classes=3, img_sise=64)
    with pytest.raises(ProlabError, match="num_classes"):
        build_model("vit-adapter-nano")
    with pytest.raises(ProlabError, match="both"):
        build_model("vit-adapter-nano", class_rows=torch.ones(2, 3))
    with pytest.raises(ProlabError, match="multiple of 32"):
        onehot.encode_decode(torch.zeros(1, 3, 48, 64))
    with pytest.raises(ProlabError, match="num_classes=4"):
        build_model("vit-adapter-nano", num_classes=4, class_rows=torch.ones(3, 2), centres=torch.ones(2, 8))


def test_models_command_lists_the_registry_with_counts_layouts_and_rows():
    from click.testing import CliRunner

    from prolab_cli.cli import main

    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    table = {m["name"]: m for m in json.loads(result.output)}
    assert list(table) == list(MODELS)
    for fname, preset, head, count in RELEASES:  # the released checkpoints' own parameter counts
        if head == "onehot" and fname.endswith("ade150.json"):
            assert table[preset]["parameters"] == count, preset
    assert table["vit-adapter-nano"]["loads"] == ["prolab"]
    assert "mmseg 0.x release" in table["beit-adapter-l"]["loads"]
    assert "ade20k-vit-adapter-b-prolab" in table["vit-adapter-b"]["paper_rows"]
    assert table["beitv2-adapter-l"]["paper_rows"] == ["ade20k-beitv2-adapter-l-896-prolab"]
    text = CliRunner().invoke(main, ["models", "--num-classes", "19"])
    assert text.exit_code == 0 and "params (19 cl.)" in text.output
    assert all(name in text.output for name in MODELS)


def test_beit_adapter_forward_backward_and_relative_position_bias():
    from segmentation.models import ModelConfig
    from segmentation.models.beit import relative_position_index

    index = relative_position_index((3, 4))
    n = 5 * 7 + 3
    assert index.shape == (13, 13) and index[0, 0] == n - 1 and index[0, 5] == n - 3 and index[5, 0] == n - 2
    assert bool((index[1:, 1:].diagonal() == 2 * 7 + 3).all())  # zero offset = centre of the 5x7 grid
    assert index[1, 2] == 2 * 7 + 3 - 1 and index[2, 1] == 2 * 7 + 3 + 1  # one column apart

    cfg = ModelConfig(backbone="beit", embed_dim=32, depth=4, num_heads=2, img_size=64, drop_path_rate=0.1,
                      conv_inplane=8, deform_num_heads=2, init_values=0.1,
                      interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)), decode_channels=16, aux_channels=8)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=C, with_cp=True)
    attn = model.backbone.blocks[0].attn
    x = torch.randn(1, 17, 32)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
        qkv = F.linear(x, attn.qkv.weight, torch.cat([attn.q_bias, torch.zeros(32), attn.v_bias]))
        q, k, v = qkv.reshape(1, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(17, 17, 2)
        weights = ((q * 16 ** -0.5) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)).softmax(-1)
        want = attn.proj((weights @ v).transpose(1, 2).reshape(1, 17, 32))
        torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-6)
    model.train()
    losses = model.forward_train(_img(2), _label(2))
    sum(losses.values()).backward()
    assert model.backbone.cls_token.grad.abs().sum() > 0
    assert model.backbone.blocks[3].attn.relative_position_bias_table.grad.abs().sum() > 0
    with pytest.raises(ProlabError, match="img_size"):
        model.eval().encode_decode(torch.zeros(1, 3, 96, 64))
