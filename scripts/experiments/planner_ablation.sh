#!/usr/bin/env bash
# Issue-3 comparison at equal budget on the held-out test split (numbers go into the issue note):
#   constant velocity | perception-free decoder | proposal planner without MTD | with MTD (random encoder)
#   | with MTD + V-JEPA-pretrained encoder (pretrained on the training video, no labels).
# Reuses the data of scripts/train_demo_model.sh (WORK_DIR); the "with MTD" arm is that script's run.
#   bash scripts/experiments/planner_ablation.sh WORK_DIR TEST_SCENES_DIR [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export OMP_NUM_THREADS=1
WORK="$1"; TEST="$2"; OUT="${3:-runs/ablation}"
EPOCHS="${EPOCHS:-15}"
PRETRAIN_STEPS="${PRETRAIN_STEPS:-600}"
mkdir -p "$OUT"
common=(--config tiny --data "$WORK/train" --val "$WORK/val" --nproc 1 --no-progress --set train.epochs="$EPOCHS")

[ -f "$OUT/no_mtd/model.safetensors" ] || drive-jepa train "${common[@]}" --out "$OUT/no_mtd" --set model.mtd=false
[ -f "$OUT/perception_free/model.safetensors" ] || drive-jepa train "${common[@]}" --out "$OUT/perception_free" \
  --set model.variant=perception_free --set model.mtd=false \
  --set "model.planner={d_model: 64, d_ffn: 128, num_heads: 4, head_hidden: 128}"  # tiny widths, no proposal keys
drive-jepa pretrain --data "$WORK/train" --out "$OUT/pretrain" --steps "$PRETRAIN_STEPS" --no-progress
[ -f "$OUT/mtd_pretrained/model.safetensors" ] || drive-jepa train "${common[@]}" --out "$OUT/mtd_pretrained" \
  --set model.encoder_checkpoint="$OUT/pretrain"

drive-jepa eval --agent constant-velocity --scenes "$TEST" --out "$OUT/eval_constant_velocity" --no-progress
for arm in perception_free no_mtd mtd_pretrained; do
  drive-jepa eval --model "$OUT/$arm" --best --scenes "$TEST" --out "$OUT/eval_$arm" --no-progress
done
drive-jepa eval --model "$WORK/run" --best --scenes "$TEST" --out "$OUT/eval_mtd" --no-progress
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = []
for arm in ("constant_velocity", "perception_free", "no_mtd", "mtd", "mtd_pretrained"):
    p = out / f"eval_{arm}" / "metrics.json"
    if p.exists():
        m = json.loads(p.read_text())
        rows.append({"arm": arm, **{k: m["summary"].get(k) for k in ("pdms", "epdms", "diversity")}})
(out / "ablation.json").write_text(json.dumps(rows, indent=2))
print(json.dumps(rows))
PY
