"""The ready-to-use data prolab ships: descriptions of every built-in class list and the label-space
artifacts built from them.

``label_spaces/descriptions/<list>.json`` holds ``{class: [descriptions]}`` for a built-in list (written
and reviewed by hand, see ``label_spaces/descriptions/PROVENANCE.md``); ``label_spaces/shipped/<name>/``
holds an artifact built from one of them (``<list>-minilm-k<K>``). A shipped artifact is found by its own
name or by the name (or an alias) of any built-in list whose classes it has, so ``--label-space ade20k``
and ``--label-space bdd100k`` both work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .classes import BUILTIN, builtin_name, load_classes, normalise
from .errors import ProlabError
from .paths import data_dir

#: built-in lists that use another list's descriptions (the same classes)
SHARED_DESCRIPTIONS = {"bdd100k": "cityscapes"}
#: where ``describe`` looks for a user's class name, first match wins: small, curated lists first
LOOKUP_ORDER = ("cityscapes", "pascal-context-59", "ade20k", "coco-stuff", "ade20k-847", "pascal-context-459")


def descriptions_dir() -> Path:
    """The folder of the shipped description files."""
    return data_dir("label_spaces") / "descriptions"


def shipped_dir() -> Path:
    """The folder of the shipped label-space artifacts."""
    return data_dir("label_spaces") / "shipped"


def descriptions_path(list_name: str) -> Path | None:
    """The shipped descriptions file of built-in list ``list_name`` (an alias works), or None."""
    canonical = builtin_name(list_name)
    if canonical is None:
        return None
    path = descriptions_dir() / f"{SHARED_DESCRIPTIONS.get(canonical, canonical)}.json"
    return path if path.is_file() else None


@lru_cache(maxsize=None)
def _read_descriptions(path: str) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProlabError(f"{path}: cannot read the shipped descriptions ({exc})") from None
    if not isinstance(data, dict):
        raise ProlabError(f"{path}: expected a JSON object {{class: [descriptions]}}")
    return data


def shipped_descriptions(list_name: str) -> dict[str, list[str]]:
    """The shipped ``{class: [descriptions]}`` of built-in list ``list_name``, in class order."""
    path = descriptions_path(list_name)
    if path is None:
        raise ProlabError(f"no shipped descriptions for class list {list_name!r}")
    return dict(_read_descriptions(str(path)))


@dataclass(frozen=True)
class Found:
    """Where a class name's shipped descriptions came from."""

    list_name: str
    key: str
    descriptions: list[str]


def _index() -> dict[str, Found]:
    """normalised name -> first Found in :data:`LOOKUP_ORDER`; an ADE20K-847 synonym list is also
    found by its first name."""
    index: dict[str, Found] = {}
    for list_name in LOOKUP_ORDER:
        path = descriptions_path(list_name)
        if path is None:
            continue
        for key, lines in _read_descriptions(str(path)).items():
            found = Found(list_name, key, list(lines))
            index.setdefault(normalise(key), found)
            index.setdefault(normalise(key.split(",")[0]), found)
    return index


def find_descriptions(classes: list[str], list_name: str | None = None) -> tuple[dict[str, Found], list[str]]:
    """Shipped descriptions for ``classes``: (class -> Found, classes not covered), in class order.

    With ``list_name`` (a built-in list) that list's file answers every class; otherwise each name is
    looked up in every shipped file (:data:`LOOKUP_ORDER`), compared in :func:`classes.normalise` form."""
    if list_name is not None and descriptions_path(list_name) is not None:
        own = shipped_descriptions(list_name)
        file_list = descriptions_path(list_name).stem
        found = {c: Found(file_list, c, list(own[c])) for c in classes if c in own}
    else:
        index = _index()
        found = {c: index[normalise(c)] for c in classes if normalise(c) in index}
    return found, [c for c in classes if c not in found]


@dataclass(frozen=True)
class ShippedSpace:
    """A shipped artifact: its directory and the built-in lists whose classes it has."""

    path: Path
    lists: tuple[str, ...]
    manifest: dict

    @property
    def name(self) -> str:
        """The artifact's name (its directory name)."""
        return self.path.name

    def size_bytes(self) -> int:
        """Bytes on disk of the artifact's files."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


def shipped_spaces() -> list[ShippedSpace]:
    """Every shipped artifact, by name."""
    root = shipped_dir()
    if not root.is_dir():
        return []
    lists = {name: [normalise(c) for c in load_classes(name)] for name in BUILTIN}
    spaces = []
    for manifest_path in sorted(root.glob("*/manifest.json")):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        classes = [normalise(c) for c in manifest.get("classes", [])]
        covers = tuple(name for name, names in lists.items() if names == classes)
        spaces.append(ShippedSpace(manifest_path.parent, covers, manifest))
    return spaces


def beside(parent: Path) -> Path:
    """Where a new version of the artifact at ``parent`` goes by default: beside it, unless it is a
    shipped one (package data): then the default output folder of the working directory."""
    from .stage_options import DEFAULT_OUT_DIR

    if parent.resolve().is_relative_to(shipped_dir().resolve()):
        return Path(DEFAULT_OUT_DIR)
    return parent.parent


def shipped_space_path(name: str) -> Path | None:
    """The shipped artifact called ``name``, or made for built-in list ``name`` (an alias works), or None."""
    canonical = builtin_name(name)
    for space in shipped_spaces():
        if space.name == name or (canonical is not None and canonical in space.lists):
            return space.path
    return None
