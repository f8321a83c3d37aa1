"""The library (label-space stages, segmentation stack, errors) imports no CLI framework: only
``prolab_cli.cli`` and the ``commands`` packages may import click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Imports every library module in a fresh interpreter and reports which of them pulled in click.
# A module whose own optional third-party dependency is missing is reported as skipped.
_PROBE = r"""
import importlib, json, pkgutil, sys

def is_cli(name):
    return name == "prolab_cli.cli" or name == "prolab_cli.__main__" or ".commands" in name

names = []
for package in ("prolab_cli", "segmentation"):
    module = importlib.import_module(package)
    names.append(package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".") if not is_cli(m.name)]
imported, skipped, culprits = [], {}, []
for name in names:
    before = "click" in sys.modules
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("prolab_cli", "segmentation"):
            raise
        skipped[name] = exc.name
        continue
    imported.append(name)
    if not before and "click" in sys.modules:
        culprits.append(name)
print(json.dumps({"imported": imported, "skipped": skipped, "culprits": culprits,
                  "click": "click" in sys.modules}))
"""


def _probe() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_library_modules_do_not_import_click():
    result = _probe()
    assert not result["culprits"], f"these modules import click: {result['culprits']}"
    assert not result["click"]
    # the probe really walked both packages, down to the deep modules
    for name in ("prolab_cli.errors", "prolab_cli.pipeline", "prolab_cli.llm.retry", "segmentation.engine.train",
                 "segmentation.engine.logger", "segmentation.data.datasets", "segmentation.ops.dispatch",
                 "segmentation.models.segmentor"):
        assert name in result["imported"], (name, result["skipped"])
    assert not any(".commands" in name or name == "prolab_cli.cli" for name in result["imported"])


def test_the_cli_turns_a_library_error_into_one_line_and_exit_1(tmp_path):
    from click.testing import CliRunner

    from prolab_cli.cli import main
    from prolab_cli.errors import InputError, ProlabError

    assert issubclass(InputError, ProlabError) and not any(
        "click" in cls.__module__ for cls in ProlabError.__mro__
    )
    missing = tmp_path / "nope.json"
    res = CliRunner().invoke(main, ["inspect", str(missing)])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(missing) in lines[0], res.output
    assert "Traceback" not in res.output


def test_errors_keep_their_message_and_extra_across_pickling():
    import pickle

    from prolab_cli.errors import MissingDependencyError

    err = pickle.loads(pickle.dumps(MissingDependencyError("needs torch: pip install 'prolab[seg]'", "seg")))
    assert type(err) is MissingDependencyError
    assert err.message == str(err) == "needs torch: pip install 'prolab[seg]'" and err.extra == "seg"
