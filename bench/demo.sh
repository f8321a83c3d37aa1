#!/usr/bin/env bash
# The main job on the embedded offline defaults. Grows as the pipeline stages land.
set -euo pipefail
OUT=${OUT:-demo_out}
mkdir -p "$OUT"
prolab classes cityscapes
prolab describe --classes cityscapes --llm local -o "$OUT/descriptions.json"
