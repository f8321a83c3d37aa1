"""Where prolab keeps its cache, compiled ops and shipped data (prompts, class lists)."""

from __future__ import annotations

import os
import importlib.util
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache directory: ``$PROLAB_CACHE`` or the user's cache dir (``~/.cache/prolab``)."""
    env = os.environ.get("PROLAB_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("prolab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_dir() -> Path:
    """Where compiled extensions go: ``$PROLAB_BUILD_DIR`` or ``<cache_dir>/build``."""
    env = os.environ.get("PROLAB_BUILD_DIR")
    path = Path(env).expanduser() if env else cache_dir() / "build"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(name: str) -> Path:
    """A shipped data folder (``prompts``, ``label_spaces``) from a checkout or an installed wheel.

    In a checkout the top-level folder is used; an installed wheel carries the same folder as the
    package ``prolab_cli._<name>`` (see ``DATA`` in setup.py).
    """
    checkout = _CHECKOUT_ROOT / name
    if checkout.is_dir() and (_CHECKOUT_ROOT / "pyproject.toml").is_file():
        return checkout
    # the wheel's data folders are namespace packages (no __init__.py): ask the import system
    spec = importlib.util.find_spec(f"prolab_cli._{name}")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"prolab data folder {name!r} is missing from this installation")
    return Path(list(spec.submodule_search_locations)[0])
