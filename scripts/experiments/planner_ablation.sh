#!/usr/bin/env bash
# Issue-3 comparison at equal fine-tuning budget on the held-out test split (numbers go into the issue note):
#   constant velocity | perception-free decoder | proposal planner without MTD | with MTD (random encoder)
#   | with MTD + V-JEPA-pretrained encoder (pretrained on the training split's video, no labels).
# Training data as made by scripts/train_demo_model.sh (scenes with pseudo-teachers); the "mtd" arm is the recipe of
# the shipped demo model.
#   bash scripts/experiments/planner_ablation.sh TRAIN_DIR VAL_DIR TEST_DIR [OUT_DIR]
# ARMS="mtd no_mtd" runs a subset (e.g. two invocations side by side on 2 cores); finished arms are skipped, and the
# table is rebuilt from whatever evaluations exist. SEED=1 (with another OUT_DIR) repeats the arms with another
# initialization and data order, to see how much of a difference between arms is run-to-run noise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export OMP_NUM_THREADS=1
TRAIN="$1"; VAL="$2"; TEST="$3"; OUT="${4:-runs/ablation}"
EPOCHS="${EPOCHS:-20}"
SEED="${SEED:-0}"
PRETRAIN_DATA="${PRETRAIN_DATA:-$TRAIN}"  # any split-train video; no labels are used
PRETRAIN_STEPS="${PRETRAIN_STEPS:-1200}"
ARMS="${ARMS:-constant_velocity mtd no_mtd perception_free mtd_pretrained}"
mkdir -p "$OUT"
common=(--data "$TRAIN" --val "$VAL" --nproc 1 --no-progress --set train.epochs="$EPOCHS" --set train.seed="$SEED")

train_arm() {  # ARM CONFIG [--set …]: train once, then evaluate the best validation checkpoint on the test split
  local arm="$1"
  local config="$2"; shift 2
  [ -f "$OUT/$arm/model.safetensors" ] || drive-jepa train --config "$config" "${common[@]}" --out "$OUT/$arm" "$@"
  [ -f "$OUT/eval_$arm/metrics.json" ] || drive-jepa eval --model "$OUT/$arm" --best --scenes "$TEST" \
    --out "$OUT/eval_$arm" --no-progress
}

for arm in $ARMS; do
  case "$arm" in
    constant_velocity)
      [ -f "$OUT/eval_$arm/metrics.json" ] || drive-jepa eval --agent constant-velocity --scenes "$TEST" \
        --out "$OUT/eval_$arm" --no-progress ;;
    mtd) train_arm mtd tiny ;;
    no_mtd) train_arm no_mtd tiny --set model.mtd=false ;;
    perception_free) train_arm perception_free perception_free_tiny ;;
    mtd_pretrained)
      [ -f "$OUT/pretrain/target_encoder.safetensors" ] || drive-jepa pretrain \
        --data "$PRETRAIN_DATA" --out "$OUT/pretrain" --steps "$PRETRAIN_STEPS" --no-progress
      train_arm mtd_pretrained tiny --set model.encoder_checkpoint="$OUT/pretrain" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
done

python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = []
for arm in ("constant_velocity", "perception_free", "no_mtd", "mtd", "mtd_pretrained"):
    path = out / f"eval_{arm}" / "metrics.json"
    if path.exists():
        summary = json.loads(path.read_text())["summary"]
        rows.append({"arm": arm, **{k: summary.get(k) for k in ("pdms", "epdms", "diversity")},
                     "v2": summary.get("v2"), "num_scenes": summary.get("num_scenes")})
(out / "ablation.json").write_text(json.dumps(rows, indent=2))
print("| arm | PDMS | EPDMS | D |\n|---|---|---|---|")
for r in rows:
    d = "" if r["diversity"] is None else f"{r['diversity']:.3f}"
    print(f"| {r['arm']} | {r['pdms']:.3f} | {r['epdms']:.3f} | {d} |")
PY
