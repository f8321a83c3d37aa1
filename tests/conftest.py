"""Shared test set-up: every test gets its own empty prolab cache; compiled ops are kept per checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"

# Compiled extensions survive between tests (and between local runs of the suite).
os.environ.setdefault("PROLAB_BUILD_DIR", str(REPO / ".pytest_build"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path_factory.mktemp("prolab_cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """``tests/data``: outputs and key layouts of the original code (``golden/``, ``checkpoint_keys/``),
    copied from the reference run with their SHA256 recorded (checked by test_reference_data.py)."""
    return DATA
