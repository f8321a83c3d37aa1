"""New label-space versions over the same centres: add classes never trained on, or keep a subset.

``extend`` is the paper's unknown-class mechanism as a stage: the new classes' descriptions are
embedded with the artifact's *own* embedding model and options (read from its provenance, the
model's content fingerprint checked), each description is assigned to the nearest existing centre
(squared Euclidean distance, as k-means assigns), and the class owns the properties its
descriptions fell in. The centres are untouched, so a model trained on the parent accepts the new
version (``eval``/``predict --label-space``). ``keep`` restricts an artifact to some classes over
the same centres. Both record the parent's name and version in the provenance.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import LabelSpace, property_classes
from .errors import ProlabError


@dataclass
class NewRow:
    """What ``extend`` did with one new class: its properties and its neighbours among the old ones."""

    name: str
    properties: list[tuple[int, str]]
    nearest: list[tuple[str, float]]  # (existing class, Jaccard similarity of the rows), best first
    identical_to: list[str]  # existing or new classes with exactly this row

    def lines(self) -> list[str]:
        """A readable report of this row."""
        props = ", ".join(f"{k} ({name[:40]})" for k, name in self.properties)
        near = ", ".join(f"{c} {s:.2f}" for c, s in self.nearest)
        out = [f"{self.name}: {len(self.properties)} properties: {props}", f"  nearest existing classes: {near}"]
        if self.identical_to:
            out.append(f"  WARNING: identical row to {', '.join(self.identical_to)} (indistinguishable)")
        return out


def embed_options_of(space: LabelSpace):
    """The :class:`~prolab_cli.embed.EmbedOptions` the artifact's descriptions were embedded with."""
    from .embed import EmbedOptions

    recorded = (space.manifest.get("provenance") or {}).get("embed")
    if not isinstance(recorded, dict) or not recorded.get("model"):
        raise ProlabError(
            f"label space {space.name!r} records no embedding model in its provenance (e.g. an imported bank);"
            " new descriptions cannot be embedded as its own were"
        )
    return EmbedOptions(
        model=recorded["model"], backend=recorded.get("backend", "sentence-transformers"),
        pooling=recorded.get("pooling"), lowercase=recorded.get("lowercase"),
    )


def _embedder(space: LabelSpace, cache):
    from .embed import Embedder

    options = embed_options_of(space)
    recorded = space.manifest["provenance"]["embed"]
    try:
        embedder = Embedder(options, cache)
    except ProlabError as e:
        raise ProlabError(
            f"label space {space.name!r} was embedded with {options.model!r}, which is missing here: {e.message}"
        ) from None
    want = recorded.get("fingerprint")
    if want and embedder.identity["fingerprint"] != want:
        raise ProlabError(
            f"embedding model {options.model!r} here ({embedder.spec.path},"
            f" fingerprint {embedder.identity['fingerprint']})"
            f" is not the one label space {space.name!r} was built with (fingerprint {want})"
        )
    return embedder


def check_new_descriptions(space: LabelSpace, descriptions: dict[str, list[str]], source: str) -> None:
    """Refuse an empty file, classes without descriptions and classes the artifact already has."""
    if not descriptions:
        raise ProlabError(f"{source}: no classes to add")
    empty = [c for c, v in descriptions.items() if not v]
    if empty:
        raise ProlabError(f"{source}: classes with empty descriptions: {empty}")
    folded = {c.strip().lower(): c for c in space.classes}
    present = [c if folded[c.strip().lower()] == c else f"{c!r} (as {folded[c.strip().lower()]!r})"
               for c in descriptions if c.strip().lower() in folded]
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise ProlabError(f"{source}: {len(present)} classes already present in label space {space.name!r}: {shown}")


def assign_to_centres(embeddings: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean, as k-means) for each row of ``embeddings``."""
    e = np.asarray(embeddings, np.float64)
    c = np.asarray(centres, np.float64)
    dist = (e * e).sum(1, keepdims=True) - 2.0 * e @ c.T + (c * c).sum(1)[None, :]
    return dist.argmin(1).astype(np.int64)


def _jaccard(row: np.ndarray, rows: np.ndarray) -> np.ndarray:
    inter = (rows * row).sum(1)
    union = np.maximum(rows, row).sum(1)
    return inter / np.maximum(union, 1)


def extend_label_space(
    space: LabelSpace,
    descriptions: dict[str, list[str]],
    name: str,
    source: str = "<descriptions>",
    cache=None,
    embedder=None,
    nearest: int = 3,
) -> tuple[LabelSpace, list[NewRow]]:
    """``space`` plus one row per class of ``descriptions``, over the same centres; and a report.

    ``embedder`` (an :class:`~prolab_cli.embed.Embedder`) defaults to the artifact's own model and
    options from its provenance; the check of its fingerprint is skipped only when one is given.
    """
    check_new_descriptions(space, descriptions, source)
    embedder = embedder if embedder is not None else _embedder(space, cache)
    texts = [d for v in descriptions.values() for d in v]
    vectors = embedder.embed(texts, progress=False)
    if vectors.shape[1] != space.dim:
        raise ProlabError(
            f"embedding model {embedder.spec.name!r} gives {vectors.shape[1]}-d vectors; label space {space.name!r}"
            f" has D={space.dim}"
        )
    clusters = assign_to_centres(vectors, space.centres)
    new_classes = list(descriptions)
    desc_class = np.repeat(np.arange(len(new_classes)), [len(v) for v in descriptions.values()])
    rows = np.zeros((len(new_classes), space.num_properties), np.float32)
    rows[desc_class, clusters] = 1.0

    classes = space.classes + new_classes
    multi_hot = np.concatenate([space.multi_hot, rows])
    owners = property_classes(classes, multi_hot)
    props = []
    for k, prop in enumerate(space.properties):
        added = [f"{new_classes[desc_class[i]]}: {texts[i]}" for i in np.flatnonzero(clusters == k)]
        props.append(dict(prop, members=list(prop.get("members", [])) + added, classes=owners[k]))
    arrays = {}
    if space.embeddings is not None:
        arrays = dict(
            embeddings=np.concatenate([space.embeddings, vectors]),
            desc_class=np.concatenate([space.desc_class, desc_class + space.num_classes]),
            desc_cluster=np.concatenate([space.desc_cluster, clusters]),
        )
    provenance = dict(space.manifest.get("provenance") or {})
    provenance["extended_from"] = {"name": space.name, "version": space.version}
    provenance["extend"] = {
        "classes": new_classes, "source": Path(source).name, "embed": dict(embedder.identity),
        "assignment": "nearest existing centre (squared Euclidean distance, as k-means assigns)",
    }
    extended = LabelSpace(
        name, classes, multi_hot, space.centres, props,
        {**space.descriptions, **descriptions}, {"provenance": provenance}, **arrays,
    )
    report = []
    for i, cls in enumerate(new_classes):
        sim = _jaccard(rows[i], space.multi_hot)
        order = np.lexsort((np.arange(len(sim)), -sim))[:nearest]
        same = [c for c, r in zip(classes, multi_hot) if c != cls and np.array_equal(r, rows[i])]
        report.append(NewRow(
            cls, [(int(k), space.properties[k]["name"]) for k in np.flatnonzero(rows[i])],
            [(space.classes[j], float(sim[j])) for j in order], same,
        ))
    return extended, report


def parse_keep(spec: str) -> list[str]:
    """The classes to keep: a class-list file, a descriptions JSON (its keys), or a comma list."""
    from .classes import parse_class_list

    path = Path(spec).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ProlabError(f"{path}: not UTF-8 text") from None
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ProlabError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
            if not data:
                raise ProlabError(f"{path}: no classes in the file")
            return list(data)
        return parse_class_list(text, str(path))
    if "," not in spec and (os.sep in spec or path.suffix in (".txt", ".json")):
        raise ProlabError(f"{spec}: no such file (extend.keep takes a class-list file, a descriptions JSON or "
                          "a comma list)")
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise ProlabError(f"extend.keep {spec!r}: no classes given")
    return names


def keep_classes(space: LabelSpace, classes: list[str], name: str) -> LabelSpace:
    """``space`` restricted to ``classes`` (in that order) over the same centres."""
    dupes = sorted(c for c, n in Counter(classes).items() if n > 1)
    if dupes:
        raise ProlabError(f"extend.keep: classes listed twice: {dupes}")
    missing = [c for c in classes if c.strip().lower() not in {k.strip().lower() for k in space.classes}]
    if missing:
        raise ProlabError(f"extend.keep: classes not in label space {space.name!r}: {missing}")
    return space.subset(classes, name)


def run_extend(
    artifact: str | os.PathLike,
    descriptions_path: str | os.PathLike | None = None,
    keep: str | list[str] | None = None,
    name: str | None = None,
    out_dir: str | os.PathLike | None = None,
    cache=None,
) -> tuple[LabelSpace, Path, list[NewRow]]:
    """The ``prolab extend`` stage: keep a subset (``keep``), then add ``descriptions_path``'s
    classes; save the new version next to the parent (or in ``out_dir``)."""
    from .artifact import resolve_artifact_path
    from .descriptor_files import read_descriptions
    from .shipped import beside

    if descriptions_path is None and keep is None:
        raise ProlabError("give extend.descriptions (classes to add) and/or extend.keep (classes to keep)")
    parent_path = resolve_artifact_path(artifact)
    space = LabelSpace.load(parent_path)
    parent = {"name": space.name, "version": space.version}
    suffix = "-extended" if descriptions_path is not None else "-subset"
    name = name or f"{space.name}{suffix}"
    if keep is not None:
        space = keep_classes(space, parse_keep(keep) if isinstance(keep, str) else list(keep), name)
    report: list[NewRow] = []
    if descriptions_path is not None:
        descriptions, cleaned = read_descriptions(descriptions_path)
        space, report = extend_label_space(space, descriptions, name, str(descriptions_path), cache=cache)
        for line in cleaned.lines():  # what cleaning changed in a file that turned out usable
            print(f"{descriptions_path}: {line}", file=sys.stderr)
        if keep is not None:  # the parent is the artifact loaded, not the intermediate subset
            space.manifest["provenance"]["extended_from"] = parent
    target_dir = Path(out_dir) if out_dir is not None else beside(parent_path)
    if (target_dir / name).resolve() == parent_path.resolve():
        raise ProlabError(f"the new version would overwrite its parent {parent_path}; give another extend.name or out_dir")
    return space, space.save(target_dir, name), report
