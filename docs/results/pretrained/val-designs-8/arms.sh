#!/bin/bash
# Design selection on the validation slice, fourteenth session. The CPU is again an AVX2 EPYC
# without native bf16 (fp32 training), so each arm is fitted to 28 training minutes, as the
# thirteenth session's (../val-designs-7/arms.sh, whose reference made 1,351 steps; R@5 57.2 / 56.2).
# Rule, as before: keep a change if it raises the mean of TIR and ITR R@5 by more than 2 points.
# RUNS is where the runs and shared caches live. Run from the repository root under
# `flock /tmp/mvlt-cpu.lock`, on a quiet machine; no `set -e` (the benchmark exits 1 when its
# target, 0.99, is not reached, and it never is).
#   ema: the reference recipe with the saved weights a moving average of the trained ones
#       (`--set ema_decay=0.998`, about the last 500 steps; mvlt.train.average). Training reads the
#       raw weights, so the run's last step checkpoint (RUN/train/checkpoints/step-*) is the
#       reference itself, scored on the same lists by experiments/pretrained/rescoring.py: one run
#       gives both arms. 1,002 steps (1.67 s a step); the average 42.3 / 43.1, its own last
#       weights 53.5 / 55.9 (rescoring_reference.json, "plain"). Not kept.
#   text_groups: the reference recipe again, after the model learned to run a batch of texts in four
#       groups of similar length (mvlt.model.length_groups; the same features for about 60 % of the
#       padded text tokens). The same 28 minutes: 1,233 steps at 1.32 s a step, R@5 57.2 / 57.2.
# After the arms, inference-time scoring rules on the same lists (mirror-image embeddings, a hub
# correction from a bank of training rows), for the reference and the average:
#   python experiments/pretrained/rescoring.py --checkpoint $RUNS/val-designs-8/ema/train/checkpoints/step-0001002 \
#     --data /tmp/hm-val/metadata.csv --split val --candidates $RUNS/val-designs-8/ema/retrieval_candidates.json \
#     --json rescoring_reference.json
#   (the same with --checkpoint $RUNS/val-designs-8/text_groups/train -> rescoring_text_groups.json)
#   python experiments/pretrained/short_queries.py --data /tmp/hm-val/metadata.csv --split val --hub-bank \
#     --checkpoint $RUNS/val-designs-8/ema/train/checkpoints/step-0001002 \
#     --checkpoint $RUNS/val-designs-8/text_groups/train --out short_queries_val.json
RUNS=${RUNS:-runs}
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --minutes 28 --eval-every 28 --queries 1000 --target 0.99 \
 --batch-groups 16 --model mvlt_micro --shared-caches $RUNS/val-designs/caches \
 --teachers text-init,text,image --objectives itc,itm,kd_text,kd_image --loss-weights kd_image=8,kd_text=8"
for arm in ${ARMS:-ema text_groups}; do
  case $arm in
    ema) extra="--set ema_decay=0.998" ;;
    text_groups) extra="" ;;  # the reference recipe, run after texts ran in length groups (below)
  esac
  rm -rf $RUNS/val-designs-8/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out $RUNS/val-designs-8/$arm --json $RUNS/val-designs-8/$arm.json
done
