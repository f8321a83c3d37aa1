#!/usr/bin/env bash
# The main job on the embedded offline defaults. Grows as the pipeline stages land.
set -euo pipefail
OUT=${OUT:-demo_out}
mkdir -p "$OUT"
prolab classes cityscapes
prolab describe --classes cityscapes --llm local -o "$OUT/descriptions.json"
# Label space: embed with MiniLM (offline), k-means with K=32 as the paper uses for Cityscapes, build,
# inspect and plot. The local Gemma gives ~126 descriptions for the 19 classes (~4 per property at
# K=32, no collisions); the sweep shows the trade-off for other K.
prolab embed "$OUT/descriptions.json" --model minilm -o "$OUT/embeddings.safetensors"
prolab cluster "$OUT/embeddings.safetensors" --sweep 16,24,32,48
prolab cluster "$OUT/embeddings.safetensors" -k 32 --seed 0 -o "$OUT/clusters.safetensors"
prolab build --descriptions "$OUT/descriptions.json" --embeddings "$OUT/embeddings.safetensors" \
  --clusters "$OUT/clusters.safetensors" --name cityscapes-minilm-k32 -o "$OUT/label_spaces"
prolab inspect "$OUT/label_spaces/cityscapes-minilm-k32"
prolab inspect "$OUT/label_spaces/cityscapes-minilm-k32" --class car --similar car --plot "$OUT/cityscapes-minilm-k32.png"
