"""The ProLab property classifier: pixel embeddings scored against property centres, class
scores as the cosine between property scores and each class's multi-hot row, and the losses."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from prolab_cli.errors import ProlabError

from ..labels import ignore_index_for
from .layers import resize


def as_float_tensor(x: Any, name: str) -> torch.Tensor:
    """A 2-D float32 tensor from a tensor / numpy array / nested list, or a ProlabError."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ProlabError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t.to(torch.float32)


def score_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype z, the sigmoid and the class scores are computed in: float64 for float64
    embeddings, else float32 (half-precision embeddings are cast up first, as the released head's
    ``force_fp32`` does)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def full_precision(device: torch.device) -> AbstractContextManager:
    """Autocast switched off on ``device``, so the ops inside run in their inputs' dtype."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


BASES = ("embedding", "span")


def span_basis(vectors: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """An orthonormal basis [D,r] of the span of ``vectors`` [K,D]: their principal axes (right
    singular vectors) in order of singular value, those below ``tol`` times the largest dropped
    (r = rank), each signed so that the vectors' mean coordinate on it is positive. It treats every
    vector alike (no order dependence) and depends on the vectors alone, so a label space over the
    same centres (``prolab extend`` / ``--keep`` keep them) gets the same basis."""
    v = vectors.detach().double()
    _, singular, vh = torch.linalg.svd(v, full_matrices=False)
    basis = vh[: int((singular > tol * singular[0]).sum())].T
    mean = (v @ basis).mean(0)
    largest = basis.gather(0, basis.abs().argmax(0, keepdim=True))[0]  # the tie-break when the mean is 0
    return basis * torch.where(mean.abs() > 1e-12, mean, largest).sign()


def span_coordinates(centres: torch.Tensor, span_of: torch.Tensor | None = None) -> torch.Tensor:
    """The coordinates [K,r] of the centres [K,D] in :func:`span_basis` of ``span_of`` (default:
    the centres themselves, where they keep every inner product); a centre outside that span is
    projected onto it (a model trained over one set of centres scoring another)."""
    basis_of = centres if span_of is None else torch.as_tensor(span_of).to(centres)
    if centres.device.type == "meta":
        return torch.empty(centres.shape[0], min(basis_of.shape), device="meta")
    basis_of = F.normalize(basis_of, dim=1)
    return (centres.detach().double() @ span_basis(basis_of)).to(centres.dtype)


class PropertyBank(nn.Module):
    """Holds the L2-normalised centres [K,D] and the class rows [C,K] as non-persistent buffers
    (they are not in released checkpoints; our checkpoints store them beside the state dict).

    z = e . c_k (e optionally L2-normalised), p = sigmoid(z / T), class score s_c = cos(p, y_c).
    All of it is computed in float32 (float64 for a float64 embedding) with autocast off: with
    T = 0.01 a half-precision dot product over D channels would feed the sigmoid errors of
    ~|z| * 2^-8 / T.

    ``basis`` says where the pixel embedding e lives. ``"embedding"`` (the paper, every released
    checkpoint): in the text-embedding space, D channels. ``"span"``: K coordinates along the
    centres' principal axes (:func:`span_basis`, :func:`span_coordinates`). z depends only on the part
    of e inside that span, so both score the same family of pixels -> z maps (exactly so for an
    unnormalised e); ``span`` drops the D - K channels the loss never sees. ``span_of`` (span
    basis only): score these centres in the span of other, trained centres instead (a model
    trained over one set of centres scoring another, as the class-embedding baseline does).
    """

    def __init__(self, class_rows: Any, centres: Any, temperature: float = 0.04,
                 normalize_embedding: bool = False, basis: str = "embedding", span_of: Any = None):
        super().__init__()
        if temperature <= 0:
            raise ProlabError(f"temperature must be > 0, got {temperature}")
        if basis not in BASES:
            raise ProlabError(f"model.bank_basis {basis!r}: expected one of {', '.join(BASES)}")
        centres = as_float_tensor(centres, "centres")
        if centres.device.type != "meta" and bool((centres.norm(dim=1) == 0).any()):
            raise ProlabError("centres: a property centre has zero norm")
        self.register_buffer("centres", F.normalize(centres, dim=1), persistent=False)
        scored = self.centres if basis == "embedding" else span_coordinates(self.centres, span_of)
        self.register_buffer("scored_centres", scored, persistent=False)
        self.register_buffer("class_rows", torch.empty(0, centres.shape[0]), persistent=False)
        self.temperature = float(temperature)
        self.normalize_embedding = bool(normalize_embedding)
        self.basis = basis
        self.set_class_rows(class_rows)

    @property
    def num_properties(self) -> int:
        return self.centres.shape[0]

    @property
    def dim(self) -> int:
        """Channels of the pixel embedding: D (``embedding`` basis) or K (``span``)."""
        return self.scored_centres.shape[1]

    @property
    def num_classes(self) -> int:
        return self.class_rows.shape[0]

    def set_class_rows(self, class_rows: Any) -> None:
        """Replace the class rows [C', K] (same properties, any number of classes)."""
        class_rows = as_float_tensor(class_rows, "class_rows")
        if class_rows.shape[1] != self.num_properties:
            raise ProlabError(f"class_rows has {class_rows.shape[1]} properties, the centres have "
                              f"{self.num_properties}")
        if class_rows.device.type != "meta":
            empty = (class_rows.abs().sum(1) == 0).nonzero().flatten().tolist()
            if empty:
                raise ProlabError(f"class_rows: classes {empty} own no property (all-zero rows)")
        self.class_rows = class_rows.to(device=self.centres.device, dtype=self.centres.dtype)

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Pixel embedding [B,D,h,w] -> property logits z [B,K,h,w] (float32 or float64)."""
        dtype = score_dtype(embedding.dtype)
        with full_precision(embedding.device):
            embedding = embedding.to(dtype)
            if self.normalize_embedding:
                embedding = F.normalize(embedding, dim=1)
            return torch.einsum("bdhw,kd->bkhw", embedding, self.scored_centres.to(dtype))

    def logits_at(self, embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Property logits z at ``size`` (bilinear): the embedding is resized when it is
        L2-normalised, else z itself (the dot product is linear per pixel, so resizing z equals
        resizing e, and costs K <= D channels)."""
        with full_precision(embedding.device):
            if self.normalize_embedding:
                return self.logits(resize(embedding.to(score_dtype(embedding.dtype)), size))
            return resize(self.logits(embedding), size)

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """Property scores p = sigmoid(z / T): [B,K,h,w] (float32 or float64)."""
        with full_precision(embedding.device):
            return torch.sigmoid(self.logits(embedding) / self.temperature)

    def class_scores(self, props: torch.Tensor) -> torch.Tensor:
        """Cosine between property scores [B,K,h,w] and each class row: [B,C,h,w]."""
        dtype = score_dtype(props.dtype)
        with full_precision(props.device):
            rows = F.normalize(self.class_rows.to(dtype), dim=1)
            return torch.einsum("bkhw,ck->bchw", F.normalize(props.to(dtype), dim=1), rows)

    def loss(self, embedding: torch.Tensor, label: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
        """Mean over valid pixels (label != the ignore id: 255, or 65535 above 255 classes) of
        1 - cos(p, y_label) (or BCE(p, y_label)),
        with the embedding brought to the label's resolution (bilinear) before the sigmoid."""
        with full_precision(embedding.device):
            return self._loss(embedding, label, kind)

    def _loss(self, embedding: torch.Tensor, label: torch.Tensor, kind: str) -> torch.Tensor:
        z = self.logits_at(embedding, label.shape[-2:])
        ignore = ignore_index_for(self.num_classes)
        valid = label != ignore
        if not bool(valid.any()):
            return z.sum() * 0.0
        target_ids = label[valid]
        if int(target_ids.max()) >= self.num_classes or int(target_ids.min()) < 0:
            raise ProlabError(f"label ids must be in [0, {self.num_classes}) or {ignore}, "
                              f"got {int(target_ids.min())}..{int(target_ids.max())}")
        z = z.permute(0, 2, 3, 1)[valid] / self.temperature
        target = self.class_rows.to(z.dtype)[target_ids]
        if kind == "cosine":
            return (1.0 - F.cosine_similarity(torch.sigmoid(z), target, dim=1)).mean()
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(z, target)
        raise ProlabError(f"unknown property loss {kind!r} (use 'cosine' or 'bce')")


def cross_entropy_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy at the label's resolution, mean over valid pixels (the ignore id of
    ``logits``' class count ignored: 255, or 65535 above 255 classes)."""
    logits = resize(logits, label.shape[-2:])
    ignore = ignore_index_for(logits.shape[1])
    valid = label != ignore
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ids = label[valid]
    if int(ids.max()) >= logits.shape[1] or int(ids.min()) < 0:
        raise ProlabError(f"label ids must be in [0, {logits.shape[1]}) or {ignore}, "
                          f"got {int(ids.min())}..{int(ids.max())}")
    return F.cross_entropy(logits.float(), label, ignore_index=ignore)
