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

# --- Segmentation (issue 6): a synthetic dataset in the ADE20K layout whose classes are
# (colour, texture, shape) triples, its label space through the same stages, about a minute of
# training of the nano ViT-Adapter on CPU, evaluation (seen classes, then the held-out classes
# through the full artifact's class rows over the same centres) and property maps of predictions.
SYN="$OUT/synth"
prolab data synth --layout ade20k --out "$SYN/data" --train 96 --val 24
prolab embed "$SYN/data/descriptions.json" --model minilm -q -o "$SYN/embeddings.safetensors"
prolab cluster "$SYN/embeddings.safetensors" -k 16 --seed 0 -o "$SYN/clusters.safetensors"
prolab build --descriptions "$SYN/data/descriptions.json" --embeddings "$SYN/embeddings.safetensors" \
  --clusters "$SYN/clusters.safetensors" --name synth-all-k16 -o "$SYN/label_spaces"
prolab data subset-space "$SYN/label_spaces/synth-all-k16" --classes "$SYN/data/descriptions_seen.json" \
  --name synth-seen-k16 -o "$SYN/label_spaces"
rm -rf "$SYN/run"
prolab train --config synth-vit-adapter-nano --data-root "$SYN/data" \
  --label-space "$SYN/label_spaces/synth-seen-k16" --work-dir "$SYN/run" --set schedule.max_iters=600 --threads 1
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" -o "$SYN/eval-seen.json" --threads 1
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" \
  --label-space "$SYN/label_spaces/synth-all-k16" -o "$SYN/eval-all.json" --threads 1
prolab predict "$SYN"/data/images/validation/synth_val_0000[0-3].jpg --checkpoint "$SYN/run" \
  --label-space "$SYN/label_spaces/synth-all-k16" --out "$SYN/predict" --threads 1
