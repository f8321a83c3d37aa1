"""Shared test set-up: every test gets its own empty prolab cache; compiled ops are kept per checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"

# Compiled extensions survive between tests (and between local runs of the suite).
os.environ.setdefault("PROLAB_BUILD_DIR", str(REPO / ".pytest_build"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path_factory.mktemp("prolab_cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from prolab_cli.progress import set_quiet

    set_quiet(False)  # a `-q` of an earlier test's command line must not silence this one


@pytest.fixture
def no_openai_env(monkeypatch):
    """No OPENAI_API_KEY / OPENAI_BASE_URL from the developer's shell: the tests name their server."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """``tests/data``: outputs and key layouts of the original code (``golden/``, ``checkpoint_keys/``),
    copied from the reference run with their SHA256 recorded (checked by test_reference_data.py)."""
    return DATA


def tiny_config(size: int = 64, **sets) -> dict:
    """The training config every test that trains starts from: the synthetic nano config
    (``synth-vit-adapter-nano``) at ``size`` px, batch 2 and no checkpoint before the end, with
    ``sets`` (``{"schedule.max_iters": 3}``) applied last."""
    from segmentation.engine.config import apply_overrides, load_config

    base = {"data.batch_size": 2, "train.ckpt_interval": 100000, "model.img_size": size,
            "data.crop_size": f"[{size}, {size}]", "data.scale": f"[{2 * size}, {size}]",
            "test.crop_size": f"[{size}, {size}]", "test.scale": f"[{2 * size}, {size}]"}
    return apply_overrides(load_config("synth-vit-adapter-nano"), [f"{k}={v}" for k, v in {**base, **sets}.items()])


def synth_world(root: Path, num_train: int = 4, num_val: int = 2, size: int = 32, num_seen: int = 4,
                num_heldout: int = 2, seed: int = 0) -> dict:
    """A synthetic dataset (``prolab data synth``, layout ade20k) under ``root``/data and its
    attribute label spaces under ``root``/spaces: ``seen`` (its seen classes) and ``all``."""
    import json

    from segmentation.data.synth import attribute_label_space, write_synth

    data = write_synth(root / "data", "ade20k", num_train=num_train, num_val=num_val, size=size, num_seen=num_seen,
                       num_heldout=num_heldout, seed=seed)
    info = json.loads((data / "synth.json").read_text())
    seen = attribute_label_space(data, "toy-seen", info["seen"]).save(root / "spaces")
    everything = attribute_label_space(data, "toy-all").save(root / "spaces")
    return {"data": data, "info": info, "seen": seen, "all": everything, "root": root}


def trained_with_extension(root: Path, extra_descriptions: dict | None = None) -> dict:
    """The set-up of the tests that label classes never trained on: a synthetic dataset (32 px, 4
    seen + 2 held-out classes), a MiniLM label space (K=8) of the seen classes' descriptions, that
    space extended with the held-out ones (and ``extra_descriptions``), and a model trained for two
    iterations on the seen space. Returns data, info, seen, extended and checkpoint."""
    import json

    import torch

    from prolab_cli.build import build_label_space
    from prolab_cli.cluster import cluster_embeddings
    from prolab_cli.embed import EmbedOptions, embed_descriptions
    from prolab_cli.extend import run_extend
    from segmentation.data.synth import write_synth
    from segmentation.engine.train import train

    torch.set_num_threads(1)
    data = write_synth(root / "data", "ade20k", num_train=4, num_val=2, size=32, num_seen=4, num_heldout=2)
    info = json.loads((data / "synth.json").read_text())
    descriptions = json.loads((data / "descriptions.json").read_text())
    emb = embed_descriptions({c: descriptions[c] for c in info["seen"]}, EmbedOptions("minilm"), progress=False)
    seen = build_label_space(emb, cluster_embeddings(emb, 8), "toy-seen", allow_collisions=True).save(root)
    held = {c: descriptions[c] for c in info["heldout"]} | (extra_descriptions or {})
    (root / "held.json").write_text(json.dumps(held))
    _, extended, _ = run_extend(seen, root / "held.json", name="toy-ext", out_dir=root)
    run = train(tiny_config(32, **{"schedule.max_iters": 2}), data, work_dir=root / "run", label_space=seen,
                progress=False, map_classes_by_name=True)
    return {"data": data, "info": info, "seen": seen, "extended": extended, "checkpoint": run["checkpoint"]}
