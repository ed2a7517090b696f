#!/bin/bash
# Design selection on the validation slice, thirteenth session: regularisation of a student that is
# bound by generalisation (twelfth session: more steps lowered the training ITC loss, not the
# validation one). This session's CPU is an AVX2 EPYC without native bf16, so every arm trains in
# fp32 at 1.34 s a step instead of 0.74. Each arm is therefore fitted to 28 training minutes, not 16,
# so that it makes about as many steps (1,250) as the earlier arms and the reference `again` of
# ../val-designs-2/arms.sh (1,298 steps; R@5 58.7 / 57.6). That reference is re-run here first
# (`ref`) and every arm is compared with it, under the same rule (keep a change if it raises the
# mean of TIR and ITR R@5 by more than 2 points).
# RUNS is where the runs and shared caches live. Run from the repository root under
# `flock /tmp/mvlt-cpu.lock`, on a quiet machine; no `set -e` (the benchmark exits 1 when its
# target, 0.99, is not reached, and it never is).
#   ref: the reference, re-run on this CPU. 1,351 steps; R@5 57.2 / 56.2 (57.8 / 55.7 at 28 minutes).
#   wd: AdamW weight decay 0.1 instead of 0.01 (CLIP's 0.2, ALBEF's 0.02; the student memorises
#       the training photos). 1,048 steps (the CPU was slower when it started); R@5 54.4 / 54.0.
#       Not kept.
#   sentences: each sentence of a training text after the first (the product name) left out with
#       probability 0.3 (`--sentence-drop`, TrainConfig.sentence_drop): more texts per product, and
#       short ones, as shoppers type them. 1,244 steps; R@5 48.8 / 48.7, short-query P@10 5.1 %
#       against the reference's 3.8 % (short_queries_val.json). Not kept.
#   groups32: batches of two 32-item same-sub-category blocks instead of four of 16 (--batch-groups
#       32): more of each row's in-batch negatives are the look-alikes the protocol ranks against.
#       The CPU slowed during the session (1.5 s a step), so this arm is given the reference's
#       1,351 steps instead of 28 minutes (a block size does not change a step's work).
#       R@5 51.4 / 52.3. Not kept.
# Short queries on the validation products, after the arms:
#   python experiments/pretrained/short_queries.py --data /tmp/hm-val/metadata.csv --split val \
#     --checkpoint $RUNS/val-designs-7/ARM/train ... --out short_queries_val.json
RUNS=${RUNS:-runs}
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --minutes 28 --eval-every 28 --queries 1000 --target 0.99 \
 --batch-groups 16 --model mvlt_micro --shared-caches $RUNS/val-designs/caches \
 --teachers text-init,text,image --objectives itc,itm,kd_text,kd_image --loss-weights kd_image=8,kd_text=8"
for arm in ${ARMS:-ref}; do
  case $arm in
    ref) extra="" ;;
    wd) extra="--set weight_decay=0.1" ;;
    sentences) extra="--set sentence_drop=0.3" ;;
    groups32) extra="--batch-groups 32 --set fit_minutes=null --set steps=1351" ;;  # the last --batch-groups wins
  esac
  rm -rf $RUNS/val-designs-7/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out $RUNS/val-designs-7/$arm --json $RUNS/val-designs-7/$arm.json
done
