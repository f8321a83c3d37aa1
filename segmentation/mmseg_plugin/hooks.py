"""A Runner hook that refuses a label space that does not fit the run: dataset classes that
differ from the artifact's, or a prolab checkpoint trained on another artifact version."""

from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from prolab_cli.errors import ProlabError

from .heads import PropertyHeadMixin


def property_heads(model: Any) -> list[tuple[str, PropertyHeadMixin]]:
    """(name, head) of every ProLab property head of an mmseg segmentor."""
    if is_model_wrapper(model):
        model = model.module
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PropertyHeadMixin)]


def check_classes(heads: list[tuple[str, PropertyHeadMixin]], dataset: Any, split: str) -> None:
    """ProlabError unless the dataset's metainfo classes equal each head's artifact classes (same
    names, same order: the head's class index is the label id)."""
    meta = getattr(dataset, "metainfo", None) or {}
    classes = [str(c) for c in meta.get("classes") or ()]
    for name, head in heads:
        want = head.class_names
        if classes == want:
            continue
        where = f"{split} dataset {type(dataset).__name__} vs {name} label space {head.label_space.name!r}"
        if len(classes) != len(want):
            raise ProlabError(f"{where}: {len(classes)} dataset classes, {len(want)} artifact classes")
        i = next(i for i, (a, b) in enumerate(zip(classes, want)) if a != b)
        raise ProlabError(f"{where}: class {i} is {classes[i]!r} in the dataset metainfo but "
                          f"{want[i]!r} in the artifact")


@HOOKS.register_module()
class LabelSpaceCheckHook(Hook):
    """Checks each split's dataset classes against the ProLab heads before it runs, and the
    label-space version recorded in a loaded prolab checkpoint."""

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        check_classes(property_heads(runner.model), runner.train_dataloader.dataset, "train")

    def before_val(self, runner) -> None:
        check_classes(property_heads(runner.model), runner.val_loop.dataloader.dataset, "val")

    def before_test(self, runner) -> None:
        check_classes(property_heads(runner.model), runner.test_loop.dataloader.dataset, "test")

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        recorded = (checkpoint.get("meta") or {}).get("label_space")
        if not isinstance(recorded, dict):
            return
        for name, head in property_heads(runner.model):
            if recorded.get("version") != head.label_space.version:
                raise ProlabError(f"checkpoint was trained with label space {recorded.get('name')!r} "
                                  f"version {recorded.get('version')}, {name} has "
                                  f"{head.label_space.name!r} version {head.label_space.version}")
