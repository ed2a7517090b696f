#!/bin/bash
# Tags from the heads blended with the votes of the nearest training photos (--neighbours), on the
# encoder of ../tagging-teachers/ (rebuilt there by its run.sh when $INIT is missing; this session
# rebuilt it by that command and resumed it to its fitted length: `mvlt pretrain --out $INIT --resume
# --max-minutes 10`). Same protocol as ../tagging-distilled/: one run of the kd_tags recipe with the
# repaired probe trains on 85 % of the train split; every checkpoint is scored on the held-out 15 %
# ("val"), heads alone and with every (k, temperature, weight) of experiments/tagging/neighbour_sweep.py;
# the best on val is the only setting scored on the test split. Run under `flock /tmp/mvlt-cpu.lock`.
set -e
cd "$(dirname "$0")/../../.."
PY=".venv/bin/python -m mvlt"
INIT=${INIT:-/work/tta/ti/train}
OUT=${OUT:-/work/tagexp}
NAME=kdtags-5k
COLS=colour,pattern,garment_group,index_group
KEPT=docs/results/tagging-neighbours
[ -d "$INIT" ] || { echo "no encoder at $INIT: run docs/results/tagging-teachers/run.sh first" >&2; exit 2; }
.venv/bin/python docs/results/tagging/make_val_slice.py
if [ ! -d "$OUT/$NAME/train/checkpoints" ]; then
  $PY finetune --init $INIT --data /tmp/hm-val/metadata.csv --labels $COLS --lr 1e-3 --augment flip,crop \
    --teachers image,tags --objectives tags,kd_image,kd_tags --steps 5000 --checkpoint-every 1000 \
    --keep-checkpoints 5 --threads 2 --no-progress --no-tensorboard --out $OUT/$NAME/train 2>&1 | tail -1
fi
cp $OUT/$NAME/train/train.log $KEPT/train-$NAME.log
for CKPT in "$OUT/$NAME"/train/checkpoints/step-*; do
  STEP=$(basename "$CKPT")
  [ -f "$OUT/$NAME/eval-val-$STEP/metrics.json" ] || $PY evaluate --task tagging --checkpoint "$CKPT" \
    --data /tmp/hm-val/metadata.csv --split val --out "$OUT/$NAME/eval-val-$STEP" --threads 2 --no-progress > /dev/null
  cp "$OUT/$NAME/eval-val-$STEP/metrics.json" "$KEPT/val-$NAME-$STEP.json"
  [ -f "$KEPT/sweep-val-$STEP.json" ] || .venv/bin/python experiments/tagging/neighbour_sweep.py --checkpoint "$CKPT" \
    --data /tmp/hm-val/metadata.csv --split val --out "$KEPT/sweep-val-$STEP.json"
done
# The best (checkpoint, k, temperature, weight) on val, scored once on test through the command line.
read -r STEP K T W < <(.venv/bin/python - "$KEPT" <<'PY'
import json, sys
from pathlib import Path
sweeps = {p: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("sweep-val-*.json"))}
path = max(sweeps, key=lambda p: sweeps[p]["best"]["mean"])
b = sweeps[path]["best"]
print(path.stem.removeprefix("sweep-val-"), b["k"], b["temperature"], b["weight"])
PY
)
echo "== selected on val: $STEP k=$K temperature=$T weight=$W"
$PY evaluate --task tagging --checkpoint "$OUT/$NAME/train/checkpoints/$STEP" --data ../shared/data/hm_fashion_11k/metadata.csv \
  --neighbours ../shared/data/hm_fashion_11k/metadata.csv --neighbours-k "$K" --neighbours-temperature "$T" \
  --neighbour-weight "$W" --out $OUT/eval-test --threads 2 --no-progress
cp $OUT/eval-test/metrics.json $KEPT/test-selected.json
.venv/bin/python experiments/tagging/column_lookup.py --data ../shared/data/hm_fashion_11k/metadata.csv \
  --target index_group --given garment_group --given garment_group,subcategory \
  --given garment_group,subcategory,colour,pattern --out $KEPT/column_lookup_index_group.json
date -u
