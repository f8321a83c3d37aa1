"""`prolab eval`: a checkpoint on a dataset split, metrics exactly as MMSegmentation's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prolab_cli.atomic import write_json
from prolab_cli.errors import ProlabError
from prolab_cli.progress import progress_bar

from ..data.datasets import SegDataset
from ..data.transforms import TestPipeline
from . import distributed as D
from .builder import load_label_space, model_from_checkpoint, pick_device
from .checkpoint import load_checkpoint
from .inference import infer_scores
from .metrics import SegMetric


def inference_settings(config: dict | None, overrides: dict[str, Any]) -> dict:
    """The ``test`` section of the checkpoint's config, updated by non-None ``overrides``."""
    settings = {"mode": "whole", "crop_size": [512, 512], "stride": [341, 341], "scale": [2048, 512], "flip": False}
    settings.update((config or {}).get("test", {}))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def pipeline_for(settings: dict) -> TestPipeline:
    """The test-time resize and normalisation of :func:`inference_settings`."""
    return TestPipeline(scale=tuple(settings["scale"]) if settings["scale"] else None)


def scores_for(settings: dict, score_fn, img: torch.Tensor, num_out: int, out_size: tuple[int, int]) -> torch.Tensor:
    """:func:`~.inference.infer_scores` run as :func:`inference_settings` say (mode, window, flip)."""
    return infer_scores(score_fn, img, num_out, out_size, settings["mode"], tuple(settings["crop_size"]),
                        tuple(settings["stride"]), bool(settings["flip"]))


@torch.no_grad()
def evaluate(
    checkpoint: str | Path,
    dataset: str | None,
    data_root: str | Path,
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
) -> dict:
    """mIoU / mAcc / aAcc and the per-class table of ``checkpoint`` on ``split``.

    Ground-truth classes are matched to the model's classes by name; dataset classes the model
    lacks are ignored. With ``label_space`` the model's class rows are swapped (same centres).
    Under `torchrun` the split is shared out and the areas summed before the metric is formed.
    """
    device = pick_device(device)
    rank, world, local_rank = D.init_distributed(device)
    ckpt = load_checkpoint(checkpoint)
    config = ckpt.get("config") or {}
    dataset = dataset or config.get("dataset") or ckpt["meta"].get("dataset")
    if not dataset:
        raise ProlabError(f"{ckpt['path']}: the checkpoint records no dataset (a converted one?); give --dataset")
    space = load_label_space(label_space)
    model, model_classes, info = model_from_checkpoint(ckpt, space)
    torch_device = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")
    model.to(torch_device)
    settings = inference_settings(config, {"mode": mode, "flip": flip, "scale": scale, "crop_size": crop, "stride": stride})
    ds = SegDataset(dataset, data_root, split, pipeline=pipeline_for(settings), classes=classes,
                    target_classes=model_classes, skip_bad=skip_bad)
    metric = SegMetric(len(model_classes))
    indices = range(rank, len(ds), world)
    bar = progress_bar(len(indices), f"eval {split}", "img", progress and rank == 0)
    for i in indices:
        sample = ds[i]
        img = sample["img"].unsqueeze(0).to(torch_device)
        label = sample["label"]
        scores = scores_for(settings, model.encode_decode, img, len(model_classes), tuple(label.shape))
        metric.update(scores.argmax(1)[0].cpu(), label)
        bar.update(1)
    bar.close()
    state = metric.state().to(torch_device)
    D.all_reduce_sum(state)
    metric.load_state(state.cpu())
    result = metric.compute(model_classes)
    result.update({
        "checkpoint": ckpt["path"], "dataset": dataset, "data_root": str(data_root), "split": split,
        "num_images": len(ds), "skipped": len(ds.skipped), "label_space": info["label_space"],
        "swapped_class_rows": info["swapped"], "test": settings,
    })
    if output is not None and rank == 0:
        write_json(output, result)
    return result


