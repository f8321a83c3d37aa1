"""The versioned label-space artifact: one directory holding classes, properties and tensors.

Layout::

    <name>/manifest.json        format, version, classes, K, D, provenance, file hashes
    <name>/descriptions.json    {class: [description, ...]} in class order
    <name>/properties.json      [{id, name, members, classes}, ...]
    <name>/tensors.safetensors  multi_hot [C,K], centres [K,D] (+ embeddings [N,D],
                                desc_class [N], desc_cluster [N] when built from descriptions)

The version is a hash of the payload files (descriptions, properties, tensors) only, so the same
inputs always give the same version and the same payload bytes; timestamps and provenance live in
the manifest and never change the version. Loading verifies every file hash and the version.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import clean_stale, directory, inside, is_temporary, json_bytes
from .errors import IntegrityError, ProlabError
from .multi_hot import collision_groups

FORMAT = "prolab-label-space"
FORMAT_VERSION = 1
PAYLOAD_FILES = ("descriptions.json", "properties.json", "tensors.safetensors")
_OPTIONAL_TENSORS = ("embeddings", "desc_class", "desc_cluster")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_hash(array: np.ndarray) -> str:
    """SHA-256 of a float32 array's shape and little-endian bytes (e.g. to compare centres)."""
    a = np.ascontiguousarray(array, dtype="<f4")
    head = json.dumps(list(a.shape)).encode("ascii")
    return _sha256(head + b"\0" + a.tobytes())


def payload_version(file_hashes: dict[str, str]) -> str:
    """The content version: first 16 hex digits of the hash of the payload files' hashes."""
    blob = "".join(f"{name}:{file_hashes[name]}\n" for name in PAYLOAD_FILES)
    return _sha256(blob.encode("utf-8"))[:16]


def provenance_hash(provenance: object) -> str:
    """SHA-256 of the provenance record as canonical JSON."""
    return _sha256(json.dumps(provenance, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def library_versions() -> dict[str, str]:
    """Versions of prolab and of the libraries whose results end up in an artifact."""
    from importlib import metadata

    out = {"prolab": __version__}
    for dist in ("numpy", "scikit-learn", "safetensors", "sentence-transformers", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _creation_time() -> str:
    import datetime as dt

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.replace(microsecond=0).isoformat()


def property_classes(classes: list[str], multi_hot: np.ndarray) -> list[list[str]]:
    """For each property (column of ``multi_hot`` [C,K]), the classes that own it, in class order."""
    return [[classes[c] for c in np.flatnonzero(column)] for column in np.asarray(multi_hot).T]


@dataclass
class LabelSpace:
    """A property-level label space: C classes described by K properties (k-means centres in D dims).

    ``multi_hot[c, k] == 1`` when class c owns property k. ``centres`` are the raw k-means
    centres (not normalised; the model normalises them). ``properties`` holds one dict per
    property (``id``, ``name``, ``members`` as "class: description", ``classes``). The optional
    description-level arrays say which class and cluster each description embedding belongs to.
    """

    name: str
    classes: list[str]
    multi_hot: np.ndarray
    centres: np.ndarray
    properties: list[dict]
    descriptions: dict[str, list[str]]
    manifest: dict = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    desc_class: np.ndarray | None = None
    desc_cluster: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        self.multi_hot = np.ascontiguousarray(self.multi_hot, dtype=np.float32)
        self.centres = np.ascontiguousarray(self.centres, dtype=np.float32)
        if self.embeddings is not None:
            self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        if self.desc_class is not None:
            self.desc_class = np.ascontiguousarray(self.desc_class, dtype=np.int64)
        if self.desc_cluster is not None:
            self.desc_cluster = np.ascontiguousarray(self.desc_cluster, dtype=np.int64)
        self.validate()

    # ----------------------------------------------------------------- shape and consistency
    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)

    @property
    def num_properties(self) -> int:
        """K, the number of properties (clusters)."""
        return int(self.centres.shape[0])

    @property
    def dim(self) -> int:
        """D, the embedding width of the centres."""
        return int(self.centres.shape[1])

    @property
    def property_names(self) -> list[str]:
        """One readable name per property, in property order."""
        return [p["name"] for p in self.properties]

    @property
    def centres_hash(self) -> str:
        """Hash of the centres: equal hashes mean two label spaces share one property space."""
        return array_hash(self.centres)

    @property
    def version(self) -> str:
        """The content version (hash of the payload files)."""
        return payload_version(self._file_hashes(self._payload_bytes()))

    def validate(self) -> None:
        """Check shapes, values and cross-references; raise ProlabError naming the field."""
        where = f"label space {self.name!r}"
        if not self.classes:
            raise ProlabError(f"{where}: 'classes' is empty")
        dupes = sorted(c for c, n in Counter(self.classes).items() if n > 1)  # linear: 20,000 classes
        if dupes:
            raise ProlabError(f"{where}: duplicate class names {dupes}")
        if self.centres.ndim != 2 or self.centres.shape[0] < 1 or self.centres.shape[1] < 1:
            raise ProlabError(f"{where}: 'centres' must be [K,D], got shape {list(self.centres.shape)}")
        c, k = self.num_classes, self.num_properties
        if self.multi_hot.shape != (c, k):
            raise ProlabError(
                f"{where}: 'multi_hot' must be [C,K] = [{c},{k}], got {list(self.multi_hot.shape)}"
            )
        if not np.isin(self.multi_hot, (0.0, 1.0)).all():
            raise ProlabError(f"{where}: 'multi_hot' holds values other than 0 and 1")
        if not np.isfinite(self.centres).all():
            raise ProlabError(f"{where}: 'centres' holds NaN or infinite values")
        empty = [self.classes[i] for i in np.flatnonzero(self.multi_hot.sum(1) == 0)]
        if empty:
            raise ProlabError(f"{where}: classes own no property (all-zero multi-hot row): {empty}")
        if len(self.properties) != k:
            raise ProlabError(f"{where}: {len(self.properties)} properties listed for K={k} centres")
        for i, prop in enumerate(self.properties):
            if prop.get("id") != i or not isinstance(prop.get("name"), str):
                raise ProlabError(f"{where}: property {i} needs 'id' == {i} and a string 'name'")
        if list(self.descriptions) != self.classes:
            raise ProlabError(f"{where}: 'descriptions' keys differ from 'classes' (names or order)")
        n_desc = sum(len(v) for v in self.descriptions.values())
        given = [x is not None for x in (self.embeddings, self.desc_class, self.desc_cluster)]
        if any(given) and not all(given):
            raise ProlabError(f"{where}: give all or none of embeddings, desc_class, desc_cluster")
        if all(given):
            if self.embeddings.shape != (n_desc, self.dim):
                raise ProlabError(
                    f"{where}: 'embeddings' must be [N,D] = [{n_desc},{self.dim}],"
                    f" got {list(self.embeddings.shape)}"
                )
            for key, top in (("desc_class", c), ("desc_cluster", k)):
                arr = getattr(self, key)
                if arr.shape != (n_desc,) or (n_desc and (arr.min() < 0 or arr.max() >= top)):
                    raise ProlabError(f"{where}: {key!r} must be [{n_desc}] indices below {top}")

    # ------------------------------------------------------------------------- constructors
    @classmethod
    def from_arrays(
        cls,
        name: str,
        classes: list[str],
        multi_hot: np.ndarray,
        centres: np.ndarray,
        property_names: list[str] | None = None,
        descriptions: dict[str, list[str]] | None = None,
        provenance: dict | None = None,
        **arrays: np.ndarray,
    ) -> "LabelSpace":
        """A label space from bare arrays (tests, imports); properties get default names."""
        k = int(np.asarray(centres).shape[0]) if np.ndim(centres) == 2 else 0
        if property_names is not None and len(property_names) != k:
            raise ProlabError(f"label space {name!r}: {len(property_names)} property names for K={k} centres")
        names = list(property_names) if property_names is not None else [f"property {i}" for i in range(k)]
        properties = [{"id": i, "name": names[i], "members": [], "classes": []} for i in range(k)]
        classes = list(classes)
        descriptions = dict(descriptions) if descriptions is not None else {c: [] for c in classes}
        manifest = {"provenance": dict(provenance or {})}
        space = cls(name, classes, multi_hot, centres, properties, descriptions, manifest, **arrays)
        for prop, owners in zip(space.properties, property_classes(space.classes, space.multi_hot)):
            prop["classes"] = owners
        return space

    def with_classes_of(self, other: "LabelSpace", name: str | None = None) -> "LabelSpace":
        """``other``'s classes and multi-hot rows over this space's centres.

        Refused unless both share the same centres (equal ``centres_hash``): only then do the
        property ids mean the same thing, e.g. for labelling classes a model never trained on.
        """
        if other.centres_hash != self.centres_hash:
            raise ProlabError(
                f"label space {other.name!r} has different centres than {self.name!r}"
                f" (centres hash {other.centres_hash[:12]} != {self.centres_hash[:12]})"
            )
        props = [dict(p, classes=owners)
                 for p, owners in zip(self.properties, property_classes(other.classes, other.multi_hot))]
        return LabelSpace(
            name or other.name, other.classes, other.multi_hot, self.centres, props,
            other.descriptions, dict(other.manifest),
        )

    def subset(self, classes: list[str], name: str) -> "LabelSpace":
        """The rows of ``classes`` (in that order) over the same centres and properties.

        Property names and member lists are kept (members of dropped classes removed), as are the
        description embeddings of the kept classes, so the subset shares ``centres_hash``.
        """
        rows = [self.class_index(c) for c in classes]
        kept = [self.classes[i] for i in rows]
        prefixes = tuple(f"{c}: " for c in kept)
        props = [
            dict(p, members=[m for m in p.get("members", []) if m.startswith(prefixes)], classes=owners)
            for p, owners in zip(self.properties, property_classes(kept, self.multi_hot[rows]))
        ]
        arrays: dict[str, np.ndarray] = {}
        if self.embeddings is not None:
            pick = np.concatenate([np.flatnonzero(self.desc_class == i) for i in rows])
            remap = np.full(self.num_classes, -1, np.int64)
            remap[rows] = np.arange(len(rows))
            arrays = dict(embeddings=self.embeddings[pick], desc_class=remap[self.desc_class[pick]],
                          desc_cluster=self.desc_cluster[pick])
        prov = dict(self.manifest.get("provenance", {}), subset_of={"name": self.name, "version": self.version})
        return LabelSpace(
            name, kept, self.multi_hot[rows], self.centres, props, {c: list(self.descriptions[c]) for c in kept},
            {"provenance": prov}, **arrays,
        )

    # ----------------------------------------------------------------------------- queries
    def collisions(self) -> list[list[str]]:
        """Groups of classes that share an identical multi-hot row (indistinguishable)."""
        return collision_groups(self.classes, self.multi_hot)

    def class_index(self, name: str) -> int:
        """Index of class ``name`` (exact, then case/space-insensitive); ProlabError if absent."""
        if name in self.classes:
            return self.classes.index(name)
        folded = {c.strip().lower(): i for i, c in enumerate(self.classes)}
        key = name.strip().lower()
        if key in folded:
            return folded[key]
        raise ProlabError(f"class {name!r} is not in label space {self.name!r}")

    # ----------------------------------------------------------------------------- save/load
    def _tensors(self) -> dict[str, np.ndarray]:
        tensors = {"multi_hot": self.multi_hot, "centres": self.centres}
        if self.embeddings is not None:
            tensors.update(embeddings=self.embeddings, desc_class=self.desc_class, desc_cluster=self.desc_cluster)
        return tensors

    def _payload_bytes(self) -> dict[str, bytes]:
        from safetensors.numpy import save

        return {
            "descriptions.json": json_bytes(self.descriptions),
            "properties.json": json_bytes(self.properties),
            "tensors.safetensors": save(self._tensors(), metadata={"format": FORMAT}),
        }

    @staticmethod
    def _file_hashes(payload: dict[str, bytes]) -> dict[str, str]:
        return {name: _sha256(data) for name, data in payload.items()}

    def build_manifest(self, payload_hashes: dict[str, str]) -> dict:
        """The manifest for the given payload hashes (provenance kept from ``self.manifest``)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": payload_version(payload_hashes),
            "num_classes": self.num_classes,
            "num_properties": self.num_properties,
            "dim": self.dim,
            "classes": self.classes,
            "centres_hash": self.centres_hash,
            "collisions": self.collisions(),
            "provenance": self.manifest.get("provenance", {}),
            "provenance_sha256": provenance_hash(self.manifest.get("provenance", {})),
            "libraries": self.manifest.get("libraries") or library_versions(),
            "created": self.manifest.get("created") or _creation_time(),
            "files": payload_hashes,
        }

    def save(self, parent_dir: str | os.PathLike, dirname: str | None = None) -> Path:
        """Write the artifact atomically to ``parent_dir/<name>`` (or ``dirname``); return its path."""
        payload = self._payload_bytes()
        hashes = self._file_hashes(payload)
        self.manifest = self.build_manifest(hashes)
        target = inside(parent_dir, dirname or self.name, "label space name")
        with directory(target) as tmp:
            for fname, data in payload.items():
                (tmp / fname).write_bytes(data)
            (tmp / "manifest.json").write_bytes(json_bytes(self.manifest))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelSpace":
        """Load and verify an artifact directory (or a shipped one by name from ``label_spaces/``)."""
        path = resolve_artifact_path(path)
        if is_temporary(path):
            raise ProlabError(f"{path}: an unfinished write (a temporary folder), not an artifact")
        clean_stale(path)  # a kill between the two renames of a save left the previous version aside
        manifest_path = path / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if not path.exists() and len(path.parts) == 1:
                from .shipped import shipped_spaces

                known = ", ".join(sorted({n for sp in shipped_spaces() for n in (sp.name, *sp.lists)}))
                raise ProlabError(f"label space {str(path)!r}: no such folder, and no shipped label space has that"
                                  f" name (shipped: {known or 'none'}; `prolab label-spaces` lists them)") from None
            raise ProlabError(f"{path}: not a label-space artifact (no manifest.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ProlabError(f"{manifest_path}: malformed JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ProlabError(f"{manifest_path}: 'format' is not {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ProlabError(
                f"{manifest_path}: format_version {manifest.get('format_version')!r} is not supported"
                f" (this prolab reads {FORMAT_VERSION})"
            )
        files = manifest.get("files")
        if not isinstance(files, dict) or set(files) != set(PAYLOAD_FILES):
            raise ProlabError(f"{manifest_path}: 'files' must list {list(PAYLOAD_FILES)} with their hashes")
        payload: dict[str, bytes] = {}
        for fname in PAYLOAD_FILES:
            try:
                payload[fname] = (path / fname).read_bytes()
            except FileNotFoundError:
                raise IntegrityError(f"{path / fname}: missing from the artifact") from None
            if _sha256(payload[fname]) != files[fname]:
                raise IntegrityError(f"{path / fname}: hash mismatch (file tampered with or truncated)")
        if manifest.get("version") != payload_version(files):
            raise IntegrityError(f"{manifest_path}: 'version' does not match the payload hashes")
        # provenance steers later commands (extend's embedding model, export-bank's entry key): an edit is
        # refused like an edited payload file (artifacts written before this check carry no hash)
        if "provenance_sha256" in manifest and manifest["provenance_sha256"] != provenance_hash(manifest.get("provenance")):
            raise IntegrityError(f"{manifest_path}: 'provenance' was edited (its hash no longer matches)")
        return cls._from_payload(path, manifest, payload)

    @classmethod
    def _from_payload(cls, path: Path, manifest: dict, payload: dict[str, bytes]) -> "LabelSpace":
        from safetensors.numpy import load

        try:
            descriptions = json.loads(payload["descriptions.json"])
            properties = json.loads(payload["properties.json"])
            tensors = load(payload["tensors.safetensors"])
        except Exception as e:  # noqa: BLE001 - any parse error of a hashed file is corruption
            raise ProlabError(f"{path}: unreadable payload ({type(e).__name__}: {e})") from None
        missing = [k for k in ("multi_hot", "centres") if k not in tensors]
        if missing:
            raise ProlabError(f"{path / 'tensors.safetensors'}: missing tensors {missing}")
        arrays = {k: tensors[k] for k in _OPTIONAL_TENSORS if k in tensors}
        space = cls(
            manifest.get("name", path.name), manifest.get("classes", []), tensors["multi_hot"],
            tensors["centres"], properties, descriptions, manifest, **arrays,
        )
        for key, value in (("num_classes", space.num_classes), ("num_properties", space.num_properties), ("dim", space.dim)):
            if manifest.get(key) != value:
                raise IntegrityError(f"{path / 'manifest.json'}: {key!r} is {manifest.get(key)!r}, tensors say {value}")
        return space


def resolve_artifact_path(path: str | os.PathLike) -> Path:
    """``path`` itself when it exists or has a folder in it; for a bare name, the artifact
    ``label_spaces/<name>`` of a checkout, else the shipped artifact of that name or made for the
    built-in class list of that name (``ade20k``, ``bdd100k``, ...; see :mod:`prolab_cli.shipped`)."""
    p = Path(path)
    if p.exists() or len(p.parts) != 1:
        return p
    from .paths import data_dir
    from .shipped import shipped_space_path

    local = data_dir("label_spaces") / p
    if local.is_dir():
        return local
    return shipped_space_path(str(p)) or p
