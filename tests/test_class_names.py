"""Class-name reconciliation: exact, stripped, case-folded, alias; import-bank reports every
non-exact match and refuses a class that matches nothing (one line, no traceback)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.classes import class_list_difference, load_classes, reconcile_class_names
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError

torch = pytest.importorskip("torch")

ADE = load_classes("ade20k")
KEY = "bge-base-en-v1.5_gpt3.5_cluster_4_embeddings_and_labels"


def test_each_stage_of_matching_is_reported():
    dataset = ["wall", "potted plant", "tank", "sky"]
    rec = reconcile_class_names(["wall", "Potted_Plant ", "storage tank", "sky "], dataset, source="bank")
    assert rec.mapping == [0, 1, 2, 3]
    assert [(m.index, m.name, m.dataset_name, m.how) for m in rec.matches] == [
        (1, "Potted_Plant ", "potted plant", "case-folded"),
        (2, "storage tank", "tank", "alias"),
        (3, "sky ", "sky", "stripped"),
    ]
    assert rec.renamed == dataset
    assert rec.report_lines()[1] == "bank: class 2 'storage tank' -> 'tank' (alias)"
    assert rec.to_dict()["renamed"][1] == {"index": 2, "from": "storage tank", "to": "tank", "how": "alias"}


def test_strict_mode_refuses_unknown_duplicate_missing_and_reordered_names():
    dataset = ["wall", "tank", "sky"]
    with pytest.raises(ProlabError, match=r"^bank: class 1 'unicorn' is not in the dataset's class list \(3 classes\)"):
        reconcile_class_names(["wall", "unicorn", "sky"], dataset, source="bank")
    with pytest.raises(ProlabError, match=r"classes 'tank' and 'storage tank' both match dataset class 1 'tank'"):
        reconcile_class_names(["wall", "tank", "storage tank"], dataset, source="bank")
    with pytest.raises(ProlabError, match=r"2 classes but the dataset has 3; dataset classes without a match: \['sky'\]"):
        reconcile_class_names(["wall", "tank"], dataset, source="bank")
    with pytest.raises(ProlabError, match=r"class order differs from the dataset's at index 1: 'sky' is the dataset's "
                                          r"class 2 \('sky'\), the dataset's class 1 is 'tank'"):
        reconcile_class_names(["wall", "sky", "tank"], dataset, source="bank")
    with pytest.raises(ProlabError, match="matches several dataset classes"):
        reconcile_class_names(["SKY"], ["Sky", "sky"], source="x", partial=True)


def test_partial_mode_lists_what_has_no_match():
    rec = reconcile_class_names(["sky", "zebra", "aeroplane"], ["airplane", "road", "sky"], source="x", partial=True)
    assert rec.mapping == [2, None, 0]
    assert rec.unmatched == ["zebra"] and rec.missing == ["road"]


def test_first_difference_of_two_lists():
    theirs = list(ADE)
    theirs[122] = "storage tank"
    assert class_list_difference(theirs, ADE) == "index 122: 'storage tank' vs 'tank'"
    assert class_list_difference([" Wall"] + ADE[1:], ADE) is None
    assert class_list_difference(ADE[:3], ADE[:2]) == "index 2: 'sky' vs (none) (3 classes vs 2)"


def _released_ade_bank() -> dict:
    """A bank as ProLab published it for ADE20K: description keys "bed " and "storage tank"."""
    rng = np.random.default_rng(0)
    names = list(ADE)
    names[7], names[122] = "bed ", "storage tank"
    hot = np.zeros((4, len(ADE)))
    hot[rng.integers(0, 4, len(ADE)), np.arange(len(ADE))] = 1
    return {
        "descriptions": {n: [f"what a {n.strip()} looks like"] for n in names},
        KEY: [torch.from_numpy(rng.standard_normal((8, 4)).astype(np.float32)), torch.from_numpy(hot)],
    }


def test_import_bank_reconciles_with_the_dataset_list(tmp_path):
    path = tmp_path / "ade_desc_bge-base-en-v1.5_gpt3.5_cluster_4_embedding_bank.pth"
    torch.save(_released_ade_bank(), path)
    for args, name in (([], "implied"), (["--classes", "ade20k"], "given")):  # list from the file name, or given
        res = CliRunner().invoke(main, ["import-bank", str(path), "--name", name, "--out-dir", str(tmp_path / "spaces"), *args])
        assert res.exit_code == 0, res.output
        assert f"{path.name}: class 122 'storage tank' -> 'tank' (alias)" in res.output
        assert f"{path.name}: stripped whitespace from 1 class names" in res.output
        space = LabelSpace.load(tmp_path / "spaces" / name)
        assert space.classes == ADE and list(space.descriptions) == ADE
        assert space.descriptions["tank"] == ["what a storage tank looks like"]
        record = space.manifest["provenance"]["import"]["classes"]
        assert record["list"] == "ade20k" and record["renamed"] == [
            {"index": 122, "from": "storage tank", "to": "tank", "how": "alias"}]


def _one_line_error(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_import_bank_bad_input_is_one_line(tmp_path):
    bank = _released_ade_bank()
    good = tmp_path / "bank.pth"
    torch.save(bank, good)
    out = ["--out-dir", str(tmp_path / "spaces"), "--name", "x"]

    line = _one_line_error(["import-bank", str(good), "--key", "m_gpt3.5_cluster_4_embeddings_and_labels", *out])
    assert f"no entry 'm_gpt3.5_cluster_4_embeddings_and_labels' (entries: ['{KEY}', 'descriptions'])" in line

    keyless = tmp_path / "keyless.pth"
    torch.save({"descriptions": bank["descriptions"], "centres": bank[KEY][0]}, keyless)
    line = _one_line_error(["import-bank", str(keyless), *out])
    assert "found none (entries: ['centres', 'descriptions']); choose one with --key" in line

    listed = tmp_path / "listed.pth"
    torch.save({"descriptions": list(bank["descriptions"]), KEY: bank[KEY]}, listed)
    line = _one_line_error(["import-bank", str(listed), *out])
    assert "'descriptions' must be a dict {class: [descriptions]}, got list" in line

    unknown = dict(bank, descriptions={("unicorn" if i == 5 else k): v
                                       for i, (k, v) in enumerate(bank["descriptions"].items())})
    bad = tmp_path / "unknown.pth"
    torch.save(unknown, bad)
    line = _one_line_error(["import-bank", str(bad), "--classes", "ade20k", *out])
    assert "class 5 'unicorn' is not in the dataset's class list (150 classes) and has no known alias" in line

    line = _one_line_error(["import-bank", str(good), "--classes", "cityscapes", *out])
    assert "the bank describes 150 classes but the class list cityscapes has 19" in line


def test_descriptor_file_import_reconciles_and_builds(tmp_path):
    import json

    (tmp_path / "classes.txt").write_text("wall\nbed\ntank\n", encoding="utf-8")
    descriptors = tmp_path / "descriptors.json"  # as ProLab's ADE20K file writes these classes
    descriptors.write_text(json.dumps({
        "Wall": ["vertical surface", "painted plaster"],
        "bed ": ["mattress on a frame", "pillows and sheets"],
        "storage tank": ["large cylinder for liquids", "steel container outdoors"],
    }), encoding="utf-8")
    runner = CliRunner()
    emb, clusters = tmp_path / "emb.safetensors", tmp_path / "clusters.safetensors"
    res = runner.invoke(main, ["embed", str(descriptors), "--classes", str(tmp_path / "classes.txt"), "-o", str(emb), "-q"])
    assert res.exit_code == 0, res.output
    assert f"{descriptors}: class 0 'Wall' -> 'wall' (case-folded)" in res.output
    assert f"{descriptors}: class 2 'storage tank' -> 'tank' (alias)" in res.output
    assert runner.invoke(main, ["cluster", str(emb), "-k", "6", "-o", str(clusters)]).exit_code == 0
    res = runner.invoke(main, ["build", "--descriptions", str(descriptors), "--embeddings", str(emb),
                               "--clusters", str(clusters), "--name", "three", "--out-dir", str(tmp_path / "spaces")])
    assert res.exit_code == 0, res.output
    space = LabelSpace.load(tmp_path / "spaces" / "three")
    assert space.classes == ["wall", "bed", "tank"]
    assert space.manifest["provenance"]["embed"]["classes"]["renamed"][1] == {
        "index": 2, "from": "storage tank", "to": "tank", "how": "alias"}

    (tmp_path / "classes.txt").write_text("wall\nbed\nsky\n", encoding="utf-8")
    res = runner.invoke(main, ["embed", str(descriptors), "--classes", str(tmp_path / "classes.txt"), "-o", str(emb)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(
        f"Error: {descriptors}: class 2 'storage tank' is not in the dataset's class list (3 classes)")
