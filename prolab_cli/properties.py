"""The paper's property files -> a label space with exactly their class-property assignment.

ProLab published ``properties/property_ade20k.json`` and ``property_coco_stuff_164k.json``:
``{property name: ["class: description", ...]}``, one entry per k-means cluster, named (an LLM
summary of the cluster) and listing its member descriptions. They fix which class owns which
property. The centres follow from any embedding model: a k-means centre at convergence is the
mean of its members, so the centre of property k is the mean of its members' embeddings.

The artifact is built by the same code as ``prolab build`` (embed stage -> Clustering ->
:func:`~prolab_cli.build.build_label_space`), with the file's assignment in place of k-means.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .classes import Reconciliation, reconcile_class_names
from .descriptor_files import JsonPairs, normalise_space, read_json_object
from .errors import ProlabError
from .stage_options import DEFAULT_OUT_DIR

if TYPE_CHECKING:
    from .artifact import LabelSpace
    from .embed import EmbedOptions

FORMAT = "prolab-property-json"


@dataclass
class PropertyFile:
    """A parsed property file: property names and, per property, its (class, description) members."""

    path: Path
    names: list[str]
    members: list[list[tuple[str, str]]]
    dropped_duplicates: int = 0
    dropped_blank: int = 0
    sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What reading the file cleaned up, one line each."""
        out = []
        if self.dropped_duplicates:
            out.append(f"dropped {self.dropped_duplicates} duplicate entries")
        if self.dropped_blank:
            out.append(f"dropped {self.dropped_blank} blank entries")
        return out


def read_property_file(path: str | os.PathLike) -> PropertyFile:
    """Read ``{property name: ["class: description", ...]}``; names and entries are stripped and
    inner white space collapsed, blank and repeated entries of a property dropped (counted).
    One-line errors for malformed JSON, a repeated property name, an entry that is not a string
    or has no ``class: `` prefix, and a property left without members."""
    shape = '{property name: ["class: description", ...]}'
    path = Path(path)
    pairs, data = read_json_object(path, shape)
    if not pairs:
        raise ProlabError(f"{path}: expected a JSON object {shape}")
    out = PropertyFile(path, [], [], sha256=hashlib.sha256(data).hexdigest())
    seen_names: dict[str, int] = {}
    for raw_name, entries in pairs:
        name = normalise_space(raw_name)
        where = f"{path}: property {len(out.names)} {name!r}"
        if not name:
            raise ProlabError(f"{path}: property {len(out.names)} has an empty name")
        if name.casefold() in seen_names:
            raise ProlabError(f"{where}: the same name as property {seen_names[name.casefold()]}")
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or isinstance(entries, JsonPairs):
            raise ProlabError(f"{where}: must map to a list of \"class: description\" strings")
        members: list[tuple[str, str]] = []
        known: set[tuple[str, str]] = set()
        for j, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise ProlabError(f"{where}: entry {j} is {type(entry).__name__}, not a \"class: description\" string")
            line = normalise_space(entry)
            if not line:
                out.dropped_blank += 1
                continue
            cls, sep, desc = line.partition(":")
            cls, desc = cls.strip(), desc.strip()
            if not sep or not cls or not desc:
                raise ProlabError(f"{where}: entry {j} {line[:60]!r} is not \"class: description\"")
            key = (cls.casefold(), desc.lower())
            if key in known:
                out.dropped_duplicates += 1
                continue
            known.add(key)
            members.append((cls, desc))
        if not members:
            raise ProlabError(f"{where}: no members (a property's centre is the mean of its members)")
        seen_names[name.casefold()] = len(out.names)
        out.names.append(name)
        out.members.append(members)
    return out


def assignment(prop_file: PropertyFile, dataset_classes: list[str], source: str
               ) -> tuple[dict[str, list[str]], dict[tuple[int, str], int], Reconciliation]:
    """(descriptions {dataset class: [descriptions]} in dataset order, (class index, description)
    -> property id, the class-name :class:`~prolab_cli.classes.Reconciliation`).

    Class names are reconciled with ``dataset_classes``; a name matching no class, a dataset class
    with no entry, and one description listed under two properties are refused (one line)."""
    written = list(dict.fromkeys(cls for members in prop_file.members for cls, _ in members))
    # one class may be written several ways in one file ("SKY", "sky"): each spelling is matched on its
    # own, and a match is reported under the dataset's class index
    rec = Reconciliation(source, written, list(dataset_classes), [])
    for cls in written:
        one = reconcile_class_names([cls], dataset_classes, source=source, partial=True)
        rec.mapping.append(one.mapping[0])
        rec.matches += [replace(m, index=m.dataset_index) for m in one.matches]
        rec.unmatched += one.unmatched
    rec.missing = [c for j, c in enumerate(dataset_classes) if j not in rec.mapping]
    index = dict(zip(written, rec.mapping))
    if rec.unmatched:
        first = rec.unmatched[0]
        prop = next(k for k, members in enumerate(prop_file.members) if any(c == first for c, _ in members))
        raise ProlabError(
            f"{source}: class {first!r} (property {prop} {prop_file.names[prop]!r}) is not in the dataset's class list"
            f" and has no known alias{f' ({len(rec.unmatched)} such classes)' if len(rec.unmatched) > 1 else ''}"
        )
    if rec.missing:
        raise ProlabError(f"{source}: dataset classes with no description in the file: {rec.missing[:5]}"
                          f"{' ...' if len(rec.missing) > 5 else ''}")
    descriptions: dict[str, list[str]] = {c: [] for c in dataset_classes}
    owner: dict[tuple[int, str], int] = {}
    for k, members in enumerate(prop_file.members):
        for cls, desc in members:
            c = index[cls]
            key = (c, desc.lower())
            if key in owner:
                if owner[key] != k:
                    raise ProlabError(
                        f"{source}: {dataset_classes[c]!r}: {desc[:50]!r} is listed under property {owner[key]}"
                        f" {prop_file.names[owner[key]]!r} and property {k} {prop_file.names[k]!r}"
                        " (a description belongs to one property)"
                    )
                continue
            owner[key] = k
            descriptions[dataset_classes[c]].append(desc)
    return descriptions, owner, rec


def member_means(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Centres [K,D] float32: the mean of each property's member embeddings (k-means' centres
    at convergence), summed in float64."""
    sums = np.zeros((k, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings.astype(np.float64))
    counts = np.bincount(labels, minlength=k)
    return (sums / counts[:, None]).astype(np.float32)


def run_import_properties(
    path: str | os.PathLike,
    classes_spec: str,
    options: "EmbedOptions | None" = None,
    name: str | None = None,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    allow_collisions: bool = False,
    progress: bool = True,
) -> tuple["LabelSpace", Path, list[str]]:
    """The ``prolab import-properties`` stage: property file + class list + embedding model ->
    artifact under ``out_dir``; returns (space, path, report lines for stderr)."""
    from .build import build_label_space
    from .classes import load_classes
    from .cluster import Clustering, embeddings_hash
    from .embed import EmbedOptions, embed_descriptions

    options = options or EmbedOptions()
    prop_file = read_property_file(path)
    source = str(path)
    dataset_classes = load_classes(classes_spec)
    descriptions, owner, rec = assignment(prop_file, dataset_classes, source)
    emb = embed_descriptions(descriptions, options, progress=progress)
    labels = np.array([owner[(c, d.lower())] for c, ds in enumerate(descriptions.values()) for d in ds], np.int64)
    k = len(prop_file.names)
    centres = member_means(emb.embeddings, labels, k)
    inertia = float(((emb.embeddings.astype(np.float64) - centres[labels]) ** 2).sum())
    clusters = Clustering(centres, labels, {
        "algorithm": "assignment of a property file; centres = mean of each property's members",
        "k": k, "inertia": inertia, "n_iter": 0, "n_descriptions": int(labels.size),
        "embeddings_hash": embeddings_hash(emb), "descriptions_hash": emb.source_hash,
    })
    provenance = {"import": {
        "format": FORMAT, "source": Path(path).name, "sha256": prop_file.sha256, "cleaned": prop_file.lines(),
        "classes": {"list": classes_spec, **rec.to_dict()},
    }}
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{Path(path).stem}-{options.model}").strip("-")
    space = build_label_space(emb, clusters, name, allow_collisions, provenance, property_names=prop_file.names)
    notes = [f"{source}: {line}" for line in prop_file.lines()] + rec.report_lines()
    return space, space.save(out_dir), notes
