#!/usr/bin/env bash
# Compile-only check of the CUDA deformable-attention kernels (csrc/) against the CUDA build of
# torch, on a machine without a GPU. Builds the `cuda` variant (C++ CPU + CUDA kernels) in its
# own venv, loads it and checks that CUDA implementations were registered. Exits non-zero when
# compiling, linking or loading fails. The venv (.venv-cuda) is reused when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CUDA_VENV:-.venv-cuda}
TORCH_VERSION=2.14.1   # CUDA 13.0, matches the system nvcc 13.0
start=$(date +%s)

if ! "$VENV/bin/python" -c "import sys, torch; sys.exit(not (torch.__version__.startswith('$TORCH_VERSION') and torch.version.cuda))" 2>/dev/null; then
  echo "cuda-check: creating $VENV with torch==$TORCH_VERSION (CUDA build)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" ninja click numpy
fi
echo "cuda-check: venv ready after $(( $(date +%s) - start )) s"

# the nvcc on PATH is a wrapper; torch's guess (/usr/local) fails to link -lcudart
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
export PROLAB_BUILD_DIR=${PROLAB_BUILD_DIR:-$PWD/.pytest_build}
export PROLAB_CACHE=${PROLAB_CACHE:-$PWD/.pytest_build/cache}
export MAX_JOBS=${MAX_JOBS:-2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$VENV/bin/python" - <<'PY'
import sys

import torch

from segmentation.ops import build

try:
    result = build.build_and_load("cuda")
except build.BuildError as exc:
    print(exc.details, file=sys.stderr)
    sys.exit(f"cuda-check: FAILED: {exc.message}")
for op in ("prolab::ms_deform_attn", "prolab::ms_deform_attn_backward"):
    for key in ("CPU", "CUDA"):
        if not torch._C._dispatch_has_kernel_for_dispatch_key(op, key):
            sys.exit(f"cuda-check: FAILED: {op} has no {key} kernel in {result.library}")
what = "compiled" if result.compiled else "up to date"
print(f"cuda-check: OK, {what} in {result.seconds:.0f} s for {build.cuda_archs()}: {result.library}")
PY
echo "cuda-check: done in $(( $(date +%s) - start )) s"
