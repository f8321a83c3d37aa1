"""``model.bank_basis=span``: the pixel embedding as K coordinates in the centres' own span scores
exactly what the paper's D-channel embedding scores, over the same centres; it trains, saves, takes
an extended label space, and refuses to start from a checkpoint of the other basis."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from prolab_cli.cli import main
from segmentation.models.property_head import PropertyBank, span_basis, span_coordinates

D, K, C = 40, 12, 9


def _centres(k: int = K, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(k, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def _rows(seed: int = 1) -> torch.Tensor:
    rows = (torch.rand(C, K, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    rows[:, 0] = 1.0
    return rows


def test_span_basis_is_the_centres_principal_axes():
    c = _centres()
    basis = span_basis(c)
    assert basis.shape == (D, K)
    torch.testing.assert_close(basis.T @ basis, torch.eye(K, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(c @ basis @ basis.T, c, atol=1e-10, rtol=0)  # it spans the centres
    coords = span_coordinates(c)
    torch.testing.assert_close(coords @ coords.T, c @ c.T, atol=1e-10, rtol=0)  # every inner product kept
    energy = coords.T @ coords  # principal axes: uncorrelated, in decreasing order
    torch.testing.assert_close(energy, torch.diag(torch.diagonal(energy)), atol=1e-10, rtol=0)
    assert bool((torch.diagonal(energy).diff() < 0).all()) and bool((coords.mean(0) > 0).all())


def test_span_coordinates_do_not_depend_on_the_order_of_properties():
    c = _centres()
    order = torch.randperm(K, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(span_coordinates(c[order]), span_coordinates(c)[order], atol=1e-10, rtol=0)


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalised"])
def test_span_bank_scores_what_the_embedding_bank_scores(normalize):
    c = _centres().float().double()  # the bank keeps its centres in float32
    full = PropertyBank(_rows(), c, temperature=0.04, normalize_embedding=normalize).double()
    span = PropertyBank(_rows(), c, temperature=0.04, normalize_embedding=normalize, basis="span").double()
    assert (full.dim, span.dim, span.num_properties) == (D, K, K)
    basis = span_basis(full.centres)
    y = 0.3 * torch.randn(2, K, 5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    e = torch.einsum("dk,bkhw->bdhw", basis, y)  # the same pixel embedding, written in D coordinates
    if not normalize:  # any D-dim e: only its part in the span counts
        e = e + 0.3 * torch.randn(e.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        y = torch.einsum("dk,bdhw->bkhw", basis, e)
    torch.testing.assert_close(span.logits(y), full.logits(e), atol=1e-6, rtol=0)
    torch.testing.assert_close(span.class_scores(span.scores(y)), full.class_scores(full.scores(e)), atol=1e-6, rtol=0)
    label = torch.randint(0, C, (2, 5, 6), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(span.loss(y, label), full.loss(e, label), atol=1e-6, rtol=0)


def test_dependent_centres_keep_their_rank_and_inner_products():
    c = _centres()
    c[5] = F.normalize(c[1] - 2 * c[3], dim=0)  # a combination of other centres
    coords = span_coordinates(c)
    assert coords.shape == (K, K - 1)
    torch.testing.assert_close(coords @ coords.T, c @ c.T, atol=1e-10, rtol=0)


def test_span_of_projects_other_centres_onto_the_trained_span():
    trained = _centres(5)
    outside = _centres(1, seed=7)[0]
    inside = F.normalize(trained[0] + trained[4], dim=0)
    others = torch.stack([trained[2], inside, outside])
    coords = span_coordinates(others, span_of=trained)
    own = span_coordinates(trained)
    assert coords.shape == (3, 5)
    torch.testing.assert_close(coords[0], own[2], atol=1e-10, rtol=0)
    basis = span_basis(trained)
    torch.testing.assert_close(coords @ own.T, others @ basis @ basis.T @ trained.T, atol=1e-10, rtol=0)
    torch.testing.assert_close(coords[1].norm(), torch.tensor(1.0, dtype=torch.float64))
    assert float(coords[2].norm()) < 1 - 1e-3  # the part outside the span is dropped


def test_unknown_basis_is_one_line():
    from prolab_cli.errors import ProlabError

    with pytest.raises(ProlabError, match="model.bank_basis 'spam': expected one of embedding, span"):
        PropertyBank(_rows(), _centres(), basis="spam")


def test_span_model_trains_evaluates_over_an_extended_space_and_guards_init_from(tmp_path):
    """K-channel heads, the basis recorded in the checkpoint and in eval's settings; a run in the other
    basis cannot start from its weights."""
    from prolab_cli.artifact import LabelSpace
    from conftest import synth_world, tiny_config
    from segmentation.engine.builder import model_from_checkpoint
    from segmentation.engine.checkpoint import load_checkpoint
    from segmentation.engine.train import train

    torch.set_num_threads(1)
    world = synth_world(tmp_path, seed=1)
    data, info, seen, everything = world["data"], world["info"], world["seen"], world["all"]
    cfg = tiny_config(32, **{"schedule.max_iters": 2, "model.bank_basis": "span"})
    sets = [f"{k}={v}" for k, v in {"schedule.max_iters": 2, "train.ckpt_interval": 100000, "model.img_size": 32,
                                    "data.crop_size": "[32,32]", "data.scale": "[64,32]", "data.batch_size": 2}.items()]
    run = train(cfg, data, work_dir=tmp_path / "run", label_space=seen, progress=False, map_classes_by_name=True)
    ckpt = load_checkpoint(run["checkpoint"])
    k = ckpt["bank"]["centres"].shape[0]
    assert ckpt["bank"]["centres"].shape[1] == 32 > k  # the artifact's centres are stored as they are
    assert ckpt["state_dict"]["decode_head.conv_seg.weight"].shape[0] == k
    assert ckpt["state_dict"]["auxiliary_head.conv_seg.weight"].shape[0] == k
    model, classes, info_swap = model_from_checkpoint(ckpt, LabelSpace.load(everything))
    assert model.bank.basis == "span" and info_swap["swapped"] and classes[-2:] == info["heldout"]

    res = CliRunner().invoke(main, ["eval", "--checkpoint", run["checkpoint"], "--data-root", str(data),
                                    "--label-space", str(everything), "-o", str(tmp_path / "m.json"), "-q"])
    assert res.exit_code == 0, res.output
    assert "in the centres' span" in res.output
    assert json.loads((tmp_path / "m.json").read_text())["settings"]["bank_basis"] == "span"

    res = CliRunner().invoke(main, ["train", "--config", "synth-vit-adapter-nano", "--data-root", str(data),
                                    "--label-space", str(seen), "--work-dir", str(tmp_path / "second"), "-q",
                                    "--map-classes-by-name", "--init-from", run["checkpoint"],
                                    *[a for s in sets for a in ("--set", s)]])
    last = res.output.strip().splitlines()[-1]  # after --map-classes-by-name's report
    assert res.exit_code == 1 and last.startswith("Error: "), res.output
    assert last.endswith("trained with model.bank_basis=span, this run has embedding")
