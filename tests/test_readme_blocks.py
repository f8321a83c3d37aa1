"""The README's runnable blocks (marked ``<!-- runs in tests/test_readme_blocks.py -->``) run as written, in
a fresh folder, with the installed ``prolab`` on PATH: a block that fails as written fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MARK = "<!-- runs in tests/test_readme_blocks.py -->"


def marked_blocks() -> list[tuple[int, str]]:
    """(line number, bash text) of every block that follows the mark."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == MARK:
            assert lines[i + 1].startswith("```bash"), f"README.md:{i + 2}: the mark must precede a ```bash block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            blocks.append((i + 3, "\n".join(lines[i + 2:end])))
    return blocks


BLOCKS = marked_blocks()


def test_the_readme_marks_its_runnable_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("line, script", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs_as_written(line, script, tmp_path):
    (tmp_path / "segmentation").symlink_to(REPO / "segmentation")  # configs named by their checkout path
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"README.md:{line}: the block failed:\n{proc.stderr[-3000:]}"
    commands = [c for c in re.findall(r"^prolab [a-z-]+", script, re.M)]
    assert commands, "a block without prolab commands"
