#!/bin/bash
# Design selection on the validation slice, eighth session. The slice, caches and recipe are those
# of ../val-designs-2/arms.sh, whose `again` run (the reference re-run, its metrics.jsonl kept there)
# is the reference here; each arm changes one thing. Run from the repository root under
# `flock /tmp/mvlt-cpu.lock`, on a quiet machine; no `set -e` (the benchmark exits 1 when its
# target, 0.99, is not reached, and it never is).
#   lr2: stopped by hand at step 433 (its ITC and mimicry losses were behind the reference's at
#        the same steps from step 150 on; lr2-stopped-metrics.jsonl).
#   mem: stopped by hand after step 450, the last it logged, with ITC at chance (mem-stopped-*).
#   fit: `fit` below fine-tunes the val-designs-2 `finetune` arm's 13-minute pre-training again,
#        as that arm did, now ending with --fit-heads, and scores recognition on val.
#   fit6: the same, fine-tuned for 6 minutes instead of 3 (ninth session), retrieval scored too on
#        the arm's own saved lists.
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --eval-every 16 --queries 1000 --target 0.99 \
 --teachers text-init,text,image --batch-groups 16 --shared-caches runs/val-designs/caches"
KD8="--loss-weights kd_image=8,kd_text=8"
MATCH="--objectives itc,itm,kd_text,kd_image"
for arm in lr2 mem mem2 fit fit6; do
  case $arm in
    lr2) extra="--minutes 16 $MATCH $KD8 --model mvlt_micro --lr 2e-3" ;;
    mem) extra="--minutes 16 $MATCH $KD8 --model mvlt_micro --itc-memory 2048 --itc-memory-start 0" ;;
    mem2) extra="--minutes 16 $MATCH $KD8 --model mvlt_micro --itc-memory 1024 --itc-memory-start 0.5" ;;
    fit)
      rm -rf runs/val-designs-3/fit runs/val-designs-3/fit-eval
      mvlt finetune --config runs/val-designs-2/finetune/finetune/config.yaml --out runs/val-designs-3/fit \
        --fit-heads --no-progress
      mvlt evaluate --checkpoint runs/val-designs-3/fit --data /tmp/hm-val/metadata.csv --split val \
        --task recognition --image-cache runs/val-designs/caches/image-cache --out runs/val-designs-3/fit-eval
      continue ;;
    fit6)
      rm -rf runs/val-designs-3/fit6 runs/val-designs-3/fit6-eval
      mvlt finetune --config runs/val-designs-2/finetune/finetune/config.yaml --out runs/val-designs-3/fit6 \
        --fit-minutes 6 --steps 360 --fit-heads --no-progress
      mvlt evaluate --checkpoint runs/val-designs-3/fit6 --data /tmp/hm-val/metadata.csv --split val \
        --task retrieval,recognition --queries 1000 --candidates runs/val-designs-2/finetune/retrieval_candidates.json \
        --image-cache runs/val-designs/caches/image-cache --out runs/val-designs-3/fit6-eval
      continue ;;
  esac
  rm -rf runs/val-designs-3/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out runs/val-designs-3/$arm --json runs/val-designs-3/$arm.json
done
