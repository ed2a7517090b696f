#!/bin/bash
# Design selection on the validation slice (2026-12-07): H&M's train split only, 15 % of its product
# codes held out as "val" (docs/results/tagging/make_val_slice.py writes /tmp/hm-val/metadata.csv).
# Three 16-minute runs of the same recipe, one flag each; caches shared (built by the first run).
# Run from the repository root under `flock /tmp/mvlt-cpu.lock`, on a quiet machine.
# The benchmark exits 1 when its target (0.99, never reached) is not: no `set -e`.
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --minutes 16 --eval-every 16 --queries 1000 --target 0.99 \
 --teachers text-init,text,image --objectives itc,itm,kd_text,kd_image --batch-groups 16 \
 --loss-weights kd_image=8,kd_text=8 --shared-caches runs/val-designs/caches"
for arm in ref augment micro; do
  extra=""
  [ $arm = augment ] && extra="--augment flip,crop"
  [ $arm = micro ] && extra="--model mvlt_micro"
  rm -rf runs/val-designs/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out runs/val-designs/$arm --json runs/val-designs/$arm.json
done
