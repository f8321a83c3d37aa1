"""Built-in class lists (in training order) and users' own class lists.

A built-in list is a data file ``label_spaces/classes/<name>.txt``, one class per line, in the
order of MMSegmentation's dataset classes, so index i is train id i. A user's list is a text file
(one class per line) or a JSON list of strings. Names are kept as written (stripped); two names
are the same class when their normalised forms (:func:`normalise`) are equal.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import ProlabError
from .paths import data_dir

#: canonical name -> what the list is
BUILTIN: dict[str, str] = {
    "ade20k": "ADE20K-150 (SceneParsing), as MMSegmentation's ADE20KDataset",
    "coco-stuff": "COCO-Stuff-164k, 171 classes, as MMSegmentation's COCOStuffDataset",
    "pascal-context-59": "Pascal Context-59, as MMSegmentation's PascalContextDataset59",
    "cityscapes": "Cityscapes, the 19 train ids",
    "bdd100k": "BDD100K semantic segmentation, the same 19 classes as Cityscapes",
    "ade20k-847": "ADE20K-847 (full ADE20K), as MaskFormer's ade20k_full_sem_seg",
    "pascal-context-459": "Pascal Context-459 (all classes), as in the open-vocabulary benchmarks",
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
    "ade847": "ade20k-847",
    "ade-847": "ade20k-847",
    "ade20k-full": "ade20k-847",
    "pc459": "pascal-context-459",
    "pascal-context-full": "pascal-context-459",
    "pcontext-459": "pascal-context-459",
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


# ------------------------------------------------------------------ reconciling class names
#: spellings of one class in the published files and the built-in lists; names in one group are
#: the same class. Compared in :func:`normalise` form. Kept small: only variants seen in real files.
CLASS_NAME_ALIASES: tuple[frozenset[str], ...] = (
    frozenset({"tank", "storage tank"}),        # ADE20K 122: ProLab's descriptors and banks say "storage tank"
    frozenset({"pottedplant", "potted plant"}),  # Pascal Context / VOC vs COCO
    frozenset({"tvmonitor", "tv monitor"}),      # Pascal Context / VOC
    frozenset({"aeroplane", "airplane"}),        # Pascal vs ADE20K / COCO
    frozenset({"motorbike", "motorcycle"}),      # Pascal vs COCO / Cityscapes
    frozenset({"sofa", "couch"}),                # ADE20K / Pascal vs COCO
    frozenset({"hair drier", "hair dryer"}),     # COCO's spelling vs the common one
    frozenset({"conveyer belt", "conveyor belt"}),  # ADE20K's spelling vs the common one
    frozenset({"bannister", "banister"}),        # ADE20K's spelling vs the common one
)

_ALIAS_GROUP: dict[str, frozenset[str]] = {name: group for group in CLASS_NAME_ALIASES for name in group}


@dataclass(frozen=True)
class NameMatch:
    """One name that matched a dataset class other than exactly: ``how`` is "stripped",
    "case-folded" (case, ``_`` or inner spacing) or "alias"."""

    index: int
    name: str
    dataset_index: int
    dataset_name: str
    how: str

    def line(self) -> str:
        """The report line, e.g. ``class 122 'storage tank' -> 'tank' (alias)``."""
        return f"class {self.index} {self.name!r} -> {self.dataset_name!r} ({self.how})"


@dataclass
class Reconciliation:
    """How a list of class names maps onto a dataset's class list.

    ``mapping[i]`` is the dataset index of ``names[i]`` (None when it has none); ``matches``
    lists every non-exact match (to be reported); ``unmatched`` the names without a dataset
    class and ``missing`` the dataset classes no name maps to (both empty unless ``partial``).
    """

    source: str
    names: list[str]
    dataset_classes: list[str]
    mapping: list[int | None]
    matches: list[NameMatch] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def renamed(self) -> list[str]:
        """``names`` written as the dataset writes them (a name without a match kept as is)."""
        return [self.dataset_classes[j] if j is not None else n for n, j in zip(self.names, self.mapping)]

    def report_lines(self) -> list[str]:
        """One line per non-exact match, unmatched name and missing dataset class."""
        lines = [f"{self.source}: {m.line()}" for m in self.matches]
        if self.unmatched:
            lines.append(f"{self.source}: classes not in the dataset's list: {self.unmatched}")
        if self.missing:
            lines.append(f"{self.source}: dataset classes with no match (ignored): {self.missing}")
        return lines

    def to_dict(self) -> dict:
        """The record kept in provenance and metrics files."""
        return {
            "renamed": [{"index": m.index, "from": m.name, "to": m.dataset_name, "how": m.how} for m in self.matches],
            "unmatched": list(self.unmatched),
            "missing": list(self.missing),
        }


def _match_one(name: str, dataset_classes: Sequence[str], source: str, index: int) -> tuple[int | None, str | None]:
    """(dataset index, how) of ``name``: exact, stripped, case-folded, then alias; (None, None) if none."""
    for j, candidate in enumerate(dataset_classes):
        if name == candidate:
            return j, None
    stripped = name.strip()
    for j, candidate in enumerate(dataset_classes):
        if stripped == candidate:
            return j, "stripped"
    key = normalise(name)
    folded = [j for j, candidate in enumerate(dataset_classes) if normalise(candidate) == key]
    group = _ALIAS_GROUP.get(key)
    aliased = [j for j, candidate in enumerate(dataset_classes) if group and normalise(candidate) in group]
    for found, how in ((folded, "case-folded"), (aliased, "alias")):
        if len(found) > 1:
            shown = ", ".join(repr(dataset_classes[j]) for j in found)
            raise ProlabError(f"{source}: class {index} {name!r} matches several dataset classes ({shown})")
        if found:
            return found[0], how
    return None, None


def reconcile_class_names(
    names: Sequence[str],
    dataset_classes: Sequence[str],
    *,
    source: str,
    partial: bool = False,
) -> Reconciliation:
    """Match ``names`` (from a bank, a descriptor or property file, a label space) to
    ``dataset_classes``: exact, then stripped, then case-folded (:func:`normalise`), then through
    :data:`CLASS_NAME_ALIASES`. Every non-exact match is in ``matches`` for the caller to report.

    Strict (default): the names must be the dataset's classes in the dataset's order, else one
    :class:`ProlabError` line naming ``source`` and the first class at fault. ``partial``: names
    without a match and dataset classes without a name are returned (``unmatched``/``missing``)
    for a by-name mapping. Two names matching one dataset class are refused in both modes.
    """
    names, dataset_classes = list(names), list(dataset_classes)
    mapping: list[int | None] = []
    matches: list[NameMatch] = []
    unmatched: list[str] = []
    taken: dict[int, str] = {}
    for i, name in enumerate(names):
        j, how = _match_one(name, dataset_classes, source, i)
        if j is None:
            if not partial:
                close = difflib.get_close_matches(normalise(name), [normalise(c) for c in dataset_classes], n=1)
                hint = f"; closest: {close[0]!r}" if close else ""
                raise ProlabError(
                    f"{source}: class {i} {name!r} is not in the dataset's class list "
                    f"({len(dataset_classes)} classes) and has no known alias{hint}"
                )
            unmatched.append(name)
        elif j in taken:
            raise ProlabError(
                f"{source}: classes {taken[j]!r} and {name!r} both match dataset class {j} {dataset_classes[j]!r}"
            )
        else:
            taken[j] = name
            if how is not None:
                matches.append(NameMatch(i, name, j, dataset_classes[j], how))
        mapping.append(j)
    missing = [c for j, c in enumerate(dataset_classes) if j not in taken]
    if not partial:
        if missing:
            raise ProlabError(
                f"{source}: {len(names)} classes but the dataset has {len(dataset_classes)}; "
                f"dataset classes without a match: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            )
        for i, j in enumerate(mapping):
            if j != i:
                raise ProlabError(
                    f"{source}: class order differs from the dataset's at index {i}: {names[i]!r} is the dataset's "
                    f"class {j} ({dataset_classes[j]!r}), the dataset's class {i} is {dataset_classes[i]!r}"
                )
    return Reconciliation(source, names, dataset_classes, mapping, matches, unmatched, missing)


def class_list_difference(classes: Sequence[str], dataset_classes: Sequence[str]) -> str | None:
    """None when both lists name the same classes in the same order (compared in :func:`normalise`
    form), else the first difference, e.g. ``"index 122: 'storage tank' vs 'tank'"``."""
    for i, (a, b) in enumerate(zip(classes, dataset_classes)):
        if normalise(a) != normalise(b):
            return f"index {i}: {a!r} vs {b!r}"
    if len(classes) != len(dataset_classes):
        n = min(len(classes), len(dataset_classes))
        a = repr(classes[n]) if len(classes) > n else "(none)"
        b = repr(dataset_classes[n]) if len(dataset_classes) > n else "(none)"
        return f"index {n}: {a} vs {b} ({len(classes)} classes vs {len(dataset_classes)})"
    return None


def check_class_list(
    classes: Sequence[str],
    expected: Sequence[str],
    *,
    what: str,
    where: str,
    map_by_name: bool = False,
    by_name_field: str | None = None,
    unmatched_ok: bool = False,
    extension_ok: bool = False,
) -> Reconciliation | None:
    """The one check of a class list (``what``: a label space's, a model's) against the list it
    must fit (``where``: a dataset's, a checkpoint's).

    The same names in the same order (:func:`normalise` form) pass and give None; so does, with
    ``extension_ok``, a list that starts with ``expected`` (an extended label space keeps the
    trained classes first). Otherwise, without ``map_by_name``, one :class:`ProlabError` line names
    the first difference, and the setting that would match by name (``by_name_field``, e.g.
    ``train.map_classes_by_name``) where the caller has one. With ``map_by_name`` the lists are matched by name
    (:func:`reconcile_class_names`, partial) and the reconciliation is returned for the caller to
    report; names of ``classes`` that match nothing are refused unless ``unmatched_ok``.
    """
    classes, expected = list(classes), list(expected)
    if extension_ok and class_list_difference(classes[: len(expected)], expected) is None:
        return None
    if not map_by_name:
        diff = class_list_difference(classes, expected)
        if diff:
            hint = f", or {by_name_field} to match the classes by name" if by_name_field else ""
            raise ProlabError(f"{what}: its class list differs from {where} at {diff} (use one made for that "
                              f"class list{hint})")
        return None
    rec = reconcile_class_names(classes, expected, source=what, partial=True)
    if rec.unmatched and not unmatched_ok:
        raise ProlabError(f"{what}: classes {rec.unmatched[:5]} are not classes of {where}")
    return rec
