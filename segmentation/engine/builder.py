"""Building a segmentor from a training config or from a checkpoint, and swapping label spaces;
the device and label-space arguments train, eval and predict share."""

from __future__ import annotations

from typing import Any

import torch

from prolab_cli.errors import ProlabError

from ..label_space import array_hash


def pick_device(device: str = "auto") -> str:
    """``cuda`` when asked for or available (auto), else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ProlabError("device 'cuda': no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ProlabError(f"device {device!r}: expected auto, cpu or cuda")
    return device


def model_kwargs_from_config(model_cfg: dict) -> dict:
    """``build_model`` keyword arguments (besides classes/rows/centres) of a config's ``model``
    section (complete: checked by :func:`~.config.check_config`, its defaults from ``_base.yaml``)."""
    kwargs = {
        "temperature": float(model_cfg["temperature"]),
        "normalize_embedding": bool(model_cfg["normalize_embedding"]),
        "bank_basis": model_cfg["bank_basis"],
        "loss": model_cfg["loss"],
        "aux_weight": float(model_cfg["aux_weight"]),
        "img_size": model_cfg["img_size"],
    }
    kwargs.update(model_cfg["kwargs"])
    return kwargs


def build_for_head(model: Any, head: str, classes: list[str], label_space: Any | None, kwargs: dict,
                   stored_rows: dict | None = None) -> torch.nn.Module:
    """Registered model ``model`` (a name or ModelConfig; :func:`segmentation.models.build_model`) with a
    one-hot head over ``classes`` or a property head from ``label_space`` (or from a checkpoint's stored
    ``stored_rows``: its ``bank`` entry, {class_rows, centres})."""
    from segmentation.models import build_model

    if head == "onehot":
        return build_model(model, num_classes=len(classes), **kwargs)
    if head != "property":
        raise ProlabError(f"model.head {head!r}: expected 'property' or 'onehot'")
    if stored_rows is not None:
        rows, centres = stored_rows["class_rows"], stored_rows["centres"]
    elif label_space is not None:
        rows, centres = label_space.multi_hot, label_space.centres
    else:
        raise ProlabError("the property head needs a label space (train.label_space ARTIFACT); use train.head onehot for the baseline")
    return build_model(model, class_rows=rows, centres=centres, **kwargs)


def model_of(meta: dict) -> Any:
    """The architecture a checkpoint was made with: its stored ModelConfig when present, else its registered model name."""
    from segmentation.models import ModelConfig

    if meta.get("model_config"):
        return ModelConfig.from_dict(meta["model_config"])
    return meta["preset"]


def model_from_checkpoint(ckpt: dict, label_space: Any | None = None) -> tuple[torch.nn.Module, list[str], dict]:
    """(model with the checkpoint's weights, class names, info) for inference.

    ``label_space`` (a LabelSpace) replaces the class rows when its version differs from the one
    the model was trained with; that is allowed only over identical centres, and is how a model
    labels classes it never trained on.
    """
    meta = ckpt["meta"]
    kwargs = dict(meta["model_kwargs"], sync_bn=False)  # inference: BN running statistics, any device
    model = build_for_head(model_of(meta), meta["head"], meta["classes"], None, kwargs, ckpt.get("bank"))
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    if missing or unexpected:
        raise ProlabError(
            f"{ckpt.get('path', 'checkpoint')}: weights do not fit the {meta['preset']} model "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )
    classes = list(meta["classes"])
    info = {"label_space": meta.get("label_space"), "swapped": False}
    if label_space is not None:
        trained = meta.get("label_space")
        if meta["head"] != "property":
            raise ProlabError(f"{ckpt.get('path')}: a one-hot model cannot take another label space")
        if trained is None or label_space.version != trained.get("version"):
            own_hash = trained.get("centres_hash") if trained else array_hash(ckpt["bank"]["centres"].numpy())
            if label_space.centres_hash != own_hash:
                raise ProlabError(
                    f"label space {label_space.name!r} has different centres than the one "
                    f"{ckpt.get('path')} was trained with ({(trained or {}).get('name')!r}); class rows can only "
                    "be swapped over the same centres"
                )
            model.set_class_rows(label_space.multi_hot)
            classes = list(label_space.classes)
            info = {"label_space": {"name": label_space.name, "version": label_space.version}, "swapped": True}
    model.eval()
    return model, classes, info
