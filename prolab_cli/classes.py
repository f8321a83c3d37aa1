"""Built-in class lists (in training order) and users' own class lists.

A built-in list is a data file ``label_spaces/classes/<name>.txt``, one class per line, in the
order of MMSegmentation's dataset classes, so index i is train id i. A user's list is a text file
(one class per line) or a JSON list of strings. Names are kept as written (stripped); two names
are the same class when their normalised forms (:func:`normalise`) are equal.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ProlabError
from .paths import data_dir

#: canonical name -> what the list is
BUILTIN: dict[str, str] = {
    "ade20k": "ADE20K-150 (SceneParsing), as MMSegmentation's ADE20KDataset",
    "coco-stuff": "COCO-Stuff-164k, 171 classes, as MMSegmentation's COCOStuffDataset",
    "pascal-context-59": "Pascal Context-59, as MMSegmentation's PascalContextDataset59",
    "cityscapes": "Cityscapes, the 19 train ids",
    "bdd100k": "BDD100K semantic segmentation, the same 19 classes as Cityscapes",
}

#: other accepted spellings -> canonical name
ALIASES: dict[str, str] = {
    "ade20k-150": "ade20k",
    "ade": "ade20k",
    "cocostuff": "coco-stuff",
    "coco-stuff-164k": "coco-stuff",
    "coco-stuff-171": "coco-stuff",
    "pascal-context": "pascal-context-59",
    "pascal-context59": "pascal-context-59",
    "pcontext": "pascal-context-59",
    "cityscapes-19": "cityscapes",
    "bdd": "bdd100k",
    "bdd100k-19": "bdd100k",
}


def normalise(name: str) -> str:
    """The form two class names are compared in: stripped, case-folded, ``_`` read as a space,
    runs of white space collapsed."""
    return " ".join(name.replace("_", " ").casefold().split())


def builtin_name(name: str) -> str | None:
    """The canonical built-in name for ``name`` or an alias of it, else None."""
    key = name.strip().casefold()
    if key in BUILTIN:
        return key
    return ALIASES.get(key)


def builtin_path(name: str) -> Path:
    """The data file of a built-in list (``name`` may be an alias)."""
    canonical = builtin_name(name)
    if canonical is None:
        raise ProlabError(f"unknown built-in class list {name!r}; known: {', '.join(BUILTIN)}")
    return data_dir("label_spaces") / "classes" / f"{canonical}.txt"


def load_classes(name_or_path: str | Path) -> list[str]:
    """The class names of a built-in list (by name or alias) or of a user's file, in order.

    Raises :class:`ProlabError` for an unknown name, a missing or unreadable file, an empty
    list, an empty name or a duplicate (after :func:`normalise`), naming the line.
    """
    text_name = str(name_or_path)
    canonical = builtin_name(text_name) if not isinstance(name_or_path, Path) else None
    path = builtin_path(canonical) if canonical else Path(text_name).expanduser()
    if not path.is_file():
        raise ProlabError(
            f"class list {text_name!r} is neither a built-in ({', '.join(BUILTIN)}) nor a file"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProlabError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProlabError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_class_list(text, str(path), as_json=path.suffix.lower() == ".json")


def parse_class_list(text: str, source: str = "<classes>", as_json: bool = False) -> list[str]:
    """Parse a class list from ``text``: JSON (a list of strings) when ``as_json`` or when it
    starts with ``[`` or ``{``, otherwise one name per line. ``source`` names the file in errors."""
    if not text.strip():
        raise ProlabError(f"{source}: the class list is empty")
    if as_json or text.lstrip()[:1] in ("[", "{"):
        entries = _json_entries(text, source)
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        entries = [(f"line {number}", line) for number, line in enumerate(lines, start=1)]
    return validated_names(entries, source)


def _json_entries(text: str, source: str) -> list[tuple[str, str]]:
    """("line N", string) for every item of a JSON list, in order."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProlabError(f"{source}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise ProlabError(f"{source}: expected a JSON list of class names")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1  # json.loads gave a list, so the first "[" opens it
    entries: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        while text[pos] in " \t\r\n,":
            pos += 1
        line = text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)
        if not isinstance(item, str):
            raise ProlabError(
                f"{source}: line {line}: item {index} is {type(item).__name__}, not a class name"
            )
        entries.append((f"line {line}", item))
    return entries


def validated_names(entries: list[tuple[str, str]], source: str) -> list[str]:
    """The stripped names of ``(where, name)`` entries (``where`` says "line 3", "item 2"),
    refusing an empty name, a duplicate after :func:`normalise`, and an empty list."""
    seen: dict[str, tuple[str, str]] = {}
    names: list[str] = []
    for where, raw in entries:
        name = raw.strip()
        if not name:
            raise ProlabError(f"{source}: {where}: empty class name")
        key = normalise(name)
        if key in seen:
            first_where, first = seen[key]
            raise ProlabError(
                f"{source}: {where}: duplicate class {name!r} (same as {first!r} on {first_where})"
            )
        seen[key] = (where, name)
        names.append(name)
    if not names:
        raise ProlabError(f"{source}: the class list is empty")
    return names
