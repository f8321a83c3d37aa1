"""An installed optional package older than the floor in pyproject.toml is named, with its version."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from prolab_cli.embed import ST_FLOOR, ModelSpec, SentenceTransformerEncoder
from prolab_cli.errors import MissingDependencyError

REPO = Path(__file__).resolve().parent.parent


def test_embed_extra_floor_is_the_one_the_code_states():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^embed = \["' + re.escape(ST_FLOOR) + '"', pyproject, re.M), ST_FLOOR


def test_sentence_transformers_below_the_floor_is_named(tmp_path, monkeypatch):
    # the layout of sentence-transformers 5.3: Pooling lives in sentence_transformers.models
    old = tmp_path / "sentence_transformers"
    (old / "models").mkdir(parents=True)
    (old / "__init__.py").write_text('__version__ = "5.3.0"\nclass SentenceTransformer:\n    pass\n')
    (old / "models" / "__init__.py").write_text("class Pooling:\n    pass\n")
    def ours(name):
        return name == "sentence_transformers" or name.startswith("sentence_transformers.")

    real = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in real:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("minilm", tmp_path / "model", "test", "mean", True, 128)
    try:
        with pytest.raises(MissingDependencyError, match=r"sentence-transformers 5\.3\.0 is too old: .*>=5\.4") as info:
            SentenceTransformerEncoder(spec, "mean")
    finally:
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(real)
    assert info.value.extra == "embed"
