"""Atomic file and directory writes: a killed run never leaves a half-written output."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import ProlabError


def _umask() -> int:
    """The process's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: read once: mkstemp/mkdtemp create 0600/0700, but outputs should be as readable as any file the user makes
UMASK = _umask()


_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


def path_name(name: str, what: str) -> str:
    """``name`` checked to be one plain path component (an artifact, run or file name): not empty, no
    ``/`` or ``\\``, no control character, not ``.``/``..``, no leading dot, at most 200 characters."""
    if not isinstance(name, str) or not name.strip() or _BAD_NAME.search(name) or name.startswith(".") \
            or len(name) > 200 or name != name.strip():
        raise ProlabError(f"{what} {name!r}: must be a plain name (no '/', '\\', control characters, leading "
                          "dot or surrounding spaces; at most 200 characters)")
    return name


def inside(folder: str | os.PathLike, name: str, what: str) -> Path:
    """``folder/name`` for a checked :func:`path_name`, refused unless it resolves inside ``folder``."""
    folder = Path(folder)
    target = folder / path_name(name, what)
    if not target.resolve().is_relative_to(folder.resolve()):
        raise ProlabError(f"{what} {name!r}: {target} would lie outside {folder}")
    return target


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def is_temporary(path: str | os.PathLike) -> bool:
    """True for the name of a temporary file or folder of an atomic write."""
    return bool(TEMPORARY.match(Path(path).name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: Path) -> None:
    """Remove the temporaries a killed write of ``path`` left beside it (those whose process is gone),
    and put back ``.NAME.old`` when a kill fell between the two renames of a folder swap."""
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    if not path.parent.is_dir():
        return
    for leftover in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        match = TEMPORARY.match(leftover.name)
        if match and match["name"] == path.name and not _alive(int(match["pid"])):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters made literal."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file in the same folder, renamed
    over ``path`` when the block ends; an exception in the block removes it and leaves ``path``."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~UMASK)
    try:
        with _writing(path):  # the caller's writes too: a full disk fails inside the block
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OS error while writing ``path`` (permission denied, disk full, a folder in the way) as one
    line naming ``path`` rather than the temporary file."""
    try:
        yield
    except OSError as exc:
        raise ProlabError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with replacing(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any, indent: int | None = 2) -> bytes:
    """The JSON that prolab writes: UTF-8, non-ASCII kept, trailing newline."""
    return (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write :func:`json_bytes` of ``obj`` atomically."""
    return write_bytes(path, json_bytes(obj, indent))


@contextmanager
def directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name, then move it into place in one rename.

    An existing directory at ``path`` is replaced only once the new one is complete: it is moved to
    ``.NAME.old`` first, so a kill between the two renames leaves it there, and the next write or load
    of ``path`` (:func:`clean_stale`) puts it back.
    """
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~UMASK)
    try:
        with _writing(path):  # the files the caller writes into ``tmp`` too
            yield tmp
        with _writing(path):
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
