"""The reference data the golden and checkpoint-key tests read travels with the repository
(``tests/data``), byte for byte as the original code wrote it: every file is listed in its folder's
SHA256SUMS with the digest of the reference run, and nothing unlisted hides beside it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

FOLDERS = ["golden", "checkpoint_keys"]


def _listed(folder: Path) -> dict[str, str]:
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*")] = digest
    return sums


@pytest.mark.parametrize("name", FOLDERS)
def test_reference_files_match_their_recorded_sha256(reference_data, name):
    folder = reference_data / name
    sums = _listed(folder)
    assert sums, f"{folder}/SHA256SUMS lists no file"
    present = {p.name for p in folder.iterdir() if p.name != "SHA256SUMS"}
    assert present == set(sums), f"unlisted {sorted(present - set(sums))}, missing {sorted(set(sums) - present)}"
    for fname, digest in sums.items():
        got = hashlib.sha256((folder / fname).read_bytes()).hexdigest()
        assert got == digest, f"{name}/{fname}: sha256 {got} != recorded {digest}"


def test_reference_data_lives_in_the_repository(reference_data):
    tests_dir = Path(__file__).resolve().parent
    assert reference_data == tests_dir / "data"
    golden = set(_listed(reference_data / "golden"))
    for stem in ("tiny", "prolab", "beit_tiny", "beit_prolab"):
        assert {f"{stem}_io.safetensors", f"{stem}_io_fp64.safetensors", f"{stem}_state_dict.safetensors"} <= golden
