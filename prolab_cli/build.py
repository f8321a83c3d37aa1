"""The build stage: descriptions + embeddings + clusters -> a LabelSpace artifact.

Class c owns property k when any of its descriptions fell in cluster k. Each property is named
after the member description nearest its centre. Classes with identical rows (collisions) are
indistinguishable for the model, so they are refused unless explicitly allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .artifact import LabelSpace, library_versions, property_classes
from .multi_hot import collision_groups
from .cluster import Clustering, embeddings_hash
from .embed import EmbeddingSet, descriptions_hash
from .errors import ProlabError
from .stage_options import DEFAULT_OUT_DIR, BuildOptions


def nearest_description_names(emb: EmbeddingSet, clusters: Clustering, multi_hot: np.ndarray) -> list[dict]:
    """One dict per cluster: id, name (member nearest the centre), members by distance, and the
    classes owning it (from ``multi_hot`` [C,K])."""
    classes, texts, owner = emb.classes, emb.texts, emb.desc_class.tolist()
    dist = np.linalg.norm(emb.embeddings - clusters.centres[clusters.labels], axis=1)
    # one sort for all clusters: by cluster, then nearest first, ties by description order
    order = np.lexsort((np.arange(len(dist)), dist, clusters.labels))
    members = np.split(order, np.cumsum(np.bincount(clusters.labels, minlength=clusters.k))[:-1])
    props = []
    for k, owners in enumerate(property_classes(classes, multi_hot)):
        idx = members[k]
        nearest = texts[int(idx[0])] if len(idx) else f"(empty cluster {k})"
        props.append({
            "id": k,
            "name": nearest,
            "nearest": nearest,
            "members": [f"{classes[owner[i]]}: {texts[i]}" for i in idx.tolist()],
            "classes": owners,
        })
    return props


def read_property_names(path: str | os.PathLike, properties: list[dict]) -> list[str]:
    """Readable property names from a JSON file ``{"properties": [{"id", "name", "nearest"}, ...]}``,
    one per property in id order. ``nearest`` (the description the name was written for: the one nearest
    the centre then) must still be a member of the property, so a names file written for other clusters
    is refused, naming the property; a near-tie that moved the nearest member is not a change."""
    import json

    from .descriptor_files import read_json_object

    _, raw = read_json_object(path, '{"properties": [{"id", "name", "nearest"}, ...]}')
    entries = json.loads(raw.decode("utf-8-sig")).get("properties")
    if not isinstance(entries, list) or len(entries) != len(properties):
        raise ProlabError(f"{path}: 'properties' must list {len(properties)} entries (one per property)")
    names = []
    for prop, entry in zip(properties, entries):
        k = prop["id"]
        if not isinstance(entry, dict) or entry.get("id") != k:
            raise ProlabError(f"{path}: entry {k} must be an object with 'id' {k}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise ProlabError(f"{path}: property {k}: 'name' must be a non-empty string of at most 80 characters")
        members = {member.split(": ", 1)[-1] for member in prop["members"]} | {prop["nearest"]}
        if entry.get("nearest") not in members:
            raise ProlabError(f"{path}: property {k}: written for the description {entry.get('nearest')!r}, which is"
                              f" no longer one of its members (nearest its centre now: {prop['nearest']!r}; clusters"
                              " changed: name the properties again)")
        names.append(name.strip())
    return names


def check_inputs(emb: EmbeddingSet, clusters: Clustering, descriptions: dict | None,
                 embeddings_path: str | os.PathLike, clusters_path: str | os.PathLike,
                 descriptions_path: str | os.PathLike | None = None) -> None:
    """Refuse files that were not made from each other; errors name both files."""
    if descriptions is not None:
        # embed --classes wrote the dataset's names for the file's (recorded); embed --drop-empty
        # leaves classes without descriptions out of the embeddings
        renamed = {r["from"]: r["to"] for r in (emb.model.get("classes") or {}).get("renamed", [])}
        descriptions = {renamed.get(c, c): v for c, v in descriptions.items()}
        descriptions = {c: v for c, v in descriptions.items() if v or c in emb.descriptions}
        if descriptions_hash(descriptions) != emb.source_hash:
            raise ProlabError(
                f"{descriptions_path}: the descriptions file differs from the descriptions"
                f" {embeddings_path} was made from"
            )
    if clusters.info.get("embeddings_hash") != embeddings_hash(emb):
        raise ProlabError(
            f"{clusters_path}: the clusters were not computed from these embeddings ({embeddings_path};"
            " embeddings hash differs)"
        )
    if clusters.labels.shape != (emb.embeddings.shape[0],) or clusters.centres.shape[1] != emb.embeddings.shape[1]:
        raise ProlabError(f"{clusters_path}: clusters and embeddings ({embeddings_path}) disagree in size")


def build_label_space(
    emb: EmbeddingSet,
    clusters: Clustering,
    name: str,
    allow_collisions: bool = False,
    provenance: dict | None = None,
    property_names: list[str] | None = None,
    keep_embeddings: bool = True,
) -> LabelSpace:
    """Assemble the label space (multi-hot, property names, provenance) from checked inputs;
    ``property_names`` replace the default names (the member nearest each centre, which stays as
    each property's ``nearest``); without ``keep_embeddings`` the description embeddings are left out."""
    multi_hot = clusters.multi_hot(emb.desc_class, len(emb.classes))
    groups = collision_groups(emb.classes, multi_hot)
    if groups and not allow_collisions:
        shown = "; ".join(", ".join(g) for g in groups)
        raise ProlabError(
            f"label space {name!r}: {len(groups)} groups of classes share identical property rows and could not"
            f" be told apart: {shown} (raise K, improve the descriptions, or set build.allow_collisions)"
        )
    prov = dict(provenance or {})
    prov["embed"] = emb.model
    prov["cluster"] = clusters.info
    properties = nearest_description_names(emb, clusters, multi_hot)
    if property_names is not None:
        if len(property_names) != len(properties):
            raise ProlabError(f"label space {name!r}: {len(property_names)} property names for K={len(properties)}")
        for prop, given in zip(properties, property_names):
            prop["name"] = given
    named = "member description nearest the centre" if property_names is None else "given"
    prov["build"] = {"allow_collisions": allow_collisions, "property_names": named}
    prov["build"]["keep_embeddings"] = keep_embeddings
    arrays = dict(embeddings=emb.embeddings, desc_class=emb.desc_class, desc_cluster=clusters.labels)
    return LabelSpace(
        name, emb.classes, multi_hot, clusters.centres, properties, emb.descriptions,
        {"provenance": prov, "libraries": library_versions()}, **(arrays if keep_embeddings else {}),
    )


def describe_provenance(descriptions_path: Path) -> dict:
    """The describe stage's sidecar for a descriptions file, or where the file came from."""
    import hashlib
    import json

    from .describe import provenance_path

    digest = hashlib.sha256(descriptions_path.read_bytes()).hexdigest()
    sidecar = provenance_path(descriptions_path)
    if sidecar.is_file():
        try:
            recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ProlabError(f"{sidecar}: malformed JSON") from None
        if isinstance(recorded, dict) and recorded.get("descriptions_sha256") == digest:
            return recorded
    # no sidecar, or the file was edited after describe wrote it
    return {"descriptions_file": descriptions_path.name, "descriptions_sha256": digest}


def run_build(
    embeddings_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    name: str,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    *,
    descriptions_path: str | os.PathLike | None = None,
    options: BuildOptions = BuildOptions(),
    provenance: dict | None = None,
) -> tuple[LabelSpace, Path]:
    """The ``prolab build`` stage: load and cross-check the inputs, build, save atomically."""
    from .descriptor_files import read_descriptions

    emb = EmbeddingSet.load(embeddings_path)
    clusters = Clustering.load(clusters_path)
    descriptions = read_descriptions(descriptions_path)[0] if descriptions_path else None
    check_inputs(emb, clusters, descriptions, embeddings_path, clusters_path, descriptions_path)
    provenance = dict(provenance or {})
    if descriptions_path and "describe" not in provenance:
        provenance["describe"] = describe_provenance(Path(descriptions_path))
    names = None
    if options.property_names:
        nearest = nearest_description_names(emb, clusters, clusters.multi_hot(emb.desc_class, len(emb.classes)))
        names = read_property_names(options.property_names, nearest)
        provenance["property_names_file"] = {"file": Path(options.property_names).name,
                                             "sha256": _file_sha256(Path(options.property_names))}
    space = build_label_space(emb, clusters, name, options.allow_collisions, provenance, names,
                              keep_embeddings=options.keep_embeddings)
    return space, space.save(out_dir)


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
