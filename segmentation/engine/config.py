"""Training configs: YAML files with ``base:`` inheritance and ``key.path=value`` overrides.

The keys a config may hold and their types are the dataclasses below (:class:`TrainingConfig`);
their values, defaults included, live in the YAML files only (``configs/_base.yaml`` holds every
default, the shipped configs override some). A resolved config and every ``--set`` are checked against
the schema: an unknown key names the nearest valid one, a wrong type names the expected one.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml

from prolab_cli.errors import ProlabError
from prolab_cli.typed_options import Pair, check, coerce, schema_type

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ModelSection:
    """``model:`` which segmentor, which head and its loss."""

    preset: str
    head: Literal["property", "onehot"]
    temperature: float
    normalize_embedding: bool
    bank_basis: Literal["embedding", "span"]
    loss: Literal["cosine", "bce"]
    aux_weight: float
    img_size: int
    kwargs: dict


@dataclass
class LabelSpaceSection:
    """``label_space:`` the K the preset was published with (null: any)."""

    num_properties: int | None


@dataclass
class DataSection:
    """``data:`` the training pipeline and loader."""

    scale: Pair[int]
    ratio_range: Pair[float]
    crop_size: Pair[int]
    cat_max_ratio: float
    photometric: bool
    batch_size: int
    num_workers: int


@dataclass
class TestSection:
    """``test:`` inference settings of evaluation and prediction."""

    __test__ = False  # not a pytest class

    mode: Literal["slide", "whole"]
    crop_size: Pair[int]
    stride: Pair[int]
    scale: Pair[int]
    size_divisor: int | None
    pad_short_side: int | None
    flip: bool


@dataclass
class OptimSection:
    """``optim:`` AdamW with layer-wise learning-rate decay."""

    lr: float
    weight_decay: float
    betas: Pair[float]
    layer_decay: float
    grad_clip: float | None


@dataclass
class ScheduleSection:
    """``schedule:`` poly learning rate with linear warm-up."""

    max_iters: int
    warmup_iters: int
    warmup_ratio: float
    power: float
    min_lr: float
    init_from_required: bool


@dataclass
class TrainSection:
    """``train:`` loop, precision, logging and checkpoints."""

    accum_steps: int
    amp: Literal["none", "fp16", "bf16"]
    loss_scale: float
    seed: int
    log_interval: int
    ckpt_interval: int
    max_keep: int
    init_from: str | None


@dataclass
class TrainingConfig:
    """A resolved training config: every key, typed (values come from the YAML files)."""

    dataset: str
    model: ModelSection
    label_space: LabelSpaceSection
    data: DataSection
    test: TestSection
    optim: OptimSection
    schedule: ScheduleSection
    train: TrainSection

    def to_dict(self) -> dict:
        """The plain mapping the engine and checkpoints hold."""
        return dataclasses.asdict(self)


def check_config(config: dict | TrainingConfig, where: str = "config") -> dict:
    """``config`` checked against :class:`TrainingConfig` (every key present, none unknown, each of
    its type; numbers made floats where the schema says so), as a plain dict."""
    if isinstance(config, TrainingConfig):
        config = config.to_dict()
    checked = check(TrainingConfig, config, where).to_dict()
    check_numbers(checked)
    return checked


def base_defaults() -> dict:
    """``_base.yaml``: every key with its default value."""
    return load_config(CONFIG_DIR / "_base.yaml")


def config_names() -> list[str]:
    """Names of the shipped training configs (``segmentation/configs/*.yaml`` except ``_base``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise ProlabError(f"config {name_or_path!r}: no such file or shipped config (configs: {', '.join(config_names())})")


def merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively by ``override`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(name_or_path: str | Path) -> dict:
    """A shipped config name or YAML file, with its ``base:`` chain merged in (base first), checked
    against :class:`TrainingConfig`."""
    path = _resolve(name_or_path).resolve()
    return check_config(_load_chain(path), str(path))


def _load_chain(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    path = _resolve(path).resolve()
    if path in _seen:
        raise ProlabError(f"{path}: 'base' chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProlabError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProlabError(f"{path}: a config must be a YAML mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = path.parent / f"{base}.yaml" if (path.parent / f"{base}.yaml").is_file() else base
    return merge(_load_chain(Path(base_path), _seen + (path,)), data)


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a copy of ``config``; each key and
    value is checked against :class:`TrainingConfig` (unknown key: the nearest valid one is named)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ProlabError(f"train.overrides {item!r}: expected key=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        where = f"train.overrides {item!r}"
        tp, parts = schema_type(TrainingConfig, key, where)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ProlabError(f"{where}: value is not valid YAML") from None
        node: Any = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = coerce(value, tp, key, where)
    check_numbers(config)
    return config


#: config keys that hold a count: (key, smallest allowed value)
_COUNTS = (("schedule.max_iters", 1), ("schedule.warmup_iters", 0), ("data.batch_size", 1), ("data.num_workers", 0),
           ("train.accum_steps", 1), ("train.log_interval", 1), ("train.ckpt_interval", 1), ("train.max_keep", 1),
           ("model.img_size", 1))
#: config keys that hold a size in pixels: a positive integer or a list of them
_SIZES = ("data.crop_size", "data.scale", "test.crop_size", "test.stride", "test.scale")


def check_numbers(config: dict) -> None:
    """Refuse absurd numbers (0 iterations, batch size 0, a negative crop, ...) before any work starts."""

    def value(key: str) -> Any:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for key, least in _COUNTS:
        v = value(key)
        if v is not None and (not is_int(v) or v < least):
            raise ProlabError(f"config {key}: must be an integer >= {least}, got {v!r}")
    for key in _SIZES:
        v = value(key)
        if v is not None and not all(is_int(x) and x >= 1 for x in (v if isinstance(v, list) else [v])):
            raise ProlabError(f"config {key}: must be positive integers, got {v!r}")
    scale = value("train.loss_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ProlabError(f"config train.loss_scale: must be a number > 0, got {scale!r}")
    lr = value("optim.lr")
    if lr is not None:
        try:
            number = float(lr)  # YAML reads 1e-4 (no dot) as a string
        except (TypeError, ValueError):
            number = None
        if isinstance(lr, bool) or number is None or not number >= 0:
            raise ProlabError(f"config optim.lr: must be a number >= 0, got {lr!r}")


#: what ``prolab train --resume --set`` may change: the schedule (its length and shape) and the
#: logging/saving cadence; every other key fixes the model, the data stream or the optimiser
#: state the checkpoint holds
RESUMABLE_KEYS = ("schedule.", "train.log_interval", "train.ckpt_interval", "train.max_keep", "data.num_workers")


def apply_resume_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """:func:`apply_overrides` on a checkpoint's config, refusing keys outside :data:`RESUMABLE_KEYS`."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS):
            raise ProlabError(
                f"train.overrides {item!r}: a resumed run keeps its checkpoint's {key!r}; only schedule.*, "
                "train.log_interval, train.ckpt_interval, train.max_keep and data.num_workers can change"
            )
    return apply_overrides(config, overrides)
