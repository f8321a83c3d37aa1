"""``prolab inspect``: read an artifact and describe it (summary, a class, a property, neighbours, plot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .artifact import LabelSpace
from .errors import ProlabError
from .extras import require


def summary(space: LabelSpace) -> str:
    """Name, version, sizes, collisions and the provenance of every stage."""
    m = space.manifest
    owned = space.multi_hot.sum(1)
    used = space.multi_hot.sum(0)
    lines = [
        f"label space  {space.name}",
        f"version      {space.version}  (format {m.get('format_version')}, created {m.get('created', '?')})",
        f"classes      {space.num_classes}: {', '.join(space.classes[:12])}{' ...' if space.num_classes > 12 else ''}",
        f"properties   K={space.num_properties}  D={space.dim}  centres {space.centres_hash[:12]}",
        f"per class    min/mean/max {int(owned.min())}/{owned.mean():.1f}/{int(owned.max())} properties",
        f"by property  min/mean/max {int(used.min())}/{used.mean():.1f}/{int(used.max())} classes own one"
        f" ({int((used == 0).sum())} properties owned by no class)",
        f"collisions   {space.collisions() or 'none'}",
        f"descriptions {sum(len(v) for v in space.descriptions.values())}",
    ]
    for stage, info in (m.get("provenance") or {}).items():
        if isinstance(info, dict):
            # scalars, and nested values small enough to read on the line (e.g. the LLM backend)
            shown = {k: v for k, v in info.items()
                     if k != "fingerprint" and (not isinstance(v, (list, dict)) or len(json.dumps(v)) <= 100)}
            lines.append(f"{stage:<12} {json.dumps(shown, sort_keys=True)}")
    return "\n".join(lines)


def class_report(space: LabelSpace, name: str) -> str:
    """The properties a class owns, with their names and the other classes sharing them."""
    c = space.class_index(name)
    props = np.flatnonzero(space.multi_hot[c])
    lines = [f"class {space.classes[c]!r} owns {len(props)} of {space.num_properties} properties:"]
    for k in props:
        others = [x for x in space.properties[k]["classes"] if x != space.classes[c]]
        lines.append(f"  [{k:>3}] {space.properties[k]['name']}" + (f"   (also: {', '.join(others)})" if others else ""))
    return "\n".join(lines)


def property_report(space: LabelSpace, k: int) -> str:
    """A property's name, owning classes and member descriptions."""
    if not 0 <= k < space.num_properties:
        raise ProlabError(f"property {k} is out of range for {space.name!r} (0..{space.num_properties - 1})")
    prop = space.properties[k]
    lines = [f"property {k}: {prop['name']}", f"  classes: {', '.join(prop['classes']) or '(none)'}"]
    lines += [f"  - {member}" for member in prop.get("members", [])]
    return "\n".join(lines)


def similar_classes(space: LabelSpace, name: str, top: int = 10) -> list[tuple[str, int, float]]:
    """Classes sharing most properties with ``name``: (class, shared count, Jaccard), best first."""
    c = space.class_index(name)
    row = space.multi_hot[c]
    shared = space.multi_hot @ row
    union = np.maximum(space.multi_hot, row).sum(1)
    jaccard = shared / np.maximum(union, 1)
    order = sorted((i for i in range(space.num_classes) if i != c), key=lambda i: (-shared[i], -jaccard[i], i))
    return [(space.classes[i], int(shared[i]), float(jaccard[i])) for i in order[:top] if shared[i] > 0]


def similar_report(space: LabelSpace, name: str, top: int = 10) -> str:
    """``similar_classes`` as text."""
    c = space.class_index(name)
    rows = similar_classes(space, name, top)
    lines = [f"classes sharing properties with {space.classes[c]!r} ({int(space.multi_hot[c].sum())} properties):"]
    lines += [f"  {cls:<24} {n:>3} shared  jaccard {j:.2f}" for cls, n, j in rows] or ["  (none)"]
    return "\n".join(lines)


def matrix_order(multi_hot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column orders that put similar classes and co-owned properties next to each other."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    def order(m: np.ndarray) -> np.ndarray:
        if m.shape[0] < 3:
            return np.arange(m.shape[0])
        # an all-zero row has no Jaccard distance; give it a constant tiny column to keep it defined
        padded = np.hstack([m.astype(bool), np.ones((m.shape[0], 1), bool)])
        return leaves_list(linkage(padded, method="average", metric="jaccard"))

    rows = order(multi_hot)
    ordered = multi_hot[rows]
    used = ordered.any(0)
    # properties ordered by the first (ordered) class that owns them, then by co-ownership
    first = np.where(used, ordered.argmax(0), ordered.shape[0])
    col_rank = order(multi_hot.T)
    cols = np.lexsort((np.argsort(col_rank), first))
    return rows, cols


#: up to this K the matrix plot labels each column with the property's name
MAX_NAMED_COLUMNS = 64


def plot_matrix(space: LabelSpace, out: str | os.PathLike) -> Path:
    """Draw the class x property matrix (ordered) to a PNG, written atomically."""
    require("matplotlib", "--plot").use("Agg")
    plt = require("matplotlib.pyplot", "--plot")
    import io

    from .atomic import write_bytes

    rows, cols = matrix_order(space.multi_hot)
    m = space.multi_hot[np.ix_(rows, cols)]
    c, k = m.shape
    named = k <= MAX_NAMED_COLUMNS  # a readable name per column; beyond that the id (prolab inspect --property ID)
    fig, ax = plt.subplots(figsize=(min(4 + k * (0.16 if named else 0.08), 40), min(2 + c * 0.22, 40) + (2 if named else 0)),
                           dpi=100)
    ax.imshow(m, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(c))
    ax.set_yticklabels([space.classes[i] for i in rows], fontsize=7)
    step = 1 if named else max(1, k // 64)
    ax.set_xticks(range(0, k, step))
    ax.set_xticklabels([f"{cols[j]} {space.properties[cols[j]]['name'][:40]}" if named else str(cols[j])
                        for j in range(0, k, step)], rotation=90, fontsize=6)
    ax.set_xlabel(f"properties (K={k}, reordered; a column's number is its id for prolab inspect --property)")
    ax.set_title(f"{space.name}  v{space.version}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
    return write_bytes(out, buf.getvalue())


def run_inspect(
    path: str | os.PathLike,
    cls: str | None = None,
    prop: int | None = None,
    similar: str | None = None,
    plot: str | os.PathLike | None = None,
    top: int = 10,
) -> str:
    """The ``prolab inspect`` stage: the requested reports (summary when nothing else is asked)."""
    space = LabelSpace.load(path)
    parts = []
    if cls is not None:
        parts.append(class_report(space, cls))
    if prop is not None:
        parts.append(property_report(space, prop))
    if similar is not None:
        parts.append(similar_report(space, similar, top))
    if plot is not None:
        parts.append(f"plot written to {plot_matrix(space, plot)}")
    if cls is None and prop is None and similar is None:
        parts.insert(0, summary(space))
    return "\n\n".join(parts)
