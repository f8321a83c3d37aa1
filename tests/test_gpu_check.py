"""bench/gpu_check.sh rehearsed on the CPU (GPU_CHECK_DEVICE=cpu): its data, fp16 and DDP steps run as
written, so that the rare session with a GPU does not spend its minutes on a broken script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_rehearsal_on_cpu(tmp_path):
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", PYTHON=sys.executable, PROLAB_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=900)
    summary = result.stdout[result.stdout.index("gpu_check summary"):]
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("synth-data", "fp16-step", "ddp"):
        assert f"PASS  {step}" in summary, summary
    assert "SKIP  self-check, ops-status, cuda-tests, msda-bench" in summary
    fp16_log = (tmp_path / "out" / "fp16-step.log").read_text()
    assert "train.amp=fp16 needs CUDA: this CPU run trains in fp32" in fp16_log  # said, not silent
    assert (tmp_path / "out" / "ddp" / "iter_5.pth").is_file(), summary


def test_gpu_check_refuses_an_unknown_device(tmp_path):
    env = dict(os.environ, GPU_CHECK_DEVICE="tpu", PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "GPU_CHECK_DEVICE=tpu: choose cuda (default) or cpu" in result.stdout
