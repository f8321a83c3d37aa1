"""``prolab cache``: where the LLM-reply / embedding cache is, what it holds, and clearing it."""

from __future__ import annotations

import datetime as dt
import re

import click

from ..errors import ProlabError
from .options import SummaryGroup, quiet_option

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or ``"1d12h"`` -> seconds."""
    compact = re.sub(r"\s+", "", text.lower())
    if not re.fullmatch(r"(\d+(\.\d+)?[smhdw])+", compact):
        raise click.BadParameter(f"{text!r}: expected a duration such as 30d, 12h, 90m, 45s, 2w or 1d12h")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", compact)
    return sum(float(n) * _UNITS[u] for n, u in parts)


def human_bytes(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _open_existing():
    """The cache, or None when its database file does not exist yet (never creates it)."""
    from ..cache import Cache, default_cache_path

    path = default_cache_path()
    if not path.is_file():
        return path, None
    return path, Cache(path)


@click.group(cls=SummaryGroup)
def cache() -> None:
    """The cache of LLM replies and embeddings ($PROLAB_CACHE/cache.sqlite)."""


@cache.command("path")
@quiet_option
def path_() -> None:
    """Print the cache database's path."""
    from ..cache import default_cache_path

    click.echo(str(default_cache_path()))


@cache.command()
@quiet_option
def info() -> None:
    """Entries and size per backend and model."""
    path, store = _open_existing()
    if store is None:
        click.echo(f"{path}: no cache yet (0 entries)")
        return
    groups = store.groups()
    files = [path, path.with_name(path.name + "-wal")]
    on_disk = sum(p.stat().st_size for p in files if p.is_file())
    total = sum(g["entries"] for g in groups)
    click.echo(f"{path}: {_entries(total)}, {human_bytes(on_disk)} on disk")
    if not groups:
        return
    rows = [("KIND", "BACKEND", "MODEL", "ENTRIES", "SIZE", "NEWEST")]
    for g in groups:
        rows.append((g["namespace"], g["backend"] or "(not recorded)", g["model"] or "-", str(g["entries"]),
                     human_bytes(g["bytes"]), _date(g["newest"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.rjust(w) if i in (3, 4) else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


@cache.command()
@quiet_option
@click.option("--older-than", "older_than", default=None, metavar="DURATION",
              help="only entries created longer ago than this (30d, 12h, 90m, 2w, 1d12h)")
@click.option("--backend", default=None, metavar="NAME",
              help="only entries of this backend (local: the offline Gemma model, llama-cpp: another GGUF, openai, "
                   "sentence-transformers, flag) or kind (llm, embed); prolab cache info lists those present")
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
def clear(older_than: str | None, backend: str | None, yes: bool) -> None:
    """Delete cached entries (all, or those matching --older-than / --backend).

    Safe while another prolab process uses the cache: deletion is one transaction that waits for
    a concurrent writer, and a process reading the cache keeps its view until it finishes.
    """
    seconds = parse_duration(older_than) if older_than is not None else None
    path, store = _open_existing()
    if store is None:
        click.echo(f"{path}: no cache yet, nothing to clear")
        return
    if seconds is None and backend is None and not yes:
        total = sum(g["entries"] for g in store.groups())
        click.confirm(f"delete all {_entries(total)} of {path}?", abort=True, err=True)
    if backend is not None:
        known = {g["backend"] for g in store.groups()} | {g["namespace"] for g in store.groups()}
        if backend not in known:
            raise ProlabError(f"{path}: no entries of backend {backend!r} (present: {', '.join(sorted(known - {''}))})")
    deleted = store.delete(seconds, backend)
    compacted = store.compact() if deleted else True
    what = " ".join(filter(None, [f"of backend {backend!r}" if backend else "",
                                  f"older than {older_than}" if older_than else ""]))
    note = "" if compacted else " (the file shrinks later: another process is using it now)"
    click.echo(f"deleted {_entries(deleted)}{' ' + what if what else ''} from {path}{note}")
