"""The SQLite cache shared by every stage (LLM replies, embeddings), keyed by content hash.

One database file, ``<cache_dir>/cache.sqlite``, one table of ``(namespace, key) -> value``.
A key is the SHA-256 of the canonical JSON of everything that determines the value (backend,
model, rendered prompt, sampling options, ...), so a changed input is a different key and a
re-run with the same inputs makes no call. Writes are committed one by one, so a killed run
keeps every reply it already received. Safe to use from several threads and processes at once
(WAL journal, a busy timeout, writes in ``BEGIN IMMEDIATE`` transactions). Each entry also
records the backend and model that produced it, for ``prolab cache info`` and ``clear --backend``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ProlabError
from .paths import cache_dir

#: seconds a connection waits for another process's write lock before giving up
BUSY_TIMEOUT = 60.0
_ORIGIN_COLUMNS = (("backend", "TEXT NOT NULL DEFAULT ''"), ("model", "TEXT NOT NULL DEFAULT ''"))


def default_cache_path() -> Path:
    """The database file: ``<cache_dir>/cache.sqlite`` (``$PROLAB_CACHE`` sets the folder)."""
    return cache_dir() / "cache.sqlite"


def content_key(*parts: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``parts`` (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_MIB = 1 << 20


def _head_and_tail(f, size: int) -> bytes:
    """The first MiB of an open file and everything from its last MiB on (the whole file, twice over
    where they overlap, when it is shorter)."""
    head = f.read(_MIB)
    f.seek(max(size - _MIB, 0))
    return head + f.read(_MIB)


def weights_fingerprint(path: Path) -> str:
    """The content identity of model weights that cache keys include, cheap for large files.

    A file (a GGUF): SHA-256 of its size and first and last MiB. A directory (a sentence-transformers
    model): the first 16 hex digits of SHA-256 over each file's relative path and size, files up to
    4 MiB whole and larger ones by their first and last MiB (``.cache`` folders left out).
    """
    path = Path(path)
    if path.is_file():
        size = path.stat().st_size
        with path.open("rb") as f:
            return hashlib.sha256(str(size).encode() + _head_and_tail(f, size)).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(file, "rb") as f:
            digest.update(f.read() if size <= 4 * _MIB else _head_and_tail(f, size))
    return digest.hexdigest()[:16]


class Cache:
    """A content-addressed key/value store in one SQLite file."""

    def __init__(self, path: str | Path | None = None, timeout: float = BUSY_TIMEOUT):
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProlabError(f"{self.path.parent}: cannot create the cache folder ({exc.strerror})") from None
        self._local = threading.local()
        with self._guard():
            db = self._connect()
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL,"
                " value BLOB NOT NULL, created REAL NOT NULL, backend TEXT NOT NULL DEFAULT '',"
                " model TEXT NOT NULL DEFAULT '', PRIMARY KEY (namespace, key))"
            )
            have = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
            for name, kind in _ORIGIN_COLUMNS:  # a database from before entries recorded their origin
                if name not in have:
                    try:
                        db.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as exc:
                        if "duplicate column" not in str(exc):  # another process added it first
                            raise

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            with self._guard():
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite failures the user can act on, as one line naming the database file."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise ProlabError(
                    f"{self.path}: the cache is locked by another process for more than {self.timeout:g} s; "
                    "try again when it has finished") from None
            if "full" in str(exc):
                raise ProlabError(f"{self.path}: the disk is full; this entry was not cached (those written "
                                  "before it are kept)") from None
            raise ProlabError(f"{self.path}: cannot use the cache database ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise ProlabError(
                f"{self.path}: not a prolab cache database ({exc}); move it away or set PROLAB_CACHE") from None

    def get(self, namespace: str, key: str) -> bytes | None:
        """The stored bytes, or None."""
        row = self._connect().execute(
            "SELECT value FROM entries WHERE namespace=? AND key=?", (namespace, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that are present."""
        keys = list(keys)
        found: dict[str, bytes] = {}
        db = self._connect()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in db.execute(
                f"SELECT key, value FROM entries WHERE namespace=? AND key IN ({marks})",
                (namespace, *chunk),
            ):
                found[key] = bytes(value)
        return found

    def put(self, namespace: str, key: str, value: bytes, backend: str = "", model: str = "") -> None:
        """Store ``value`` (committed at once); ``backend`` and ``model`` say what produced it."""
        self.put_many(namespace, [(key, value)], backend=backend, model=model)

    def put_many(self, namespace: str, items: Iterable[tuple[str, bytes]], backend: str = "",
                 model: str = "") -> None:
        """Store several values in one transaction."""
        now = time.time()
        rows = [(namespace, k, sqlite3.Binary(v), now, backend, model) for k, v in items]
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO entries (namespace, key, value, created, backend, model)"
                " VALUES (?, ?, ?, ?, ?, ?)", rows)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (``BEGIN IMMEDIATE``: waits for another writer up to the
        busy timeout), committed when the block ends, rolled back on an exception."""
        db = self._connect()
        with self._guard():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    db.execute("ROLLBACK")
                raise

    def get_json(self, namespace: str, key: str) -> Any | None:
        """The stored JSON value, or None."""
        raw = self.get(namespace, key)
        return None if raw is None else json.loads(raw.decode("utf-8"))

    def put_json(self, namespace: str, key: str, value: Any, backend: str = "", model: str = "") -> None:
        """Store a JSON-serialisable value."""
        self.put(namespace, key, json.dumps(value, ensure_ascii=False).encode("utf-8"), backend=backend, model=model)

    def count(self, namespace: str | None = None) -> int:
        """Number of entries (in one namespace, or all)."""
        db = self._connect()
        if namespace is None:
            return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM entries WHERE namespace=?", (namespace,)).fetchone()[0]

    def groups(self) -> list[dict[str, Any]]:
        """Entries per (namespace, backend, model): count, bytes of values, oldest and newest time."""
        with self._guard():
            rows = self._connect().execute(
                "SELECT namespace, backend, model, COUNT(*), COALESCE(SUM(LENGTH(value)), 0), MIN(created),"
                " MAX(created) FROM entries GROUP BY namespace, backend, model ORDER BY namespace, backend, model"
            ).fetchall()
        keys = ("namespace", "backend", "model", "entries", "bytes", "oldest", "newest")
        return [dict(zip(keys, row)) for row in rows]

    def delete(self, older_than: float | None = None, backend: str | None = None) -> int:
        """Delete entries created more than ``older_than`` seconds ago and/or whose backend (or
        namespace: ``llm``, ``embed``) is ``backend``; all entries when both are None. Returns
        how many were deleted. One transaction: a concurrent writer waits, a reader is unaffected."""
        where, params = [], []
        if older_than is not None:
            where.append("created < ?")
            params.append(time.time() - older_than)
        if backend is not None:
            where.append("(backend = ? OR namespace = ?)")
            params += [backend, backend]
        sql = "DELETE FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        with self._write() as db:
            with self._guard():
                deleted = db.execute(sql, params).rowcount
        return deleted

    def compact(self) -> bool:
        """Give the space of deleted entries back to the file system (VACUUM); False when another
        process is using the database right now (nothing is lost: the space is reused later)."""
        db = self._connect()
        db.execute("PRAGMA busy_timeout=0")
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
