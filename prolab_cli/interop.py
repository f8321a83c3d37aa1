"""ProLab's embedding-bank ``.pth``, imported into and exported from label-space artifacts
(descriptor JSON files are read by :mod:`prolab_cli.descriptor_files`).

The bank is what ProLab's segmentor loads: a ``torch.save`` dict with ``'descriptions'`` and one
``'<model>_gpt3.5_cluster_<K>_embeddings_and_labels'`` entry holding ``[centres [D,K],
multi-hot [K,C] float64]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .artifact import LabelSpace
from .atomic import inside, write_bytes
from .descriptor_files import CleanReport, clean_descriptions
from .errors import MissingDependencyError, ProlabError
from .torch_files import load_torch_file

BANK_KEY_RE = re.compile(r"^(?P<model>.*)_cluster_(?P<k>\d+)_embeddings_and_labels$")


# --------------------------------------------------------------------------------- the bank
def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("reading or writing a ProLab bank .pth needs torch: pip install 'prolab[seg]'", "seg") from None
    return torch


def load_bank(path: str | os.PathLike, trust_pickle: bool = False) -> dict:
    """Load a bank ``.pth``; without ``trust_pickle`` no code is unpickled (``weights_only=True``)."""
    _torch()
    path = Path(path)
    if not path.is_file():
        raise ProlabError(f"{path}: no such file")
    bank = load_torch_file(path, "not a loadable bank", trust_pickle)
    if not isinstance(bank, dict):
        raise ProlabError(f"{path}: expected a dict, got {type(bank).__name__}")
    return bank


#: the dataset part of the released bank file names (``embeddings/<dataset>_desc_...``) -> built-in class list
BANK_DATASETS: dict[str, str] = {
    "ade": "ade20k",
    "coco_stuff_164k": "coco-stuff",
    "pascal_context_59": "pascal-context-59",
    "cityscapes_bdd": "cityscapes",
}
BANK_FILE_RE = re.compile(r"^(?P<dataset>.+)_desc_(?P<stem>.+)_cluster_(?P<k>\d+)_embedding_bank\.pth$")


def bank_file_name(dataset: str, key: str) -> str:
    """The file name the released configs load for entry ``key`` of ``dataset``:
    ``<dataset>_desc_<model>_gpt3.5_cluster_<K>_embedding_bank.pth``."""
    match = BANK_KEY_RE.match(key)
    if not match:
        raise ProlabError(f"bank key {key!r} must end in '_cluster_<K>_embeddings_and_labels'")
    return f"{dataset}_desc_{match['model']}_cluster_{match['k']}_embedding_bank.pth"


def classes_of_bank_file(path: str | os.PathLike) -> str | None:
    """The built-in class list a released bank file name implies (``ade_desc_...`` -> ade20k), or None."""
    match = BANK_FILE_RE.match(Path(path).name)
    return BANK_DATASETS.get(match["dataset"]) if match else None


def bank_dataset_of(space: LabelSpace) -> str | None:
    """The released bank files' dataset name of ``space``'s class list (ade, coco_stuff_164k, ...),
    or None when its classes are none of the built-in lists."""
    from .classes import class_list_difference, load_classes

    for dataset, builtin in BANK_DATASETS.items():
        if class_list_difference(space.classes, load_classes(builtin)) is None:
            return dataset
    return None


def _bank_descriptions(bank: dict, source: str) -> tuple[dict[str, list[str]], CleanReport]:
    raw = bank.get("descriptions")
    if raw is None:
        return {}, CleanReport()
    if not isinstance(raw, dict):
        raise ProlabError(
            f"{source}: 'descriptions' must be a dict {{class: [descriptions]}}, got {type(raw).__name__}"
        )
    return clean_descriptions(list(raw.items()), source=f"{source}:descriptions")


def bank_to_label_space(
    bank: dict,
    name: str,
    key: str | None = None,
    classes: list[str] | None = None,
    source: str = "bank",
    classes_source: str | None = None,
) -> LabelSpace:
    """Turn a loaded bank dict into a LabelSpace (centres transposed to [K,D], multi-hot to [C,K]).

    With ``classes`` (the dataset's list, named ``classes_source``) the bank's description names
    are reconciled with it (:func:`~prolab_cli.classes.reconcile_class_names`): the artifact takes
    the dataset's names, and every non-exact match is recorded in its provenance
    (``provenance.import.classes``); a name that matches no class is refused.
    """
    keys = [k for k in bank if isinstance(k, str) and BANK_KEY_RE.match(k)]
    present = sorted(map(str, bank))
    if key is None:
        if len(keys) != 1:
            raise ProlabError(
                f"{source}: expected one '*_cluster_<K>_embeddings_and_labels' entry, found {keys or 'none'}"
                f" (entries: {present}); choose one with import_bank.key"
            )
        key = keys[0]
    if key not in bank:
        raise ProlabError(f"{source}: no entry {key!r} (entries: {present})")
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

    descriptions, cleaned = _bank_descriptions(bank, source)
    provenance = {"import": {"format": "prolab-bank-pth", "key": key, "source": Path(source).name,
                             "cleaned": cleaned.lines()}}
    if classes is None:
        classes = list(descriptions)
        provenance["import"]["classes"] = {"list": "the bank's descriptions"}
    elif descriptions:
        from .classes import reconcile_class_names

        if len(descriptions) != len(classes):
            raise ProlabError(
                f"{source}: the bank describes {len(descriptions)} classes but the class list"
                f" {classes_source or '(given)'} has {len(classes)}"
            )
        rec = reconcile_class_names(list(descriptions), classes, source=f"{source}:descriptions")
        descriptions = dict(zip(classes, descriptions.values()))
        provenance["import"]["classes"] = {"list": classes_source or "given", **rec.to_dict()}
    else:
        provenance["import"]["classes"] = {"list": classes_source or "given", "note": "the bank has no descriptions"}
    if len(classes) != c:
        raise ProlabError(
            f"{source}: multi-hot has {c} classes but {len(classes)} class names are known"
            " (give the class list: import_bank.classes)"
        )
    descriptions = {cls: descriptions.get(cls, []) for cls in classes}
    return LabelSpace.from_arrays(
        name, classes, hot_kc.T, centres_dk.T.astype(np.float32), descriptions=descriptions, provenance=provenance,
    )


def import_notes(space: LabelSpace) -> list[str]:
    """What an import changed or assumed about class names, one line each (for stderr)."""
    imported = space.manifest.get("provenance", {}).get("import") or {}
    record = imported.get("classes") or {}
    source = imported.get("source", space.name)
    lines = [f"{source}: {line}" for line in imported.get("cleaned", [])]
    lines += [f"{source}: class {r['index']} {r['from']!r} -> {r['to']!r} ({r['how']})" for r in record.get("renamed", [])]
    if record.get("list") == "the bank's descriptions":
        lines.append(f"{source}: class names taken from the bank's descriptions (import_bank.classes not given); train, eval and"
                     " predict refuse it against a dataset whose class list differs")
    return lines


def _model_stem(space: LabelSpace) -> str:
    """The model part of the entry name: the imported key's own, else the embedding model's name
    (``BAAI/bge-base-en-v1.5`` -> ``bge-base-en-v1.5``) followed by ``_gpt3.5`` as ProLab writes it."""
    provenance = space.manifest.get("provenance", {})
    imported = BANK_KEY_RE.match(str((provenance.get("import") or {}).get("key", "")))
    if imported:
        return imported["model"]
    embed = provenance.get("embed") or {}
    model = str(embed.get("source") or "")
    if not model:
        from .embed import ALIASES

        name = str(embed.get("model") or "embed")
        model = ALIASES.get(name, name)
    model = model.split(" (")[0].rstrip("/")
    model = re.sub(r"[^A-Za-z0-9.\-]+", "_", model.rsplit("/", 1)[-1]).strip("_").lower() or "embed"
    return f"{model}_gpt3.5"


def default_bank_key(space: LabelSpace) -> str:
    """The entry name ProLab's configs use: ``<model>_gpt3.5_cluster_<K>_embeddings_and_labels``
    (``bge-base-en-v1.5_gpt3.5_cluster_256_embeddings_and_labels`` for the paper's banks)."""
    return f"{_model_stem(space)}_cluster_{space.num_properties}_embeddings_and_labels"


def export_bank(space: LabelSpace, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write ``space`` as a bank ``.pth`` that ProLab's code loads (atomically): ``descriptions``
    and ``key`` = [centres [D,K] float32 (not normalised), multi-hot [K,C] float64]."""
    import io

    torch = _torch()
    key = key or default_bank_key(space)
    match = BANK_KEY_RE.match(key)
    if not match:
        raise ProlabError(f"bank key {key!r} must end in '_cluster_<K>_embeddings_and_labels'")
    if int(match["k"]) != space.num_properties:
        raise ProlabError(f"bank key {key!r} names K={match['k']} but label space {space.name!r} has K={space.num_properties}")
    bank = {
        "descriptions": {c: list(v) for c, v in space.descriptions.items()},
        key: [
            torch.from_numpy(np.ascontiguousarray(space.centres.T, dtype=np.float32)),
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
    """The ``prolab import-bank`` stage: bank ``.pth`` -> artifact directory under ``out_dir``.

    The class list is ``classes_spec``, else the built-in list a released file name implies
    (``ade_desc_...`` -> ade20k), else the bank's description names (said in :func:`import_notes`).
    """
    from .classes import load_classes

    classes_spec = classes_spec or classes_of_bank_file(bank_path)
    classes = load_classes(classes_spec) if classes_spec else None
    space = bank_to_label_space(load_bank(bank_path, trust_pickle), name, key=key, classes=classes,
                                source=str(bank_path), classes_source=classes_spec)
    return space, space.save(out_dir)


def run_export_bank(
    artifact: str | os.PathLike,
    output: str | os.PathLike | None = None,
    key: str | None = None,
    dataset: str | None = None,
) -> tuple[Path, str]:
    """The ``prolab export-bank`` stage: artifact -> bank ``.pth``; returns the path and entry name.

    ``output`` is a ``.pth`` file, or a folder (default ``embeddings``) that receives the file name
    the released configs load, ``<dataset>_desc_<model>_gpt3.5_cluster_<K>_embedding_bank.pth``;
    ``dataset`` (ade, coco_stuff_164k, pascal_context_59, cityscapes_bdd, or any name) defaults to
    the one whose built-in class list the artifact's classes are.
    """
    space = LabelSpace.load(artifact)
    key = key or default_bank_key(space)
    out = Path(output) if output is not None else Path("embeddings")
    if out.suffix != ".pth":
        dataset = dataset or bank_dataset_of(space)
        if dataset is None:
            raise ProlabError(
                f"label space {space.name!r}: its classes are none of the built-in lists, so the bank file name"
                " needs export_bank.dataset (or an output file FILE.pth)"
            )
        out = inside(out, bank_file_name(dataset, key), "bank file name (from export_bank.dataset and the entry key)")
    return export_bank(space, out, key), key
