"""``prolab cache path|info|clear`` and the cache's behaviour while another process holds it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from prolab_cli.cache import Cache, default_cache_path
from prolab_cli.cli import main
from prolab_cli.errors import ProlabError

REPO = Path(__file__).resolve().parent.parent
DAY = 86400.0


def _invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["cache", *args], input=input, catch_exceptions=False)


def _age(path: Path, backend: str, seconds: float) -> None:
    """Make ``backend``'s entries ``seconds`` old (what time alone would do)."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET created = created - ? WHERE backend = ?", (seconds, backend))


@pytest.fixture
def filled() -> Path:
    cache = Cache()
    cache.put_many("llm", [(f"k{i}", b"x" * 100) for i in range(3)], backend="openai", model="gpt-3.5-turbo")
    cache.put_many("llm", [("g0", b"y" * 10)], backend="llama-cpp", model="gemma-3-270m")
    cache.put_many("embed", [(f"e{i}", b"z" * 1536) for i in range(4)], backend="sentence-transformers",
                   model="all-MiniLM-L6-v2")
    cache.close()
    _age(cache.path, "openai", 40 * DAY)
    return cache.path


def test_path_is_the_database_under_prolab_cache(tmp_path):
    res = _invoke("path")
    assert res.exit_code == 0 and res.output.strip() == str(Path(os.environ["PROLAB_CACHE"]) / "cache.sqlite")
    assert not Path(res.output.strip()).exists()  # asking never creates it
    res = _invoke("info")
    assert res.exit_code == 0 and "no cache yet (0 entries)" in res.output


def test_info_lists_entries_and_size_per_backend_and_model(filled):
    res = _invoke("info")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"{filled}: 8 entries, ")
    rows = {tuple(line.split()[:5]) for line in lines[2:]}
    assert rows == {("embed", "sentence-transformers", "all-MiniLM-L6-v2", "4", "6.0"),
                    ("llm", "llama-cpp", "gemma-3-270m", "1", "10"),
                    ("llm", "openai", "gpt-3.5-turbo", "3", "300")}


def test_clear_by_age_and_backend_and_all_with_confirmation(filled):
    res = _invoke("clear", "--older-than", "30d")
    assert res.exit_code == 0 and res.output.startswith("deleted 3 entries older than 30d"), res.output
    assert Cache(filled).count() == 5
    res = _invoke("clear", "--backend", "llama-cpp")
    assert res.exit_code == 0 and "deleted 1 entry of backend 'llama-cpp'" in res.output
    assert Cache(filled).count("embed") == 4 and Cache(filled).count("llm") == 0
    res = _invoke("clear", "--backend", "flag")
    assert res.exit_code == 1 and "no entries of backend 'flag' (present: embed, sentence-transformers)" in res.output
    res = _invoke("clear", input="n\n")
    assert res.exit_code == 1 and "delete all 4 entries" in res.output and Cache(filled).count() == 4
    res = _invoke("clear", "--yes")
    assert res.exit_code == 0 and "deleted 4 entries from" in res.output and Cache(filled).count() == 0


def test_clear_by_kind_and_bad_duration(filled):
    res = _invoke("clear", "--backend", "embed")
    assert res.exit_code == 0 and "deleted 4 entries" in res.output and Cache(filled).count() == 4
    res = _invoke("clear", "--older-than", "three days")
    assert res.exit_code == 1 and "expected a duration such as 30d" in res.output and Cache(filled).count() == 4


def test_stages_record_backend_and_model(tmp_path):
    from prolab_cli.describe import describe_classes
    from prolab_cli.llm.base import Backend, Completion

    class Scripted(Backend):
        kind, model, mode = "scripted", "v1", "chat"

        def complete(self, prompt, sampling, seed):
            return Completion(text="- a thing\n- another thing\n- a third thing", finish_reason="stop")

    describe_classes(["road", "sky"], Scripted(), "prolab", progress=False)
    assert [(g["namespace"], g["backend"], g["model"], g["entries"]) for g in Cache().groups()] == [
        ("llm", "scripted", "v1", 2)]


HOLDER = textwrap.dedent("""
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO entries (namespace, key, value, created) VALUES ('llm', 'held', x'00', ?)",
               (time.time() - 90 * 86400,))
    print("locked", flush=True)
    sys.stdin.readline()
    db.execute("COMMIT")
    print("released", flush=True)
""")


def test_clear_waits_for_another_process_that_is_writing(filled):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(filled)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        clear = subprocess.Popen([sys.executable, "-m", "prolab_cli.cli", "cache", "clear", "--older-than", "60d"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # let it reach the lock; the assertions below do not depend on how long
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        out, err = clear.communicate(timeout=120)
    finally:
        holder.kill()
    # the row committed by the other process was old enough and is gone: clear ran after it, not instead
    assert clear.returncode == 0, err
    assert out.startswith("deleted 1 entry older than 60d") and Cache(filled).count() == 8


def test_a_reader_in_the_middle_of_a_transaction_does_not_block_clear(filled):
    reader = sqlite3.connect(filled, isolation_level=None)
    reader.execute("BEGIN")
    before = reader.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    res = _invoke("clear", "--yes")
    assert res.exit_code == 0 and "deleted 8 entries" in res.output
    assert reader.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == before == 8  # its snapshot holds
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    reader.close()


def test_a_lock_held_beyond_the_busy_timeout_is_a_one_line_error(filled):
    holder = sqlite3.connect(filled, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ProlabError, match=r"cache.sqlite: the cache is locked by another process for more "
                                              r"than 0.2 s; try again when it has finished$"):
            Cache(filled, timeout=0.2).delete(older_than=DAY)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Cache(filled).count() == 8


def test_a_file_that_is_not_a_database_and_an_old_schema(tmp_path, monkeypatch):
    path = default_cache_path()
    path.write_bytes(b"this is not sqlite" * 100)
    res = _invoke("info")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert f"{path}: not a prolab cache database" in res.output
    path.unlink()
    with sqlite3.connect(path) as db:  # a cache written before entries recorded their origin
        db.execute("CREATE TABLE entries (namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
                   " created REAL NOT NULL, PRIMARY KEY (namespace, key))")
        db.execute("INSERT INTO entries VALUES ('embed', 'k', x'0000', 0)")
    res = _invoke("info")
    assert res.exit_code == 0 and "embed  (not recorded)  -" in res.output and "1 entry," in res.output
