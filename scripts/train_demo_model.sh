#!/usr/bin/env bash
# Reproduce the planner checkpoint shipped for `drive-jepa demo`
# (src/drive_jepa_core/drive_jepa_core/assets/demo_model/): tiny proposal planner with multimodal trajectory
# distillation, trained on the built-in world (300 scenes, 20 epochs, constant LR). Measured from a fresh clone on
# 2 idle CPU cores: 14.6 min (scene generation 2.5, k-means 0.2, pseudo-teachers 1.2, training 10.7), and the best
# checkpoint's weights equal the shipped ones bit for bit. The "mtd" arm of scripts/experiments/planner_ablation.sh
# is the same recipe.
#   bash scripts/train_demo_model.sh [WORK_DIR]       (default WORK_DIR=runs/demo_model_work)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export OMP_NUM_THREADS=1
WORK="${1:-runs/demo_model_work}"
TRAIN_SCENES="${TRAIN_SCENES:-300}"
EPOCHS="${EPOCHS:-20}"
VOCAB_K="${VOCAB_K:-2048}"
mkdir -p "$WORK"

# 1. Data: training scenes with camera frames, validation scenes, and frame-less scenes for the vocabulary only
#    (k-means needs many more futures than we train on). Disjoint seed ranges per split; the vocabulary scenes use an
#    offset inside the train range that the training scenes never reach.
[ -f "$WORK/train/index.json" ] || drive-jepa world generate --split train --scenes "$TRAIN_SCENES" --out "$WORK/train" --workers 2
[ -f "$WORK/val/index.json" ] || drive-jepa world generate --split val --scenes 30 --out "$WORK/val" --workers 2
[ -f "$WORK/vocab_scenes/index.json" ] || drive-jepa world generate --split train --scenes 4000 --seed 100000 \
  --no-frames --out "$WORK/vocab_scenes" --workers 2

# 2. Multimodal trajectory distillation data: vocabulary + simulator-scored pseudo-teachers per training scene.
[ -f "$WORK/vocab.npy" ] || drive-jepa vocab build --scenes "$WORK/vocab_scenes" --out "$WORK/vocab.npy" --k "$VOCAB_K"
drive-jepa vocab score --scenes "$WORK/train" --vocab "$WORK/vocab.npy" --workers 2

# 3. Train (one process; add --nproc 2 for gloo DDP) and keep the best validation checkpoint.
drive-jepa train --config tiny --data "$WORK/train" --val "$WORK/val" --out "$WORK/run" --nproc 1 \
  --set train.epochs="$EPOCHS"
echo "trained: $WORK/run  (copy best.safetensors / best.json as model.safetensors / model.json into src/drive_jepa_core/drive_jepa_core/assets/demo_model/)"
