#!/bin/bash
# Tag heads taught by the ImageNet teacher's linear probe (--teachers tags, kd_tags), and the same
# recipe at 128 px, on the encoder of ../tagging-teachers/ (rebuilt there by its run.sh when $INIT is
# missing). Same protocol: each run trains on 85 % of the train split and is scored on the held-out
# 15 % ("val") at every 1000 steps; the best (run, step) by mean val accuracy over the four columns,
# among these and ../tagging-teachers/'s nine, is the only checkpoint scored on the test split.
# Run under `flock /tmp/mvlt-cpu.lock`.
set -e
cd "$(dirname "$0")/../../.."
PY=".venv/bin/python -m mvlt"
INIT=${INIT:-/work/tta/ti/train}
OUT=${OUT:-/tmp/tagexp-distilled}
COLS=colour,pattern,garment_group,index_group
KEPT=docs/results/tagging-distilled
[ -d "$INIT" ] || { echo "no encoder at $INIT: run docs/results/tagging-teachers/run.sh first" >&2; exit 2; }
.venv/bin/python docs/results/tagging/make_val_slice.py
AUG="--lr 1e-3 --augment flip,crop"
declare -A RECIPES=(
  [aug-kdimg-128]="$AUG --teachers image --objectives tags,kd_image --image-size 128 --steps 3000"
  [aug-kdimg-kdtags]="$AUG --teachers image,tags --objectives tags,kd_image,kd_tags --steps 3000"
  [aug-kdimg-kdtags-5k]="$AUG --teachers image,tags --objectives tags,kd_image,kd_tags --steps 5000"
)
for NAME in aug-kdimg-128 aug-kdimg-kdtags aug-kdimg-kdtags-5k; do
  date -u
  # shellcheck disable=SC2086
  $PY finetune --init $INIT --data /tmp/hm-val/metadata.csv --labels $COLS ${RECIPES[$NAME]} \
     --checkpoint-every 1000 --keep-checkpoints 5 --threads 2 --no-progress --no-tensorboard --out $OUT/$NAME/train --overwrite 2>&1 | tail -1
  for CKPT in "$OUT/$NAME"/train/checkpoints/step-*; do
    STEP=$(basename "$CKPT")
    $PY evaluate --task tagging --checkpoint "$CKPT" --data /tmp/hm-val/metadata.csv --split val \
       --out "$OUT/$NAME/eval-val-$STEP" --threads 2 --no-progress > /dev/null
    cp "$OUT/$NAME/eval-val-$STEP/metrics.json" "$KEPT/val-$NAME-$STEP.json"
  done
  cp "$OUT/$NAME/train/train.log" "$KEPT/train-$NAME.log"
done
BEST=$(.venv/bin/python - <<'PY'
import json
from pathlib import Path
cols = ["colour", "pattern", "garment_group", "index_group"]
def mean_acc(path):
    m = json.loads(path.read_text())
    return sum(m[f"tag_{c}_acc_finetuned"] for c in cols) / len(cols)
runs = [*Path("docs/results/tagging-teachers").glob("val-*-step-*.json"),
        *Path("docs/results/tagging-distilled").glob("val-*-step-*.json")]
print(max(runs, key=mean_acc))
PY
)
echo "== selected on val: $BEST"
case "$BEST" in
  *tagging-distilled*) NAME=$(basename "$BEST" .json | sed -e 's/^val-//' -e 's/-step-[0-9]*$//')
     CKPT="$OUT/$NAME/train/checkpoints/step-${BEST##*-step-}"; CKPT=${CKPT%.json} ;;
  *) echo "the best is ../tagging-teachers' own selection, scored on test there" >&2; exit 0 ;;
esac
$PY evaluate --task tagging --checkpoint "$CKPT" --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS \
   --out $OUT/eval-test --threads 2 --no-progress
cp $OUT/eval-test/metrics.json $KEPT/test-selected.json
date -u
