"""z, the sigmoid and the class scores are computed in float32 under autocast, as the released
head does (it casts the pixel embedding to float32 first): with T = 0.01 and a 768-channel
embedding, a bfloat16 dot product would move property scores by far more than float32 noise."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segmentation.models.property_head import PropertyBank

D, K, C = 768, 64, 10


def _bank(normalize: bool) -> PropertyBank:
    g = torch.Generator().manual_seed(0)
    rows = (torch.rand(C, K, generator=g) < 0.2).float()
    rows[:, 0] = 1.0  # every class owns a property
    return PropertyBank(rows, torch.randn(K, D, generator=g), temperature=0.01, normalize_embedding=normalize)


def _embedding(normalize: bool) -> torch.Tensor:
    # as a bf16 decode head would emit it; scaled so that z / T (T = 0.01) spans the sigmoid's steep part
    e = torch.randn(2, D, 6, 7, generator=torch.Generator().manual_seed(1))
    return (e if normalize else e * 0.05).bfloat16()


def _fp32_reference(bank: PropertyBank, e: torch.Tensor):
    e = e.float()
    if bank.normalize_embedding:
        e = F.normalize(e, dim=1)
    z = torch.einsum("bdhw,kd->bkhw", e, bank.centres.float())
    p = torch.sigmoid(z / bank.temperature)
    s = torch.einsum("bkhw,ck->bchw", F.normalize(p, dim=1), F.normalize(bank.class_rows.float(), dim=1))
    return z, p, s


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalised"])
def test_property_scores_under_bf16_autocast_equal_fp32(normalize):
    bank, e = _bank(normalize), _embedding(normalize)
    z_ref, p_ref, s_ref = _fp32_reference(bank, e)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, p = bank.logits(e), bank.scores(e)
        s = bank.class_scores(p)
    assert z.dtype == p.dtype == s.dtype == torch.float32
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-5)
    # the previous code (z = e . c in the autocast dtype, cast afterwards) fails the same check by far
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_half = torch.einsum("bdhw,kd->bkhw", F.normalize(e, dim=1) if normalize else e, bank.centres)
    assert z_half.dtype == torch.bfloat16
    p_half = torch.sigmoid(z_half.float() / bank.temperature)
    assert (p_half - p_ref).abs().max() > 1e-3


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalised"])
def test_property_loss_under_bf16_autocast_equals_fp32(normalize):
    bank, e = _bank(normalize), _embedding(normalize)
    label = torch.randint(0, C, (2, 12, 14), generator=torch.Generator().manual_seed(2))
    label[:, :2] = 255
    want = bank.loss(e.float(), label)
    e_grad = e.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = bank.loss(e_grad, label)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    got.backward()
    assert e_grad.grad is not None and torch.isfinite(e_grad.grad).all()


def test_float64_embeddings_stay_float64():
    bank = _bank(True).double()
    e = _embedding(True).double()
    assert bank.scores(e).dtype == torch.float64
    assert bank.class_scores(bank.scores(e)).dtype == torch.float64


def test_segmentor_scores_under_bf16_autocast_come_from_a_float32_head():
    """The whole model under autocast: the decode head emits bf16, everything after it is float32
    and equals the float32 computation on that same (bf16) embedding."""
    from segmentation.models import build_model
    from segmentation.models.layers import resize

    g = torch.Generator().manual_seed(3)
    model = build_model("vit-adapter-nano", class_rows=(torch.rand(4, 16, generator=g) < 0.4).float() + torch.eye(4, 16),
                            centres=torch.randn(16, 32, generator=g), temperature=0.01,
                            normalize_embedding=True).eval()
    x = torch.randn(1, 3, 64, 96, generator=g)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        e = model.head_output(x)
        scores = model.encode_decode(x)
        props = model.property_scores(x)
    assert e.dtype == torch.bfloat16 and scores.dtype == props.dtype == torch.float32
    _, p_ref, s_ref = _fp32_reference(model.bank, e)
    torch.testing.assert_close(scores, resize(s_ref, x.shape[-2:]), rtol=0, atol=1e-5)
    z_full = torch.einsum("bdhw,kd->bkhw", F.normalize(resize(e.float(), x.shape[-2:]), dim=1), model.bank.centres)
    torch.testing.assert_close(props, torch.sigmoid(z_full / 0.01), rtol=0, atol=1e-5)
