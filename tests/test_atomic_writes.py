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


@pytest.mark.parametrize("name", ["../up2", "a/b", "..", ".hidden", "", " x", "a\\b", "x\n", "a" * 201])
def test_names_that_become_paths_are_plain(tmp_path, name):
    with pytest.raises(ProlabError, match="must be a plain name"):
        atomic.inside(tmp_path, name, "label space name")


def test_a_plain_name_stays_inside_its_folder(tmp_path):
    assert atomic.inside(tmp_path, "ade20k-minilm-k256", "name") == tmp_path / "ade20k-minilm-k256"
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(ProlabError, match="would lie outside"):
        atomic.inside(tmp_path, "link", "name")


@pytest.mark.parametrize("command", [
    ["extend", "{space}", "--keep", "a", "--name", "../up2", "--out-dir", "{out}"],
    ["import-bank", "{bank}", "--name", "../up2", "--out-dir", "{out}"],
    ["build", "--embeddings", "{emb}", "--clusters", "{clu}", "--name", "../up2", "--out-dir", "{out}"],
    ["export-bank", "{space}", "--dataset", "../../escaped", "--out-dir", "{out}"],
])
def test_no_command_writes_outside_its_output_folder(tmp_path, command):
    """--name (and export-bank's file name, built from --dataset and the entry key) cannot leave --out-dir."""
    from click.testing import CliRunner

    from prolab_cli.build import build_label_space
    from prolab_cli.cli import main
    from prolab_cli.cluster import cluster_embeddings
    from prolab_cli.embed import EmbeddingSet
    from prolab_cli.interop import export_bank

    import numpy as np

    x = np.eye(4, dtype=np.float32)
    emb = EmbeddingSet({"a": ["p", "q"], "b": ["r", "s"]}, x, np.eye(2, 4, dtype=np.float32), {"model": "m"})
    clusters = cluster_embeddings(emb, 3)
    space_dir = build_label_space(emb, clusters, "toy").save(tmp_path / "spaces")
    paths = {"space": space_dir, "out": tmp_path / "deep" / "out", "emb": emb.save(tmp_path / "e.safetensors"),
             "clu": clusters.save(tmp_path / "c.safetensors"),
             "bank": export_bank(build_label_space(emb, clusters, "toy"), tmp_path / "b.pth")}
    result = CliRunner().invoke(main, [a.format(**paths) for a in command])
    assert result.exit_code == 1 and "plain name" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pth", "c.safetensors", "e.safetensors", "spaces"]


def test_an_edited_provenance_is_refused(tmp_path):
    import json

    import numpy as np

    from prolab_cli.artifact import LabelSpace
    from prolab_cli.errors import IntegrityError

    space = LabelSpace("toy", ["a", "b"], np.eye(2), np.eye(2, 3), [{"id": i, "name": f"p{i}"} for i in range(2)],
                       {"a": ["x"], "b": ["y"]}, {"provenance": {"embed": {"model": "minilm"}}})
    path = space.save(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["provenance"]["embed"]["model"] = "x/../../../tmp/escaped"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="'provenance' was edited"):
        LabelSpace.load(path)


class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, data):
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.raw.close()


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    old = write_bytes(tmp_path / "keep.json", b"old")
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(ProlabError, match=r"keep.json: cannot write \(No space left on device\)"):
        write_bytes(old, b"new")
    assert old.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]
    monkeypatch.undo()

    def fill(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", fill)
    with pytest.raises(ProlabError, match=r"space: cannot write \(No space left on device\)"):
        with directory(tmp_path / "space") as tmp:
            (tmp / "tensors.safetensors").write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_a_full_cache_database_is_one_line_and_keeps_what_was_written(tmp_path):
    from prolab_cli.cache import Cache

    cache = Cache(tmp_path / "cache.sqlite")
    cache.put("llm", "first", b"kept")
    db = cache._connect()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages + 2}")  # SQLite's own 'database or disk is full'
    with pytest.raises(ProlabError, match=r"cache.sqlite: the disk is full; this entry was not cached"):
        cache.put_many("llm", [(f"k{i}", os.urandom(4096)) for i in range(64)])
    assert cache.get("llm", "first") == b"kept" and cache.get("llm", "k0") is None
    cache.put("llm", "small", b"x")  # the connection is usable again (no transaction left open)


def test_leftovers_of_a_killed_write_are_cleaned_and_a_half_swapped_folder_comes_back(tmp_path):
    import subprocess
    import sys

    import numpy as np

    from prolab_cli.artifact import LabelSpace

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that has ended
    (tmp_path / f".iter_4.pth.{dead}.ab12.tmp").write_bytes(b"half")
    (tmp_path / f".iter_4.pth.{os.getpid()}.cd34.tmp").write_bytes(b"ours, still writing")
    write_bytes(tmp_path / "iter_4.pth", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".iter_4.pth.{os.getpid()}.cd34.tmp", "iter_4.pth"])

    space = LabelSpace("toy", ["a", "b"], np.eye(2), np.eye(2, 3), [{"id": i, "name": f"p{i}"} for i in range(2)],
                       {"a": ["x"], "b": ["y"]})
    path = space.save(tmp_path / "spaces")
    os.replace(path, path.with_name(".toy.old"))  # killed after the first rename of a swap
    assert LabelSpace.load(path).version == space.version and path.is_dir()
    leftover = tmp_path / "spaces" / f".toy.{dead}.ef56.tmp"
    leftover.mkdir()
    for f in path.iterdir():
        (leftover / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ProlabError, match="an unfinished write"):
        LabelSpace.load(leftover)
    space.save(tmp_path / "spaces")
    assert sorted(p.name for p in (tmp_path / "spaces").iterdir()) == ["toy"]
