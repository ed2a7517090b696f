#!/bin/bash
# Design selection on the validation slice, twelfth session. The slice, caches and recipe are those
# of ../val-designs-2/arms.sh, whose `micro-again` run (58.7 / 57.6 R@5, 1,298 steps, scored
# itc+itm) is the reference; ../val-designs-5's `itc6` (S-CR 82.3 %) is the recognition reference.
# RUNS is where the runs and shared caches live. Run from the repository root under
# `flock /tmp/mvlt-cpu.lock`, on a quiet machine; no `set -e` (the benchmark exits 1 when its
# target, 0.99, is not reached, and it never is).
#   noitm: pre-training without ITM (`python benchmarks/objective_cost.py --model mvlt_micro`: ITM
#         is about half of a step), scored by ITC; then the recognition recipe kept for test (6 min
#         fine-tuning with ITM back on, heads that read the ITC embeddings, the teachers' fit). The
#         fine-tuned model is also scored by ITC alone (`noitm-itc`), as ITM had only the fine-tuning.
#         2,059 steps (0.47 s each, against the reference's 1,298 at 0.74 s); R@5 56.8 / 56.6 (ITC) at
#         the end of pre-training, 58.8 / 56.9 (itc+itm) and S-CR 82.8 % after fine-tuning, 59.1 /
#         56.4 scored by ITC alone. Not kept: the extra steps lowered the training ITC loss (0.80
#         against 0.99), not the validation one.
#   raw: the reference plus the teachers' own pooled features mimicked through training-only
#         projections of the unimodal features (--teachers ...,image-raw,text-raw; kd_*_raw x4).
#         Pre-training only, as the reference. 1,240 steps; R@5 55.3 / 54.1. Not kept.
#   itm6: the reference with ITM weighted 6 instead of 3 (--loss-weights ...,itm=6): the noitm arm
#         says that ITM's training shapes the encoder; this asks whether more of it helps.
#         Pre-training only, as the reference. 1,100 steps (0.82 s each on this session's CPU; the
#         weight does not change a step's work); R@5 57.0 / 55.6. Not kept.
RUNS=${RUNS:-runs}
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --minutes 16 --eval-every 16 --queries 1000 --target 0.99 \
 --batch-groups 16 --model mvlt_micro --shared-caches $RUNS/val-designs/caches"
TEACHERS="--teachers text-init,text,image --loss-weights kd_image=8,kd_text=8"
RECOG="--finetune-minutes 6 --fit-heads --fit-heads-teacher 0.6 --heads-read-itc"
for arm in ${ARMS:-noitm}; do
  case $arm in
    noitm) extra="$TEACHERS --objectives itc,kd_text,kd_image $RECOG" ;;
    raw) extra="--teachers text-init,text,image,image-raw,text-raw \
      --objectives itc,itm,kd_text,kd_image,kd_image_raw,kd_text_raw \
      --loss-weights kd_image=8,kd_text=8,kd_image_raw=4,kd_text_raw=4" ;;
    itm6) extra="--teachers text-init,text,image --objectives itc,itm,kd_text,kd_image \
      --loss-weights kd_image=8,kd_text=8,itm=6" ;;
  esac
  rm -rf $RUNS/val-designs-6/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out $RUNS/val-designs-6/$arm --json $RUNS/val-designs-6/$arm.json
  [ -d $RUNS/val-designs-6/$arm/finetune ] || continue
  rm -rf $RUNS/val-designs-6/$arm-itc
  mvlt evaluate --checkpoint $RUNS/val-designs-6/$arm/finetune --data /tmp/hm-val/metadata.csv --split val \
    --image-cache $RUNS/val-designs/caches/image-cache --no-progress --task retrieval --queries 1000 --score itc \
    --candidates $RUNS/val-designs-6/$arm/retrieval_candidates.json --out $RUNS/val-designs-6/$arm-itc
done
