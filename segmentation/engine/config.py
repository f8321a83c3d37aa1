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
    return config


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
