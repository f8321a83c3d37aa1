"""Our ViT-Adapter / BEiT-Adapter + UperNet + FCN (and ProLab head) against outputs of the original
code (``tests/data/golden``, see its README.txt): fp32 and fp64, with the reference and the
compiled MSDA op."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segmentation.models import ModelConfig, build_model

safetensors_torch = pytest.importorskip("safetensors.torch")

GOLDEN_CONFIG = ModelConfig(embed_dim=64, depth=4, num_heads=2, drop_path_rate=0.0, conv_inplane=16,
                            deform_num_heads=2, deform_ratio=0.5,
                            interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
                            decode_channels=32, aux_channels=16)
# BEiT-Adapter (the BEiT-L row's settings, shrunk): relative position bias, layer scale, no pos_embed
BEIT_GOLDEN_CONFIG = ModelConfig(backbone="beit", embed_dim=64, depth=4, num_heads=2, img_size=64,
                                 drop_path_rate=0.0, conv_inplane=16, deform_num_heads=2,
                                 deform_ratio=0.5, init_values=1e-6,
                                 interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
                                 decode_channels=32, aux_channels=16)
# file prefix, architecture, and the ProLab head's temperature / embedding normalisation
MODELS = {"vit": ("", GOLDEN_CONFIG, 0.04, False), "beit": ("beit_", BEIT_GOLDEN_CONFIG, 0.01, True)}
OPS = ["reference", "compiled"]
DTYPES = [torch.float32, torch.float64]


def _use_op(op: str, monkeypatch) -> None:
    from segmentation.ops import dispatch

    if op == "compiled":
        ok, reason = dispatch.compiled_available("cpu")
        if not ok:
            pytest.skip(f"compiled MSDA op unavailable: {reason}")
    monkeypatch.setenv("PROLAB_MSDA", op)


def _load(golden, name):
    return safetensors_torch.load_file(str(golden / f"{name}.safetensors"))


def _check(got: torch.Tensor, want: torch.Tensor, atol: float, what: str) -> None:
    assert got.shape == want.shape, what
    err = (got.double() - want.double()).abs().max().item()
    assert err <= atol, f"{what}: max abs err {err:.3g} > {atol:g}"


def _tolerances(dtype):
    # fp64 runs are held much tighter than the fp32 budget (measured: ViT <= 5e-15, BEiT <= 2e-14)
    return (1e-4, 1e-5) if dtype == torch.float32 else (1e-12, 1e-12)


def _run_features(model, x):
    with torch.no_grad():
        feats = model.extract_feat(x)
        return feats, model.decode_head(feats), model.auxiliary_head(feats)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("arch", list(MODELS))
def test_golden_one_hot(reference_data, arch, op, dtype, monkeypatch):
    _use_op(op, monkeypatch)
    golden = reference_data / "golden"
    prefix, config, _, _ = MODELS[arch]
    io = _load(golden, f"{prefix}tiny_io" if dtype == torch.float32 else f"{prefix}tiny_io_fp64")
    model = build_model(config, num_classes=5)
    model.load_state_dict(_load(golden, f"{prefix}tiny_state_dict"), strict=True)
    model = model.to(dtype).eval()
    x = io["input"].to(dtype)
    feats, dec, aux = _run_features(model, x)
    f_tol, s_tol = _tolerances(dtype)
    for i, f in enumerate(feats, 1):
        _check(f, io[f"f{i}"], f_tol, f"f{i}")
    _check(dec, io["decode_logits"], s_tol, "decode_logits")
    _check(aux, io["aux_logits"], s_tol, "aux_logits")
    with torch.no_grad():
        _check(model.encode_decode(x), io["seg_logits"], s_tol, "seg_logits")


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("arch", list(MODELS))
def test_golden_property_head(reference_data, arch, op, dtype, monkeypatch):
    _use_op(op, monkeypatch)
    golden = reference_data / "golden"
    prefix, config, temperature, normalize = MODELS[arch]
    io = _load(golden, f"{prefix}prolab_io" if dtype == torch.float32 else f"{prefix}prolab_io_fp64")
    bank = _load(golden, f"{prefix}prolab_bank")
    # the paper's bank layout: centres [D,K], multihot [K,N]
    model = build_model(config, class_rows=bank["multihot"].T, centres=bank["centres"].T,
                            temperature=temperature, normalize_embedding=normalize)
    model.load_state_dict(_load(golden, f"{prefix}prolab_state_dict"), strict=True)
    model = model.to(dtype).eval()
    torch.testing.assert_close(model.bank.centres.float(), bank["bank_used"], rtol=0, atol=1e-7)
    x = io["input"].to(dtype)
    feats, emb, aux = _run_features(model, x)
    f_tol, s_tol = _tolerances(dtype)
    for i, f in enumerate(feats, 1):
        _check(f, io[f"f{i}"], f_tol, f"f{i}")
    _check(emb, io["embedding"], s_tol, "embedding")
    _check(aux, io["aux_embedding"], s_tol, "aux_embedding")
    _check(model.bank.logits(emb), io["property_logits"], s_tol, "property_logits")
    props = model.bank.scores(emb)
    # sigmoid(z/T) has slope 1/(4T): z's float32 noise grows by 0.04/T at T < 0.04 (BEiT, T = 0.01:
    # ours 1.9e-5, the original's own float32 run differs from its float64 run by 1.4e-5)
    p_tol = s_tol * max(1.0, 0.04 / temperature)
    _check(props, io["property_scores"], p_tol, "property_scores")
    _check(model.bank.class_scores(props), io["class_scores_lowres"], s_tol, "class_scores_lowres")
    with torch.no_grad():
        scores = model.encode_decode(x)
        low = model.property_scores(x, resize_to_input=False)
    _check(low, io["property_scores"], p_tol, "property_scores()")
    _check(scores, io["class_scores"], s_tol, "class_scores")
    _check(F.softmax(scores, dim=1), io["class_probs"], s_tol, "class_probs")
    assert torch.equal(scores.argmax(1), io["pred"])


def test_golden_debug_intermediates(reference_data):
    """Spot checks on the intermediate activations: the SPM and patch tokens before mixing."""
    golden = reference_data / "golden"
    io, debug = _load(golden, "tiny_io"), _load(golden, "tiny_debug")
    model = build_model(GOLDEN_CONFIG, num_classes=5)
    model.load_state_dict(_load(golden, "tiny_state_dict"))
    model.eval()
    bb = model.backbone
    with torch.no_grad():
        c1, c2, c3, c4 = bb.spm(io["input"])
        tokens, h, w = bb.patch_embed(io["input"])
        pos = bb.pos_embed_for(h, w)
    _check(c1, debug["backbone.spm.c1"], 1e-5, "spm.c1")
    for name, t in (("c2", c2), ("c3", c3), ("c4", c4)):
        _check(t, debug[f"backbone.spm.{name}_tokens"], 1e-5, f"spm.{name}")
    _check(tokens, debug["backbone.patch_embed.tokens"], 1e-5, "patch tokens")
    _check(pos, debug["backbone.pos_embed_resized"], 1e-6, "pos_embed_resized")


def test_golden_beit_relative_position_bias(reference_data):
    """The index our BEiT blocks build (before any weights are loaded) is the original's, and block
    0's bias as it enters the attention matches the one captured inside the original forward."""
    golden = reference_data / "golden"
    state, debug = _load(golden, "beit_tiny_state_dict"), _load(golden, "beit_tiny_debug")
    model = build_model(BEIT_GOLDEN_CONFIG, num_classes=5)
    for i, blk in enumerate(model.backbone.blocks):
        key = f"backbone.blocks.{i}.attn.relative_position_index"
        assert torch.equal(blk.attn.relative_position_index, state[key]), key
    model.load_state_dict(state, strict=True)
    attn = model.backbone.blocks[0].attn
    n = attn.relative_position_index.shape[0]
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    _check(bias, debug["backbone.blocks.0.attn.relative_position_bias"], 0.0, "relative_position_bias")
    with torch.no_grad():
        tokens, _, _, _ = model.backbone.embed(_load(golden, "beit_tiny_io")["input"])
    _check(tokens, debug["backbone.patch_embed.tokens"], 1e-5, "patch tokens")
