#!/bin/bash
# Tag heads on the teacher-distilled encoder of the time-to-accuracy run
# (docs/results/time_to_accuracy/itc_itm_kd_text_image.json; rebuilt here when $INIT is missing).
# Same protocol as ../tagging/run.sh: three recipes train on 85 % of the train split, each scored on
# the held-out 15 % ("val") at steps 1000 / 2000 / 3000; only the best (recipe, step) by mean val
# accuracy over the four columns is scored on the test split. Run under `flock /tmp/mvlt-cpu.lock`.
set -e
cd "$(dirname "$0")/../../.."
PY=".venv/bin/python -m mvlt"
INIT=${INIT:-/work/tta/ti/train}
OUT=${OUT:-/tmp/tagexp}
COLS=colour,pattern,garment_group,index_group
KEPT=docs/results/tagging-teachers
if [ ! -d "$INIT" ]; then
  .venv/bin/python benchmarks/time_to_accuracy.py --minutes 15 --eval-every 3 --teachers text-init,text,image \
     --objectives itc,itm,kd_text,kd_image --out "$(dirname "$INIT")" --json /tmp/tta-ti.json
fi
.venv/bin/python docs/results/tagging/make_val_slice.py
declare -A RECIPES=(
  [base]="--lr 1e-3"
  [aug]="--lr 1e-3 --augment flip,crop"
  [aug-kdimg]="--lr 1e-3 --augment flip,crop --teachers image --objectives tags,kd_image"
)
for NAME in base aug aug-kdimg; do
  date -u
  # shellcheck disable=SC2086
  $PY finetune --init $INIT --data /tmp/hm-val/metadata.csv --labels $COLS ${RECIPES[$NAME]} --steps 3000 \
     --checkpoint-every 1000 --keep-checkpoints 3 --threads 2 --no-progress --no-tensorboard --out $OUT/$NAME/train --overwrite 2>&1 | tail -1
  for STEP in 0001000 0002000 0003000; do
    $PY evaluate --task tagging --checkpoint $OUT/$NAME/train/checkpoints/step-$STEP --data /tmp/hm-val/metadata.csv \
       --split val --out $OUT/$NAME/eval-val-$STEP --threads 2 --no-progress > /dev/null
  done
done
BEST=$(.venv/bin/python - "$OUT" <<'PY'
import json, sys
cols = ["colour", "pattern", "garment_group", "index_group"]
def mean_acc(run):
    m = json.load(open(f"{sys.argv[1]}/{run}/metrics.json"))
    return sum(m[f"tag_{c}_acc_finetuned"] for c in cols) / len(cols)
runs = [f"{n}/eval-val-{s}" for n in ("base", "aug", "aug-kdimg") for s in ("0001000", "0002000", "0003000")]
print(max(runs, key=mean_acc).replace("/eval-val-", "/train/checkpoints/step-"))
PY
)
echo "== selected on val: $BEST"
$PY evaluate --task tagging --checkpoint $OUT/$BEST --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS \
   --out $OUT/eval-test --threads 2 --no-progress
.venv/bin/python experiments/pretrained/tag_probe.py --data ../shared/data/hm_fashion_11k/metadata.csv --columns $COLS \
   --out $OUT/probe-image
date -u
# What is kept in the repository:
for NAME in base aug aug-kdimg; do
  for STEP in 0001000 0002000 0003000; do cp $OUT/$NAME/eval-val-$STEP/metrics.json $KEPT/val-$NAME-step-$STEP.json; done
  cp $OUT/$NAME/train/train.log $KEPT/train-$NAME.log
done
cp $OUT/eval-test/metrics.json $KEPT/test-selected.json
cp $OUT/probe-image/metrics.json $KEPT/test-frozen-imagenet-probe.json
