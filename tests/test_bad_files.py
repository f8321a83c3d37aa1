"""Never lose work: damaged, duplicated or unreadable inputs and unwritable outputs are one-line errors
naming the file, and no output is left half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prolab_cli.artifact import LabelSpace
from prolab_cli.cli import main
from prolab_cli.embed import EmbeddingSet

REPO = Path(__file__).resolve().parent.parent


def fail(args: list, *fragments: str) -> str:
    """Run ``prolab ARGS`` and check it fails the way a user should see: status 1, one line, no traceback."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def no_leftovers(folder: Path, *names: str) -> None:
    for name in names:
        assert not (folder / name).exists(), name
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    descriptions = {f"class{c}": [f"text {c} {i}" for i in range(3)] for c in range(3)}
    (tmp_path / "d.json").write_text(json.dumps(descriptions, indent=2))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((9, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    EmbeddingSet(descriptions, vectors, vectors[:3].copy(), {"model": "synthetic"}).save(tmp_path / "e.safetensors")
    space = LabelSpace.from_arrays("tiny", list(descriptions), np.eye(3, dtype=np.float32),
                                   np.eye(3, 8, dtype=np.float32), descriptions=descriptions)
    return {"root": tmp_path, "descriptions": tmp_path / "d.json", "embeddings": tmp_path / "e.safetensors",
            "artifact": space.save(tmp_path / "spaces")}


def test_truncated_json_safetensors_and_torch_files(files):
    root = files["root"]
    fail(["embed", truncate(files["descriptions"]), "-o", root / "out.safetensors"], "d.json: malformed JSON at line")
    fail(["cluster", truncate(files["embeddings"]), "-k", "2", "-o", root / "c.safetensors"],
         "e.safetensors: not a safetensors file")
    fail(["convert", files["embeddings"], root / "out.pth"], "e.safetensors: not a readable safetensors file")
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}}, root / "ckpt.pth")
    fail(["eval", "--checkpoint", truncate(root / "ckpt.pth"), "--data-root", root],
         "ckpt.pth: not a readable prolab checkpoint")
    no_leftovers(root, "out.safetensors", "c.safetensors", "out.pth")


def test_damaged_artifacts_name_the_damaged_file(files):
    artifact = files["artifact"]
    truncate(artifact / "tensors.safetensors")
    fail(["inspect", artifact], f"{artifact / 'tensors.safetensors'}: hash mismatch")
    fail(["export-bank", artifact, "-o", files["root"] / "bank.pth"], "tensors.safetensors: hash mismatch")
    truncate(artifact / "manifest.json")
    fail(["inspect", artifact], f"{artifact / 'manifest.json'}: malformed JSON")
    no_leftovers(files["root"], "bank.pth")


def test_bank_files_that_are_not_banks(tmp_path):
    key = "bge_base_gpt3.5_cluster_2_embeddings_and_labels"
    entry = [torch.randn(8, 2), torch.eye(2, 3, dtype=torch.float64)]
    torch.save({"descriptions": ["a wall", "a floor", "a door"], key: entry}, tmp_path / "list.pth")
    fail(["import-bank", tmp_path / "list.pth", "--name", "x", "--out-dir", tmp_path / "spaces"],
         "list.pth: 'descriptions' must be a dict {class: [descriptions]}, got list")
    torch.save({"descriptions": {"wall": ["a wall"]}, key: entry}, tmp_path / "bank.pth")
    fail(["import-bank", truncate(tmp_path / "bank.pth"), "--name", "x", "--out-dir", tmp_path / "spaces"],
         "bank.pth: not a loadable bank")
    assert not (tmp_path / "spaces").exists()


def test_class_lists_with_duplicates(tmp_path):
    (tmp_path / "dup.txt").write_text("road\nsky\n Road\n")
    fail(["describe", "--classes", tmp_path / "dup.txt", "-o", tmp_path / "d.json"],
         "dup.txt: line 3: duplicate class 'Road' (same as 'road' on line 1)")
    (tmp_path / "dup.json").write_text(json.dumps(["road", "sky", "SKY"], indent=1))
    fail(["convert", tmp_path / "none.pth", tmp_path / "o.pth", "--classes", tmp_path / "dup.json"],
         "dup.json: line 4: duplicate class 'SKY' (same as 'sky' on line 3)")
    fail(["data", "check", "--dataset", "generic", "--data-root", tmp_path, "--classes", tmp_path / "dup.txt"],
         "dup.txt: line 3: duplicate class")
    no_leftovers(tmp_path, "d.json", "o.pth")


def test_truncated_png_masks_and_images_are_named(tmp_path):
    res = CliRunner().invoke(main, ["data", "synth", "--out-dir", str(tmp_path / "data"), "--train", "2", "--val", "3",
                                    "--size", "32", "--seen", "3", "--heldout", "1"])
    assert res.exit_code == 0, res.output
    masks = sorted((tmp_path / "data" / "annotations" / "validation").glob("*.png"))
    # cut only the closing IEND chunk: the pixels still decode, so only the missing end can tell
    masks[0].write_bytes(masks[0].read_bytes()[:-12])
    truncate(masks[1])
    res = CliRunner().invoke(main, ["data", "check", "--dataset", "ade20k", "--data-root", str(tmp_path / "data")])
    assert res.exit_code == 1
    assert f"{masks[0]}: truncated PNG (the file ends before its IEND chunk)" in res.stdout
    assert f"{masks[1]}: " in res.stdout and "1 good samples, 2 bad" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == f"Error: 2 bad samples in {tmp_path / 'data'} (val)"
    from segmentation.data.datasets import read_image

    image = sorted((tmp_path / "data" / "images" / "validation").glob("*.jpg"))[0]
    png = tmp_path / "photo.png"
    from PIL import Image

    Image.open(image).save(png)
    png.write_bytes(png.read_bytes()[:-12])
    with pytest.raises(Exception, match=r"photo.png: truncated PNG"):
        read_image(png)


def test_train_refuses_a_work_dir_with_checkpoints(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "iter_1000.pth").write_bytes(b"an earlier run's weights")
    (work / "last_checkpoint").write_text("iter_1000.pth\n")
    fail(["train", "--data-root", tmp_path, "--work-dir", work],
         f"{work}: holds checkpoints of an earlier run (iter_1000.pth, last_checkpoint); "
         "continue it with --resume or start afresh with --overwrite")
    fail(["train", "--data-root", tmp_path, "--work-dir", work, "--resume", "--overwrite"],
         "--resume continues the run in the work dir, --overwrite deletes it: give one of them")
    # the new run fails before its first checkpoint: the earlier one is back, untouched
    fail(["train", "--data-root", tmp_path / "nowhere", "--work-dir", work, "--overwrite", "--head", "onehot",
          "--config", "synth-vit-adapter-nano"], f"{tmp_path / 'nowhere'}: data root not found")
    assert (work / "iter_1000.pth").read_bytes() == b"an earlier run's weights"
    assert (work / "last_checkpoint").read_text() == "iter_1000.pth\n" and not (work / ".overwritten").exists()


# --------------------------------------------------------------------------------- permissions
def _as_unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def run_cli(args: list, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **env)
    return subprocess.run([*_as_unprivileged(), sys.executable, "-m", "prolab_cli.cli", *map(str, args)],
                          env=full_env, capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_permission_errors_name_the_file(files):
    root = files["root"]
    locked = root / "locked.json"
    shutil.copy(files["descriptions"], locked)
    locked.chmod(0)
    readonly = root / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        manifest = files["artifact"] / "manifest.json"
        manifest.chmod(0)
        line = one_line_error(run_cli(["inspect", files["artifact"]]))
        assert line == f"Error: {manifest}: Permission denied"
        manifest.chmod(0o644)
        line = one_line_error(run_cli(["describe", "--classes", locked, "-o", root / "d2.json"]))
        assert line == f"Error: {locked}: cannot read (Permission denied)"
        line = one_line_error(run_cli(["embed", locked, "-o", root / "out.safetensors"]))  # click checks the file
        assert f"File '{locked}' is not readable." in line
        line = one_line_error(run_cli(["cluster", files["embeddings"], "-k", "2", "-o", readonly / "c.safetensors"]))
        assert line == f"Error: {readonly / 'c.safetensors'}: cannot write (Permission denied)"
        line = one_line_error(run_cli(["export-bank", files["artifact"], "-o", readonly / "bank.pth"]))
        assert line == f"Error: {readonly / 'bank.pth'}: cannot write (Permission denied)"
        line = one_line_error(run_cli(["data", "synth", "--out-dir", readonly / "synth", "--train", "1", "--val", "1"]))
        assert line == f"Error: {readonly / 'synth'}: cannot write (Permission denied)"
        line = one_line_error(run_cli(["embed", files["descriptions"], "-o", root / "out.safetensors"],
                                      PROLAB_CACHE=str(readonly / "cache")))
        assert line.startswith(f"Error: {readonly / 'cache'}") and "Permission denied" in line
        line = one_line_error(run_cli(["train", "--data-root", root, "--work-dir", readonly / "run", "--head",
                                       "onehot", "--config", "synth-vit-adapter-nano"]))
        assert line.startswith(f"Error: {readonly / 'run'}") and "Permission denied" in line
    finally:
        readonly.chmod(0o755)
        locked.chmod(0o644)
    assert list(readonly.iterdir()) == [] and not (root / "out.safetensors").exists()
