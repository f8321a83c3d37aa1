"""`prolab eval`: a checkpoint on a dataset split, metrics exactly as MMSegmentation's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prolab_cli.atomic import write_json
from prolab_cli.classes import check_class_list
from prolab_cli.errors import ProlabError
from prolab_cli.progress import progress_bar

from ..data.datasets import SegDataset
from ..label_space import load_label_space
from . import distributed as D
from .builder import model_from_checkpoint, pick_device
from .checkpoint import load_checkpoint
from .inference import inference_settings, labels_for, pipeline_for
from .metrics import SegMetric


_TEST_KEYS = ("mode", "crop_size", "stride", "scale", "size_divisor", "pad_short_side", "flip")


def settings_used(ckpt: dict, dataset: str, split: str, settings: dict, classes: list[str], info: dict,
                  overridden: list[str]) -> dict:
    """Everything that decides an evaluation's numbers, as one flat record (printed and written)."""
    meta = ckpt["meta"]
    kwargs = meta.get("model_kwargs") or {}
    bank = ckpt.get("bank")
    property_head = meta.get("head") == "property"
    return {
        "row": meta.get("row"),
        "checkpoint": ckpt["path"],
        "dataset": dataset,
        "split": split,
        "num_classes": len(classes),
        "head": meta.get("head"),
        "K": int(bank["centres"].shape[0]) if property_head and bank is not None else None,
        "T": kwargs.get("temperature", 0.04) if property_head else None,
        "normalize_embedding": kwargs.get("normalize_embedding", False) if property_head else None,
        "bank_basis": kwargs.get("bank_basis", "embedding") if property_head else None,
        "label_space": (info.get("label_space") or {}).get("name"),
        **{k: settings.get(k) for k in _TEST_KEYS},
        "from": "the checkpoint's config" if ckpt.get("config") else "defaults (the checkpoint holds no config)",
        "overridden": overridden,
    }


def format_settings(used: dict) -> str:
    """The readable block `prolab eval` prints before it runs."""
    def pair(v):
        return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    lines = [f"evaluating {used['checkpoint']}" + (f" (row {used['row']})" if used["row"] else ""),
             f"  data      {used['dataset']} {used['split']}, {used['num_classes']} classes",
             f"  head      {used['head']}" + (f", K {used['K']}, T {used['T']:g}, embedding "
                                             f"{'normalised' if used['normalize_embedding'] else 'not normalised'}"
                                             + (", in the centres' span" if used.get("bank_basis") == "span" else "")
                                             if used["head"] == "property" else "")
             + (f", label space {used['label_space']}" if used["label_space"] else ""),
             f"  test      {used['mode']}" + (f" crop {pair(used['crop_size'])} stride {pair(used['stride'])}"
                                             if used["mode"] == "slide" else "")
             + f", resize to {pair(used['scale'])} (keep ratio), size_divisor {used['size_divisor']}, "
               f"pad short side {used['pad_short_side']}, flip {'on' if used['flip'] else 'off'}",
             f"  from      {used['from']}" + (f"; overridden: {', '.join(used['overridden'])}" if used["overridden"] else "")]
    return "\n".join(lines)


def check_eval_classes(model_classes: list[str], ds: SegDataset, info: dict, checkpoint: str,
                       map_by_name: bool) -> tuple[dict, list[str]]:
    """Refuse a model class list that differs from the dataset's; with ``map_by_name``, return which
    dataset classes have no row (ignored) and which model classes no ground truth, and the lines
    that report the matching."""
    what = f"label space {info['label_space']['name']!r}" if info.get("swapped") else f"the classes of {checkpoint}"
    where = f"the {ds.layout.name} dataset's ({len(ds.classes)} classes)"
    rec = check_class_list(model_classes, ds.classes, what=what, where=where, map_by_name=map_by_name,
                           by_name_field="eval.map_classes_by_name", unmatched_ok=True)
    if rec is None:
        return {"by_name": False}, []
    mapping = {"by_name": True, "ignored_dataset_classes": rec.missing,
               "model_classes_without_ground_truth": rec.unmatched, "renamed": rec.to_dict()["renamed"]}
    return mapping, [f"map_classes_by_name: {line}" for line in rec.report_lines()]


@torch.no_grad()
def evaluate(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    dataset: str | None = None,
    split: str = "val",
    label_space: str | Path | None = None,
    classes: str | Path | None = None,
    mode: str | None = None,
    flip: bool | None = None,
    scale: tuple[int, int] | None = None,
    crop: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    device: str = "auto",
    skip_bad: bool = False,
    output: str | Path | None = None,
    progress: bool = True,
    map_classes_by_name: bool = False,
    max_pixels: int | None = None,
) -> dict:
    """mIoU / mAcc / aAcc and the per-class table of ``checkpoint`` on ``split``.

    The model's classes (or ``label_space``'s, whose rows are swapped in over the same centres)
    must be the dataset's class list, else a one-line error names the first difference. With
    ``map_classes_by_name`` (cross-dataset evaluation) ground-truth classes are matched to the
    model's by name; dataset classes without a row are ignored, which the result records
    (``class_mapping``, and its lines under ``notes``).
    Under `torchrun` the split is shared out and the areas summed before the metric is formed.
    The settings used (:func:`settings_used`) are returned under ``settings``
    (:func:`format_settings` writes them for people).
    """
    device = pick_device(device)
    rank, world, local_rank = D.init_distributed(device)
    ckpt = load_checkpoint(checkpoint)
    config = ckpt.get("config") or {}
    dataset = dataset or config.get("dataset") or ckpt["meta"].get("dataset")
    if not dataset:
        raise ProlabError(f"{ckpt['path']}: the checkpoint records no dataset (a converted one?); give eval.dataset")
    space = load_label_space(label_space)
    model, model_classes, info = model_from_checkpoint(ckpt, space)
    torch_device = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")
    model.to(torch_device)
    overrides = {"mode": mode, "flip": flip, "scale": scale, "crop_size": crop, "stride": stride}
    settings = inference_settings(config, overrides)
    used = settings_used(ckpt, dataset, split, settings, model_classes, info,
                         [k for k, v in overrides.items() if v is not None])
    ds = SegDataset(dataset, data_root, split, pipeline=pipeline_for(settings), classes=classes,
                    target_classes=model_classes, skip_bad=skip_bad,
                    **({"max_pixels": max_pixels} if max_pixels is not None else {}))
    class_mapping, notes = check_eval_classes(model_classes, ds, info, ckpt["path"], map_classes_by_name)
    metric = _score_split(model, ds, settings, len(model_classes), torch_device, rank, world,
                          progress_bar(len(range(rank, len(ds), world)), f"eval {split}", "img", progress and rank == 0))
    result = metric.compute(model_classes)
    result.update({
        "checkpoint": ckpt["path"], "dataset": dataset, "data_root": str(data_root), "split": split,
        "num_images": len(ds), "skipped": len(ds.skipped), "label_space": info["label_space"],
        "swapped_class_rows": info["swapped"], "test": settings, "settings": used, "class_mapping": class_mapping,
        "notes": notes,
    })
    if output is not None and rank == 0:
        write_json(output, result)
    return result


def _score_split(model: torch.nn.Module, ds: SegDataset, settings: dict, num_classes: int, device: torch.device,
                 rank: int, world: int, bar: Any) -> SegMetric:
    """The confusion areas of this rank's share of ``ds`` (every ``world``-th image), summed over
    the ranks."""
    metric = SegMetric(num_classes, ds.ignore_index)
    for i in range(rank, len(ds), world):
        sample = ds[i]
        img = sample["img"].unsqueeze(0).to(device)
        label = sample["label"]
        labels, _, _ = labels_for(settings, model.encode_decode, img, num_classes, tuple(label.shape))
        metric.update(labels[0].cpu().long(), label)
        bar.update(1)
    bar.close()
    state = metric.state().to(device)
    D.all_reduce_sum(state)
    metric.load_state(state.cpu())
    return metric
