#!/bin/bash
# Design selection on the validation slice, continued (2026-12-07, seventh session). The slice, the
# caches and the recipe are those of ../val-designs/arms.sh, whose `micro` run is the reference here;
# each run below changes one thing against it. Run from the repository root under
# `flock /tmp/mvlt-cpu.lock`, on a quiet machine; no `set -e` (the benchmark exits 1 when its
# target, 0.99, is not reached, and it never is).
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --eval-every 16 --queries 1000 --target 0.99 \
 --teachers text-init,text,image --batch-groups 16 --shared-caches runs/val-designs/caches"
KD8="--loss-weights kd_image=8,kd_text=8"
MATCH="--objectives itc,itm,kd_text,kd_image"
for arm in mini recog finetune kd16 again recog01; do
  case $arm in
    mini) extra="--minutes 16 $MATCH $KD8 --model mvlt_mini" ;;  # wider still
    recog) extra="--minutes 16 --objectives itc,itm,kd_text,kd_image,category,subcategory $KD8 --model mvlt_micro" ;;
    finetune) extra="--minutes 13 $MATCH $KD8 --model mvlt_micro --finetune-minutes 3" ;;  # recog's control
    kd16) extra="--minutes 16 $MATCH --loss-weights kd_image=16,kd_text=16 --model mvlt_micro" ;;
    recog01) extra="--minutes 16 --objectives itc,itm,kd_text,kd_image,category,subcategory \
      --loss-weights kd_image=8,kd_text=8,category=0.1,subcategory=0.1 --model mvlt_micro" ;;  # lighter
    again) extra="--minutes 16 $MATCH $KD8 --model mvlt_micro" ;;  # the reference itself, re-run
  esac
  rm -rf runs/val-designs-2/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out runs/val-designs-2/$arm --json runs/val-designs-2/$arm.json
done
