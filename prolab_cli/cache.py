"""The SQLite cache shared by every stage (LLM replies, embeddings), keyed by content hash.

One database file, ``<cache_dir>/cache.sqlite``, one table of ``(namespace, key) -> value``.
A key is the SHA-256 of the canonical JSON of everything that determines the value (backend,
model, rendered prompt, sampling options, ...), so a changed input is a different key and a
re-run with the same inputs makes no call. Writes are committed one by one, so a killed run
keeps every reply it already received. Safe to use from several threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .paths import cache_dir


def content_key(*parts: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``parts`` (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """A content-addressed key/value store in one SQLite file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else cache_dir() / "cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL,"
                " value BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (namespace, key))"
            )

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

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

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Store ``value`` (committed at once)."""
        self.put_many(namespace, [(key, value)])

    def put_many(self, namespace: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several values in one transaction."""
        now = time.time()
        rows = [(namespace, k, sqlite3.Binary(v), now) for k, v in items]
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get_json(self, namespace: str, key: str) -> Any | None:
        """The stored JSON value, or None."""
        raw = self.get(namespace, key)
        return None if raw is None else json.loads(raw.decode("utf-8"))

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable value."""
        self.put(namespace, key, json.dumps(value, ensure_ascii=False).encode("utf-8"))

    def count(self, namespace: str | None = None) -> int:
        """Number of entries (in one namespace, or all)."""
        db = self._connect()
        if namespace is None:
            return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM entries WHERE namespace=?", (namespace,)).fetchone()[0]
