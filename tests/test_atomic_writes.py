"""prolab_cli.atomic: outputs appear whole or not at all, with the permissions the user's umask gives."""

from __future__ import annotations

import os
import stat

import pytest

from prolab_cli import atomic
from prolab_cli.atomic import directory, write_bytes
from prolab_cli.errors import ProlabError


def test_files_and_folders_follow_the_umask(tmp_path, monkeypatch):
    for mask in (0o022, 0o077):
        monkeypatch.setattr(atomic, "UMASK", mask)
        out = write_bytes(tmp_path / f"f{mask:o}.json", b"{}")
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
        with directory(tmp_path / f"d{mask:o}") as tmp:
            (tmp / "x").write_bytes(b"1")
        assert stat.S_IMODE((tmp_path / f"d{mask:o}").stat().st_mode) == 0o777 & ~mask


def test_the_umask_is_the_process_one():
    mask = os.umask(0o022)
    os.umask(mask)
    assert atomic._umask() == mask


def test_a_failed_block_leaves_the_old_output_and_no_temporary(tmp_path):
    target = write_bytes(tmp_path / "a.txt", b"old")
    with pytest.raises(RuntimeError):
        with atomic.replacing(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(ProlabError, match=r"a.txt/b: cannot write"):
        write_bytes(target / "b", b"x")
