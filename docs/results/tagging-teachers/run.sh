#!/bin/bash
# Tag heads on the encoder of the time-to-accuracy run with both teachers' targets
# (docs/results/time_to_accuracy/itc_itm_kd_text_image.json, its model kept in /work/tta/ti/train).
# Same protocol as ../tagging/run.sh: train on 85 % of the train split, pick the checkpoint on the
# held-out 15 % ("val"), score only that one on the test split, with `mvlt evaluate --task tagging`.
set -e
cd "$(dirname "$0")/../../.."
PY=".venv/bin/python -m mvlt"
INIT=${INIT:-/work/tta/ti/train}
OUT=${OUT:-/tmp/tagheads-teachers}
COLS=colour,pattern,garment_group,index_group
.venv/bin/python docs/results/tagging/make_val_slice.py
date -u
$PY finetune --init $INIT --data /tmp/hm-val/metadata.csv --labels $COLS --lr 1e-3 --steps 3000 --image-size ${SIZE:-96} \
   --checkpoint-every 1000 --keep-checkpoints 3 --threads 2 --no-progress --no-tensorboard --out $OUT/train --overwrite 2>&1 | tail -3
date -u
for STEP in 0001000 0002000 0003000; do
  $PY evaluate --task tagging --checkpoint $OUT/train/checkpoints/step-$STEP --data /tmp/hm-val/metadata.csv --split val --out $OUT/eval-val-$STEP --threads 2 --no-progress > /dev/null
done
BEST=$(.venv/bin/python - "$OUT" <<'PY'
import json, sys
cols = ["colour", "pattern", "garment_group", "index_group"]
def mean_acc(step):
    m = json.load(open(f"{sys.argv[1]}/eval-val-{step}/metrics.json"))
    return sum(m[f"tag_{c}_acc_finetuned"] for c in cols) / len(cols)
print(max(["0001000", "0002000", "0003000"], key=mean_acc))
PY
)
echo "== selected on val: step $BEST"
$PY evaluate --task tagging --checkpoint $OUT/train/checkpoints/step-$BEST --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS --out $OUT/eval-test --threads 2 --no-progress
$PY evaluate --task tagging --checkpoint $INIT --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS --out $OUT/eval-test-pretrained --threads 2 --no-progress
date -u
