#!/usr/bin/env bash
# `make demo`: a guided tour on the offline defaults. Each stage prints one "==>" line saying what it
# does and where it writes, then the command's own output. DEMO_QUICK=1 (CI) runs the same stages on
# fewer images and iterations.
set -euo pipefail
OUT=${OUT:-demo_out}
SYN="$OUT/synth"
if [ "${DEMO_QUICK:-0}" = 1 ]; then TRAIN=48; VAL=12; ITERS=150; else TRAIN=96; VAL=24; ITERS=600; fi
mkdir -p "$OUT"
step=0
stage() { step=$((step + 1)); printf '\n==> %d. %s\n' "$step" "$*"; }
say() { printf '    %s\n' "$@"; }

echo "prolab demo: ready-made property-level label spaces, your own classes added to one, then a"
echo "segmentation model trained on properties that names classes it never saw (offline, CPU, a few minutes)."
echo "Everything is written under $OUT/."

stage "The label spaces prolab ships (reviewed descriptions, MiniLM, the paper's K); any name works as --label-space"
prolab label-spaces

stage "Inside the Cityscapes one: the properties of 'car' and its nearest classes -> $OUT/cityscapes.png (class x property matrix)"
prolab inspect cityscapes --class car --similar car --top 3 --plot "$OUT/cityscapes.png"

stage "Your own classes: describe them -> $OUT/my_descriptions.json"
printf 'fire hydrant\nbus stop\nzebra crossing\nspeed bump\n' > "$OUT/my_classes.txt"
say "prolab serves its shipped descriptions where it has the class, and asks the local model for the rest."
prolab describe --classes "$OUT/my_classes.txt" --min 2 -o "$OUT/my_descriptions.json" \
  || say "(the local model gave too few usable lines for a class: it is left out of the file)"
say "The local model is Gemma-3-270M: read what it wrote before you rely on it. Here it is:"
python3 - "$OUT/my_descriptions.json" "$OUT/my_descriptions.provenance.json" <<'EOF'
import json, sys
descriptions, provenance = (json.load(open(path)) for path in sys.argv[1:])
shipped = provenance.get("shipped", {}).get("classes", {})
for name, lines in descriptions.items():
    source = f"shipped ({shipped[name][0]})" if name in shipped else "local model"
    print(f"    {name} [{source}]: " + "; ".join(lines[:4]) + ("; ..." if len(lines) > 4 else ""))
EOF

stage "Add them to the Cityscapes space over the same properties -> $OUT/label_spaces/cityscapes-plus/"
say "The centres stay the same, so a model trained on Cityscapes could label these classes too."
prolab extend cityscapes --descriptions "$OUT/my_descriptions.json" --out-dir "$OUT/label_spaces" --name cityscapes-plus

# Segmentation: a synthetic dataset whose classes are (colour, texture, shape) objects; some classes only
# appear in validation. The model learns properties, so it can name those through their descriptions.
stage "A synthetic dataset: coloured, textured shapes, 12 classes seen in training and 4 held out -> $SYN/data/"
prolab data synth --layout ade20k --out-dir "$SYN/data" --train "$TRAIN" --val "$VAL"

stage "Its label space: embed the descriptions, choose K, cluster, build -> $SYN/label_spaces/synth-k20/"
prolab embed "$SYN/data/descriptions.json" --model minilm -q -o "$SYN/embeddings.safetensors"
say "A sweep first: the smallest K whose rows tell every class apart (collisions 0) is the one to take."
prolab cluster "$SYN/embeddings.safetensors" --sweep 12,16,20,24 --distinct
prolab cluster "$SYN/embeddings.safetensors" -k 20 --distinct --seed 0 -q -o "$SYN/clusters.safetensors"
prolab build --descriptions "$SYN/data/descriptions.json" --embeddings "$SYN/embeddings.safetensors" \
  --clusters "$SYN/clusters.safetensors" --name synth-k20 --out-dir "$SYN/label_spaces"

stage "The rows of the seen classes only, for training -> $SYN/label_spaces/synth-seen-k20/"
prolab extend "$SYN/label_spaces/synth-k20" --keep "$SYN/data/descriptions_seen.json" --name synth-seen-k20 \
  --out-dir "$SYN/label_spaces"

stage "Train the nano ViT-Adapter with a property head on the seen classes, $ITERS iterations -> $SYN/run/"
say "model.bank_basis=span: the head scores pixels in the centres' span, the setting in which this small"
say "model learns properties from scratch (the paper's basis collapses here; see README, Classes never trained on)."
rm -rf "$SYN/run"
prolab train --config synth-vit-adapter-nano --data-root "$SYN/data" --label-space "$SYN/label_spaces/synth-seen-k20" \
  --map-classes-by-name --work-dir "$SYN/run" --set schedule.max_iters="$ITERS" --set model.bank_basis=span --threads 1

stage "Evaluate on the seen classes -> $SYN/eval-seen.json"
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" --map-classes-by-name -o "$SYN/eval-seen.json" \
  --threads 1 -q | tail -n 1

stage "Evaluate on every class, the held-out ones named through the full label space -> $SYN/eval-all.json"
prolab eval --checkpoint "$SYN/run" --data-root "$SYN/data" --label-space "$SYN/label_spaces/synth-k20" \
  -o "$SYN/eval-all.json" --threads 1 -q | tail -n 1
python3 - "$SYN/eval-all.json" "$SYN/data/synth.json" <<'EOF'
import json, sys
metrics, world = (json.load(open(path)) for path in sys.argv[1:])
per_class = {row["class"]: row["IoU"] for row in metrics.get("per_class", [])}
held = [(name, per_class.get(name)) for name in world["heldout"]]
print("    Held-out classes (never in a training image), IoU %:")
for name, iou in held:
    print(f"      {name:<28} {'-' if iou is None else f'{iou:.1f}'}")
print("    Above 0 means the model found such objects from their colour, texture and shape properties alone;")
print("    a one-hot model scores 0 on every one of them by construction.")
EOF

stage "Predict 4 validation images: masks, overlays with a legend, and property maps -> $SYN/predict/"
prolab predict "$SYN"/data/images/validation/synth_val_0000[0-3].jpg --checkpoint "$SYN/run" \
  --label-space "$SYN/label_spaces/synth-k20" --map-classes-by-name --out-dir "$SYN/predict" --threads 1 -q

cat <<EOF

Done. Where everything is:
  $OUT/cityscapes.png                 the shipped Cityscapes space, class x property
  $OUT/my_descriptions.json           your classes' descriptions (+ .provenance.json: where each came from)
  $OUT/label_spaces/cityscapes-plus/  Cityscapes plus your classes, same properties
  $SYN/run/                           the trained model;  $SYN/eval-*.json its metrics
  $SYN/predict/                       *_overlay.png, *_mask.png, *_<class>_p<k>.png property maps
Three things to try next:
  prolab inspect ade20k --property 0
      (a property of the shipped ADE20K space: its name, classes and member descriptions)
  prolab train --config ade20k-vit-adapter-b-prolab --data-root ADEChallengeData2016 --label-space ade20k --work-dir run
      (the paper's ADE20K row on the shipped label space; needs the dataset and a GPU)
  prolab describe --classes my_classes.txt --llm gpt-3.5 -j 8 -o my_descriptions.json
      (an API model for classes prolab does not ship; needs OPENAI_API_KEY)
EOF
