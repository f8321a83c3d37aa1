#!/usr/bin/env bash
# One prepared run for a machine with NVIDIA GPUs (the `device` tool of a session that is lent one):
#   1. the kernels' self-check and `prolab ops status --check` on CUDA,
#   2. the CUDA tests (pytest -m cuda),
#   3. bench/msda.py --device cuda (compiled vs reference, forward+backward, memory),
#   4. one fp16 training step of the nano model with the loss scaler at 512,
#   5. a short DDP run on every visible GPU (torchrun),
# then one summary line per step. Needs a CUDA build of torch and the CUDA toolkit (CUDA_HOME) on the
# machine; it installs nothing. Usage: bash bench/gpu_check.sh [OUT_DIR]   (default: $OUT or gpu_check_out)
# GPU_CHECK_DEVICE=cpu rehearses it without a GPU (tests/test_gpu_check.py): steps 1-3 are skipped, the
# training steps run on the CPU (fp16 falls back to fp32, as train says) and DDP uses 2 processes (gloo).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PROLAB_CACHE=${PROLAB_CACHE:-$OUT/cache} PROLAB_BUILD_DIR=${PROLAB_BUILD_DIR:-$OUT/build}
declare -a SUMMARY
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the outcome
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then SUMMARY+=("PASS  $name ($((SECONDS - start)) s)")
  else SUMMARY+=("FAIL  $name ($((SECONDS - start)) s): $(tail -n 1 "$OUT/$name.log")"); fi
}

DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [ "$DEVICE" != cuda ] && [ "$DEVICE" != cpu ]; then
  echo "gpu_check: GPU_CHECK_DEVICE=$DEVICE: choose cuda (default) or cpu"
  exit 2
elif [ "$DEVICE" = cpu ]; then
  DDP_PROCS=2
  SUMMARY+=("SKIP  self-check, ops-status, cuda-tests, msda-bench (GPU_CHECK_DEVICE=cpu rehearsal)")
elif ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device here ($($PY -c 'import torch; print(torch.__version__, torch.version.cuda)'))"
  exit 2
else
  DDP_PROCS=$($PY -c "import torch; print(torch.cuda.device_count())")
fi
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])" | tee "$OUT/devices.txt"

if [ "$DEVICE" = cuda ]; then
  step self-check $PY -c "
from segmentation.ops import dispatch
from segmentation.ops.self_check import compare
ok, why = dispatch.compiled_available('cuda')
assert ok, why
result = compare('cuda')
print(result.line())
raise SystemExit(0 if result.ok else 1)"
  step ops-status $PY -m prolab_cli.cli ops status --check
  step cuda-tests $PY -m pytest -q -m cuda tests
  step msda-bench $PY bench/msda.py --device cuda --repeats 5 --json "$OUT/msda_cuda.json"
fi

DATA="$OUT/synth"
step synth-data bash -c "$PY -m prolab_cli.cli data synth --layout ade20k --out-dir '$DATA/data' --train 32 --val 8 -q &&
  $PY -m prolab_cli.cli embed '$DATA/data/descriptions.json' -q -o '$DATA/emb.safetensors' &&
  $PY -m prolab_cli.cli cluster '$DATA/emb.safetensors' -k 20 --distinct -q -o '$DATA/clu.safetensors' &&
  $PY -m prolab_cli.cli build --embeddings '$DATA/emb.safetensors' --clusters '$DATA/clu.safetensors' --name synth-k20 --out-dir '$DATA'"
step fp16-step $PY -m prolab_cli.cli train --config synth-vit-adapter-nano --data-root "$DATA/data" \
  --label-space "$DATA/synth-k20" --map-classes-by-name --work-dir "$OUT/fp16" --device "$DEVICE" -q \
  --set schedule.max_iters=1 --set train.amp=fp16 --set train.loss_scale=512 --set train.log_interval=1
step ddp $PY -m torch.distributed.run --nproc_per_node "$DDP_PROCS" --master_port 29531 -m prolab_cli.cli train \
  --config synth-vit-adapter-nano --data-root "$DATA/data" --label-space "$DATA/synth-k20" --map-classes-by-name \
  --work-dir "$OUT/ddp" --device "$DEVICE" -q --set schedule.max_iters=5 --set data.batch_size=2 --set train.log_interval=1

echo
echo "gpu_check summary (DDP: $DDP_PROCS processes on $DEVICE; logs in $OUT/):"
printf '  %s\n' "${SUMMARY[@]}"
[ -f "$OUT/msda_cuda.json" ] && echo "  msda: $OUT/msda_cuda.json"
! printf '%s\n' "${SUMMARY[@]}" | grep -q '^FAIL'
