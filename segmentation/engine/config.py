"""Training configs: YAML presets with ``base:`` inheritance and ``key.path=value`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from prolab_cli.errors import ProlabError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def preset_names() -> list[str]:
    """Names of the shipped presets (``segmentation/configs/*.yaml`` except ``_base``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise ProlabError(f"config {name_or_path!r}: no such file or preset (presets: {', '.join(preset_names())})")


def merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively by ``override`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A preset name or YAML file, with its ``base:`` chain merged in (base first)."""
    path = _resolve(name_or_path).resolve()
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
    return merge(load_config(base_path, _seen + (path,)), data)


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as YAML); the key must already exist."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ProlabError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = config
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ProlabError(f"--set {item!r}: unknown config key {key!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ProlabError(f"--set {item!r}: unknown config key {key!r}")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ProlabError(f"--set {item!r}: value is not valid YAML") from None
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
                f"--set {item!r}: a resumed run keeps its checkpoint's {key!r}; only schedule.*, "
                "train.log_interval, train.ckpt_interval, train.max_keep and data.num_workers can change"
            )
    return apply_overrides(config, overrides)
