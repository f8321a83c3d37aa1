"""Descriptor files: the ``{class: [description, ...]}`` JSON that ProLab, Menon & Vondrick,
WaffleCLIP and LaBo publish, read and cleaned (stripped names, merged repeated classes, dropped
blank and duplicate lines) with a report of what changed. Used by every stage that reads
descriptions (embed, build, interop) and by properties files (the ``JsonPairs`` reader)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ProlabError


@dataclass
class CleanReport:
    """What ``clean_descriptions`` changed, for printing to the user."""

    renamed_keys: list[tuple[str, str]] = field(default_factory=list)
    merged_keys: list[str] = field(default_factory=list)
    dropped_duplicates: int = 0
    dropped_blank: int = 0
    empty_classes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One human-readable line per kind of change (empty when the input was clean)."""
        out = []
        if self.renamed_keys:
            out.append(f"stripped whitespace from {len(self.renamed_keys)} class names")
        if self.merged_keys:
            out.append(f"merged repeated classes: {self.merged_keys}")
        if self.dropped_duplicates:
            out.append(f"dropped {self.dropped_duplicates} duplicate descriptions")
        if self.dropped_blank:
            out.append(f"dropped {self.dropped_blank} blank descriptions")
        if self.empty_classes:
            out.append(f"classes with no descriptions: {self.empty_classes}")
        return out


class JsonPairs(list):
    """A JSON object read as its (key, value) pairs, so repeated keys are all kept."""


def normalise_space(text: str) -> str:
    """``text`` stripped, with every run of white space one space."""
    return " ".join(text.split())


def read_json_object(path: str | os.PathLike, shape: str) -> tuple[JsonPairs, bytes]:
    """A file holding one JSON object (``shape`` describes it in errors, e.g. ``{class: [...]}``),
    read as its :class:`JsonPairs`, and the file's bytes. One-line errors for a missing, unreadable,
    non-UTF-8, empty or malformed file and for JSON that is not an object."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProlabError(f"{path}: no such file") from None
    except OSError as exc:
        raise ProlabError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProlabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise ProlabError(f"{path}: empty file (expected a JSON object {shape})")
    try:
        pairs = json.loads(text, object_pairs_hook=JsonPairs)
    except json.JSONDecodeError as exc:
        raise ProlabError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(pairs, JsonPairs):
        raise ProlabError(f"{path}: expected a JSON object {shape}")
    return pairs, data


def clean_descriptions(
    pairs: list[tuple[str, object]], source: str = "descriptions"
) -> tuple[dict[str, list[str]], CleanReport]:
    """Clean ``(class, descriptions)`` pairs: strip names and lines, merge repeated classes,
    drop blank and duplicate lines (first occurrence kept, order preserved)."""
    report = CleanReport()
    out: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    for raw_key, value in pairs:
        if not isinstance(raw_key, str):
            raise ProlabError(f"{source}: class name {raw_key!r} is not a string")
        key = normalise_space(raw_key)
        if not key:
            raise ProlabError(f"{source}: empty class name")
        if key != raw_key:
            report.renamed_keys.append((raw_key, key))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or isinstance(value, JsonPairs):
            kind = "object" if isinstance(value, (JsonPairs, dict)) else type(value).__name__
            raise ProlabError(f"{source}: class {key!r} must map to a list of descriptions, got {kind}")
        if key in out:
            report.merged_keys.append(key)
        lines = out.setdefault(key, [])
        known = seen.setdefault(key, set())
        for item in value:
            if not isinstance(item, str):
                raise ProlabError(f"{source}: class {key!r} has a non-string description {item!r}")
            text = normalise_space(item)
            if not text:
                report.dropped_blank += 1
            elif text.lower() in known:
                report.dropped_duplicates += 1
            else:
                known.add(text.lower())
                lines.append(text)
    report.empty_classes = [k for k, v in out.items() if not v]
    return out, report


def read_descriptions(path: str | os.PathLike) -> tuple[dict[str, list[str]], CleanReport]:
    """Read a descriptor JSON file ``{class: [description, ...]}`` as published, cleaned."""
    pairs, _ = read_json_object(path, "{class: [descriptions]}")
    if not pairs:
        raise ProlabError(f"{path}: no classes in the file")
    return clean_descriptions(pairs, source=str(path))


def require_descriptions(descriptions: dict[str, list[str]], source: str) -> None:
    """Refuse classes without descriptions (they could own no property)."""
    empty = [k for k, v in descriptions.items() if not v]
    if empty:
        raise ProlabError(
            f"{source}: classes with no descriptions: {empty} (describe them, or drop them: drop_empty)"
        )
