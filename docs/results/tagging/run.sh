#!/bin/bash
# Tag heads on H&M, one lock session: train on 85 % of the train split (by product code), pick the
# checkpoint by its accuracy on the held-out 15 % ("val", a slice of train), then score that one
# checkpoint on the test split (fine-tuned and zero-shot) and the pre-trained model zero-shot.
set -e
cd /work/wt-tagheads
PY="nice /work/main/.venv/bin/python -m mvlt"
export PYTHONPATH=src
COLS=colour,pattern,garment_group,index_group
OUT=/tmp/tagheads-runs/select-long
date -u
$PY finetune --init /work/runs-shared/hm-demo/model --data /tmp/hm-val/metadata.csv --labels $COLS \
   --lr 1e-3 --steps 4000 --checkpoint-every 1000 --keep-checkpoints 4 --threads 2 --no-progress --no-tensorboard --out $OUT --overwrite 2>&1 | tail -3
date -u
for STEP in 0001000 0002000 0003000 0004000; do
  echo "== step $STEP"
  $PY tag --evaluate --checkpoint $OUT/checkpoints/step-$STEP --data /tmp/hm-val/metadata.csv --split val --out $OUT/eval-$STEP --threads 2 --no-progress
done
BEST=$(/work/main/.venv/bin/python - <<'PY'
import json
cols = ["colour", "pattern", "garment_group", "index_group"]
scores = {}
for step in ["0001000", "0002000", "0003000", "0004000"]:
    m = json.load(open(f"/tmp/tagheads-runs/select-long/eval-{step}/metrics.json"))
    scores[step] = sum(m[f"tag_{c}_acc_finetuned"] for c in cols) / len(cols)
print(max(scores, key=scores.get))
PY
)
echo "== selected on val: step $BEST"
rm -rf /tmp/tagheads-runs/hm-tagger && cp -r $OUT/checkpoints/step-$BEST /tmp/tagheads-runs/hm-tagger
echo "== test split: the selected tag heads, and zero-shot on the same checkpoint"
$PY tag --evaluate --checkpoint /tmp/tagheads-runs/hm-tagger --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS --out /tmp/tagheads-runs/eval-test-tagger --threads 2 --no-progress
echo "== test split: zero-shot on the pre-trained checkpoint (before any fine-tuning)"
$PY tag --evaluate --checkpoint /work/runs-shared/hm-demo/pretrain --data ../shared/data/hm_fashion_11k/metadata.csv --zero-shot $COLS --out /tmp/tagheads-runs/eval-test-pretrain --threads 2 --no-progress
date -u
