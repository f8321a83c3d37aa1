"""The paper's file formats: descriptor JSON files and ProLab's embedding-bank ``.pth``.

Descriptor files (ProLab, Menon & Vondrick, WaffleCLIP, LaBo) are ``{class: [description, ...]}``
in class order. Published ones are dirty: keys with trailing spaces, the same class twice, empty
lists, repeated or blank lines. ``read_descriptions`` cleans them and reports what it changed.

The bank is what ProLab's segmentor loads: a ``torch.save`` dict with ``'descriptions'`` and one
``'<model>_gpt3.5_cluster_<K>_embeddings_and_labels'`` entry holding ``[centres [D,K],
multi-hot [K,C] float64]``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact import LabelSpace
from .atomic import write_bytes
from .errors import MissingDependencyError, ProlabError

BANK_KEY_RE = re.compile(r"^(?P<model>.*)_cluster_(?P<k>\d+)_embeddings_and_labels$")


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


class _Pairs(list):
    """A JSON object read as its (key, value) pairs, so repeated keys are all kept."""


def _norm_space(text: str) -> str:
    return " ".join(text.split())


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
        key = _norm_space(raw_key)
        if not key:
            raise ProlabError(f"{source}: empty class name")
        if key != raw_key:
            report.renamed_keys.append((raw_key, key))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or isinstance(value, _Pairs):
            kind = "object" if isinstance(value, (_Pairs, dict)) else type(value).__name__
            raise ProlabError(f"{source}: class {key!r} must map to a list of descriptions, got {kind}")
        if key in out:
            report.merged_keys.append(key)
        lines = out.setdefault(key, [])
        known = seen.setdefault(key, set())
        for item in value:
            if not isinstance(item, str):
                raise ProlabError(f"{source}: class {key!r} has a non-string description {item!r}")
            text = _norm_space(item)
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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ProlabError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ProlabError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not text.strip():
        raise ProlabError(f"{path}: empty file (expected a JSON object {{class: [descriptions]}})")
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise ProlabError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(pairs, _Pairs):
        raise ProlabError(f"{path}: expected a JSON object {{class: [descriptions]}}")
    if not pairs:
        raise ProlabError(f"{path}: no classes in the file")
    return clean_descriptions(pairs, source=str(path))


def require_descriptions(descriptions: dict[str, list[str]], source: str) -> None:
    """Refuse classes without descriptions (they could own no property)."""
    empty = [k for k, v in descriptions.items() if not v]
    if empty:
        raise ProlabError(
            f"{source}: classes with no descriptions: {empty} (describe them, or drop them with --drop-empty)"
        )


# --------------------------------------------------------------------------------- the bank
def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("reading or writing a ProLab bank .pth needs torch: pip install 'prolab[seg]'", "seg") from None
    return torch


def load_bank(path: str | os.PathLike, trust_pickle: bool = False) -> dict:
    """Load a bank ``.pth``; without ``trust_pickle`` no code is unpickled (``weights_only=True``)."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise ProlabError(f"{path}: no such file")
    try:
        bank = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = (str(e).splitlines() or [""])[0][:200]
        hint = "" if trust_pickle or "Weights only load failed" not in str(e) else (
            "; it holds more than tensors: pass --trust-pickle only if you trust its source")
        raise ProlabError(f"{path}: not a loadable bank ({type(e).__name__}: {first}){hint}") from None
    if not isinstance(bank, dict):
        raise ProlabError(f"{path}: expected a dict, got {type(bank).__name__}")
    return bank


def bank_to_label_space(
    bank: dict,
    name: str,
    key: str | None = None,
    classes: list[str] | None = None,
    source: str = "bank",
) -> LabelSpace:
    """Turn a loaded bank dict into a LabelSpace (centres transposed to [K,D], multi-hot to [C,K])."""
    keys = [k for k in bank if isinstance(k, str) and BANK_KEY_RE.match(k)]
    if key is None:
        if len(keys) != 1:
            raise ProlabError(
                f"{source}: expected one '*_cluster_<K>_embeddings_and_labels' entry, found {keys or 'none'};"
                " choose one with --key"
            )
        key = keys[0]
    if key not in bank:
        raise ProlabError(f"{source}: no entry {key!r} (entries: {sorted(map(str, bank))})")
    entry = bank[key]
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise ProlabError(f"{source}: {key!r} must be [centres [D,K], multi-hot [K,C]]")
    centres_dk, hot_kc = (np.asarray(t.detach().cpu().double().numpy() if hasattr(t, "detach") else t) for t in entry)
    if centres_dk.ndim != 2 or hot_kc.ndim != 2 or centres_dk.shape[1] != hot_kc.shape[0]:
        raise ProlabError(
            f"{source}: {key!r} shapes {list(centres_dk.shape)} and {list(hot_kc.shape)} are not [D,K] and [K,C]"
        )
    k, c = hot_kc.shape
    match = BANK_KEY_RE.match(key)
    if match and int(match["k"]) != k:
        raise ProlabError(f"{source}: {key!r} names K={match['k']} but holds {k} clusters")

    descriptions, _ = clean_descriptions(list((bank.get("descriptions") or {}).items()), source=f"{source}:descriptions")
    if classes is None:
        classes = list(descriptions)
    if len(classes) != c:
        raise ProlabError(
            f"{source}: multi-hot has {c} classes but {len(classes)} class names are known"
            " (pass the class list with --classes)"
        )
    descriptions = {cls: descriptions.get(cls, []) for cls in classes}
    provenance = {"import": {"format": "prolab-bank-pth", "key": key, "source": Path(source).name}}
    return LabelSpace.from_arrays(
        name, classes, hot_kc.T, centres_dk.T.astype(np.float32), descriptions=descriptions, provenance=provenance,
    )


def default_bank_key(space: LabelSpace) -> str:
    """The entry name ProLab's configs use: ``<model>_gpt3.5_cluster_<K>_embeddings_and_labels``."""
    model = (space.manifest.get("provenance", {}).get("embed", {}) or {}).get("model", "embed")
    model = re.sub(r"[^A-Za-z0-9]+", "_", str(Path(str(model)).name)).strip("_").lower() or "embed"
    return f"{model}_gpt3.5_cluster_{space.num_properties}_embeddings_and_labels"


def export_bank(space: LabelSpace, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write ``space`` as a bank ``.pth`` that ProLab's code loads (atomically)."""
    import io

    torch = _torch()
    key = key or default_bank_key(space)
    if not BANK_KEY_RE.match(key):
        raise ProlabError(f"bank key {key!r} must end in '_cluster_<K>_embeddings_and_labels'")
    bank = {
        "descriptions": {c: list(v) for c, v in space.descriptions.items()},
        key: [
            torch.from_numpy(np.ascontiguousarray(space.centres.T)),
            torch.from_numpy(np.ascontiguousarray(space.multi_hot.T, dtype=np.float64)),
        ],
    }
    buf = io.BytesIO()
    torch.save(bank, buf)
    return write_bytes(path, buf.getvalue())


def run_import_bank(
    bank_path: str | os.PathLike,
    name: str,
    out_dir: str | os.PathLike,
    key: str | None = None,
    classes_spec: str | None = None,
    trust_pickle: bool = False,
) -> tuple[LabelSpace, Path]:
    """The ``prolab import-bank`` stage: bank ``.pth`` -> artifact directory under ``out_dir``."""
    classes = None
    if classes_spec:
        from .classes import load_classes

        classes = load_classes(classes_spec)
    space = bank_to_label_space(load_bank(bank_path, trust_pickle), name, key=key, classes=classes, source=str(bank_path))
    return space, space.save(out_dir)


def run_export_bank(artifact: str | os.PathLike, output: str | os.PathLike, key: str | None = None) -> tuple[Path, str]:
    """The ``prolab export-bank`` stage: artifact -> bank ``.pth``; returns the path and entry name."""
    space = LabelSpace.load(artifact)
    key = key or default_bank_key(space)
    return export_bank(space, output, key), key
