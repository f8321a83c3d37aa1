#!/usr/bin/env bash
# `make demo`: the whole job on the embedded offline defaults, as a guided tour. Each stage prints
# one "==>" line saying what it makes and where, then the command's own short summary.
set -euo pipefail
OUT=${OUT:-demo_out}
SYN="$OUT/synth"
mkdir -p "$OUT"
step=0
stage() { step=$((step + 1)); printf '\n==> %d. %s\n' "$step" "$*"; }

echo "prolab demo: a property-level label space for Cityscapes, then a segmentation model trained on one"
echo "(offline, on CPU, a few minutes; everything is written under $OUT/)."

stage "Describe the 19 Cityscapes classes with the local Gemma model -> $OUT/descriptions.json"
prolab describe --classes cityscapes --llm local -q -o "$OUT/descriptions.json"

# MiniLM (offline); K=32 as the paper uses for Cityscapes. The local Gemma gives ~126 descriptions
# for the 19 classes (~4 per property at K=32, no collisions).
stage "Embed every description with MiniLM -> $OUT/embeddings.safetensors"
prolab embed "$OUT/descriptions.json" --model minilm -q -o "$OUT/embeddings.safetensors"

stage "Choose K: inertia, silhouette and classes with identical rows for a few K"
prolab cluster "$OUT/embeddings.safetensors" --sweep 16,24,32,48 -q

stage "Cluster the descriptions into K=32 properties -> $OUT/clusters.safetensors"
prolab cluster "$OUT/embeddings.safetensors" -k 32 --seed 0 -q -o "$OUT/clusters.safetensors"

stage "Build the versioned label-space artifact -> $OUT/label_spaces/cityscapes-minilm-k32/"
prolab build --descriptions "$OUT/descriptions.json" --embeddings "$OUT/embeddings.safetensors" \
  --clusters "$OUT/clusters.safetensors" --name cityscapes-minilm-k32 --out-dir "$OUT/label_spaces"

stage "Look inside: the properties of 'car', its nearest classes, the matrix -> $OUT/cityscapes-minilm-k32.png"
prolab inspect "$OUT/label_spaces/cityscapes-minilm-k32" --class car --similar car --top 3 \
  --plot "$OUT/cityscapes-minilm-k32.png"

# Segmentation: a synthetic dataset in the ADE20K layout whose classes are (colour, texture, shape)
# triples, its label space through the same stages, about a minute of training of the nano
# ViT-Adapter on CPU, evaluation on the seen classes, then on the held-out ones through the full
# artifact's class rows over the same centres, and property maps of predictions.
stage "Write a synthetic dataset (12 seen + 4 held-out classes, ADE20K layout) -> $SYN/data/"
prolab data synth --layout ade20k --out-dir "$SYN/data" --train 96 --val 24 -q

stage "Its label space over all 16 classes (K=16) -> $SYN/label_spaces/synth-all-k16/"
prolab embed "$SYN/data/descriptions.json" --model minilm -q -o "$SYN/embeddings.safetensors"
prolab cluster "$SYN/embeddings.safetensors" -k 16 --seed 0 -q -o "$SYN/clusters.safetensors"
prolab build --descriptions "$SYN/data/descriptions.json" --embeddings "$SYN/embeddings.safetensors" \
  --clusters "$SYN/clusters.safetensors" --name synth-all-k16 --out-dir "$SYN/label_spaces"

stage "The seen classes' rows of it, for training -> $SYN/label_spaces/synth-seen-k16/"
prolab data subset-space "$SYN/label_spaces/synth-all-k16" --classes "$SYN/data/descriptions_seen.json" \
  --name synth-seen-k16 --out-dir "$SYN/label_spaces"

stage "Train the nano ViT-Adapter (property head, seen classes only) for 600 iterations (~1 min) -> $SYN/run/"
rm -rf "$SYN/run"
prolab train --config synth-vit-adapter-nano --data-root "$SYN/data" \
  --label-space "$SYN/label_spaces/synth-seen-k16" --map-classes-by-name --work-dir "$SYN/run" \
  --set schedule.max_iters=600 --threads 1 -q

stage "Evaluate on the seen classes -> $SYN/eval-seen.json"
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" --map-classes-by-name -o "$SYN/eval-seen.json" \
  --threads 1 -q | tail -n 1

stage "Evaluate on all classes, held-out ones named through the full label space -> $SYN/eval-all.json"
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" --label-space "$SYN/label_spaces/synth-all-k16" \
  -o "$SYN/eval-all.json" --threads 1 -q

stage "Predict 4 validation images: masks, overlays and property maps -> $SYN/predict/"
prolab predict "$SYN"/data/images/validation/synth_val_0000[0-3].jpg --checkpoint "$SYN/run" \
  --label-space "$SYN/label_spaces/synth-all-k16" --map-classes-by-name --out-dir "$SYN/predict" --threads 1 -q

cat <<EOF

Done: everything above is in $OUT/. Three things to try next:
  prolab inspect $OUT/label_spaces/cityscapes-minilm-k32 --property 0
      (which classes share property 0, and its descriptions)
  prolab predict YOUR_PHOTO.jpg --checkpoint $SYN/run --label-space $SYN/label_spaces/synth-all-k16 --map-classes-by-name --out-dir pred/
      (masks, overlays and property maps for your own images)
  prolab describe --classes my_classes.txt --llm gpt-3.5 -j 8 -o my_descriptions.json
      (your own classes described by an API model; needs OPENAI_API_KEY, then embed, cluster, build as above)
EOF
