"""The prolab segmentation checkpoint: format, atomic save, verified load.

A checkpoint is a ``torch.save`` file of plain containers and tensors only (it loads with
``weights_only=True``)::

    {
      "format": "prolab-segmentor", "format_version": 1,
      "state_dict": {...},             # the bare model's (never DDP's "module." prefix)
      "meta": {
        "preset": "vit-adapter-b",     # registered model name (segmentation.models.MODELS)
        "model_kwargs": {...},         # build_model keyword arguments besides class_rows/centres
        "head": "property" | "onehot",
        "classes": [...],              # class names in output order
        "label_space": {"name", "version", "centres_hash", "num_properties", "dim"} | None,
        "dataset": "ade20k", "prolab_version": "...", "created": "...",
      },
      # training state, present in checkpoints written by `prolab train`:
      "iteration": int, "optimizer": {...}, "scheduler": {...}, "scaler": {...} | None,
      "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "python": tuple}, "config": {...},
    }

``prolab convert`` (released mmseg weights) writes the same layout without the training state; for a
paper row (``segmentation.zoo``) it adds ``meta["row"]`` and ``config`` (the row's resolved preset, whose
``dataset`` and ``test`` section `prolab eval` uses).
A run directory holds ``iter_<N>.pth`` files and ``last_checkpoint`` naming the newest one.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
from pathlib import Path
from typing import Any

import torch

from prolab_cli import __version__
from prolab_cli.atomic import write_bytes, write_text
from prolab_cli.errors import ProlabError
from prolab_cli.torch_files import load_torch_file

FORMAT = "prolab-segmentor"
FORMAT_VERSION = 1
LAST = "last_checkpoint"


def class_rows_and_centres(label_space: Any) -> dict[str, torch.Tensor]:
    """The ``bank`` a property-head checkpoint stores beside its weights: the label space's
    class rows and raw centres as float32 tensors (its own copies)."""
    return {"class_rows": torch.tensor(label_space.multi_hot, dtype=torch.float32),
            "centres": torch.tensor(label_space.centres, dtype=torch.float32)}


def checkpoint_header(
    preset: str,
    model_kwargs: dict,
    head: str,
    classes: list[str],
    label_space: Any | None = None,
    dataset: str | None = None,
    *,
    model_config: dict | None = None,
    label_space_path: str | os.PathLike | None = None,
) -> dict:
    """What every checkpoint says about its weights, written the same by training and by
    ``prolab convert``: ``meta`` (model preset and arguments, head, classes, the label space's
    identity and path, dataset, property names, versions) and ``bank``, the class rows and centres
    of a property head (else None). ``label_space`` is a :class:`prolab_cli.artifact.LabelSpace`."""
    space = None
    if label_space is not None:
        space = {"name": label_space.name, "version": label_space.version, "centres_hash": label_space.centres_hash,
                 "num_properties": label_space.num_properties, "dim": label_space.dim}
        if label_space_path is not None:
            space["path"] = str(Path(label_space_path).resolve())
    property_head = head == "property" and label_space is not None
    meta = {
        "preset": preset,
        "model_kwargs": dict(model_kwargs),
        "head": head,
        "classes": list(classes),
        "label_space": space,
        "dataset": dataset,
        "prolab_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "model_config": model_config,
        "property_names": list(label_space.property_names) if property_head else None,
    }
    return {"meta": meta, "bank": class_rows_and_centres(label_space) if property_head else None}


def rng_state() -> dict:
    """The global RNG states a resumed run must continue from."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> Path:
    """Write ``checkpoint`` (a dict in the format above) atomically."""
    for key in ("state_dict", "meta"):
        if key not in checkpoint:
            raise ValueError(f"checkpoint lacks {key!r}")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint file (or a run directory: its newest checkpoint)."""
    path = resolve_checkpoint(path)
    ckpt = load_torch_file(path, "not a readable prolab checkpoint", offer_trust=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ProlabError(f"{path}: not a prolab checkpoint ('format' is not {FORMAT!r}; convert mmseg weights with `prolab convert`)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ProlabError(f"{path}: checkpoint format_version {ckpt.get('format_version')!r} is not supported")
    meta = ckpt.get("meta")
    if not isinstance(meta, dict) or not {"preset", "model_kwargs", "head", "classes"} <= set(meta):
        raise ProlabError(f"{path}: checkpoint 'meta' lacks preset/model_kwargs/head/classes")
    ckpt["path"] = str(path)
    return ckpt


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself, or for a run directory the checkpoint its ``last_checkpoint`` names."""
    path = Path(path)
    if path.is_dir():
        pointer = path / LAST
        if not pointer.is_file():
            raise ProlabError(f"{path}: no {LAST} file (no checkpoint written in this run directory yet)")
        path = path / pointer.read_text().strip()
    if not path.is_file():
        raise ProlabError(f"{path}: checkpoint not found")
    return path


def save_run_checkpoint(work_dir: Path, iteration: int, checkpoint: dict, max_keep: int = 2) -> Path:
    """Save ``iter_<iteration>.pth``, point ``last_checkpoint`` at it, prune older ones."""
    name = f"iter_{iteration}.pth"
    path = save_checkpoint(work_dir / name, checkpoint)
    write_text(work_dir / LAST, name + "\n")
    if max_keep and max_keep > 0:
        ours = [p for p in work_dir.glob("iter_*.pth") if p.stem[len("iter_"):].isdigit()]
        older = sorted(ours, key=lambda p: int(p.stem[len("iter_"):]))
        for stale in older[:-max_keep]:
            stale.unlink(missing_ok=True)
    return path
