#!/bin/bash
# Design selection on the validation slice, eleventh session. The slice, caches and recipe are those
# of ../val-designs-2/arms.sh, whose `micro-again` run (58.7 / 57.6 R@5, 1,298 steps) is the
# reference; each arm changes one thing. RUNS is where the runs and shared caches live (the earlier
# sessions' `runs/`). Run from the repository root under `flock /tmp/mvlt-cpu.lock`, on a quiet
# machine; no `set -e` (the benchmark exits 1 when its target, 0.99, is not reached, and it never is).
#   px128: the student sees 128-px images instead of 96 (its image cache built by this run).
#         861 steps, R@5 49.4 / 47.0 against the reference's 58.7 / 57.6: not kept.
#   anneal: the teachers' kd_* weights annealed linearly to 0 over the second half of the run
#         (--kd-decay-start 0.5; teacher annealing, BAM!). 1,150 steps, R@5 57.4 / 56.7: not kept.
#   itc6: recognition heads that also read the ITC embeddings. The val-designs-2 `finetune` arm's
#         13-minute pre-training fine-tuned for 6 minutes as val-designs-3's `fit6` was, ending with
#         the fit to the labels 0.4 + the teachers' probabilities 0.6; scored on val. Its paired
#         controls refit heads of a finished run (experiments/pretrained/refit_heads.py): this run's
#         heads to the labels alone, and `fit6`'s [CLS]-only heads to labels 0.4 + teachers 0.6.
#         S-CR on val: itc6 82.3 %, its heads refitted to the labels 79.1 %, fit6's refitted to the
#         teachers' mix 79.6 % (fit6 itself, labels: 79.0 %). Kept (--heads-read-itc).
RUNS=${RUNS:-runs}
python docs/results/tagging/make_val_slice.py
COMMON="--data /tmp/hm-val/metadata.csv --split val --minutes 16 --eval-every 16 --queries 1000 --target 0.99 \
 --teachers text-init,text,image --objectives itc,itm,kd_text,kd_image --batch-groups 16 \
 --loss-weights kd_image=8,kd_text=8 --model mvlt_micro --shared-caches $RUNS/val-designs/caches"
for arm in ${ARMS:-px128}; do
  case $arm in
    px128) extra="--image-size 128" ;;
    anneal) extra="--kd-decay-start 0.5" ;;
    itc6)
      rm -rf $RUNS/val-designs-5/itc6*
      mvlt finetune --config $RUNS/val-designs-2/finetune/finetune/config.yaml --out $RUNS/val-designs-5/itc6 \
        --fit-minutes 6 --steps 360 --fit-heads --fit-heads-teacher 0.6 \
        --set model_overrides.recognition_reads_itc=true --no-progress
      EVAL="--data /tmp/hm-val/metadata.csv --split val --image-cache $RUNS/val-designs/caches/image-cache --no-progress"
      mvlt evaluate --checkpoint $RUNS/val-designs-5/itc6 $EVAL --task retrieval,recognition --queries 1000 \
        --candidates $RUNS/val-designs-2/finetune/retrieval_candidates.json --out $RUNS/val-designs-5/itc6-eval
      python experiments/pretrained/refit_heads.py --run $RUNS/val-designs-5/itc6 --teacher-weight 0 \
        --out $RUNS/val-designs-5/itc6-labels
      mvlt evaluate --checkpoint $RUNS/val-designs-5/itc6-labels $EVAL --task recognition \
        --out $RUNS/val-designs-5/itc6-labels-eval
      python experiments/pretrained/refit_heads.py --run $RUNS/val-designs-3/fit6 --teacher-weight 0.6 \
        --out $RUNS/val-designs-5/fit6-soft
      mvlt evaluate --checkpoint $RUNS/val-designs-5/fit6-soft $EVAL --task recognition \
        --out $RUNS/val-designs-5/fit6-soft-eval
      continue ;;
  esac
  rm -rf $RUNS/val-designs-5/$arm
  python benchmarks/time_to_accuracy.py $COMMON $extra --out $RUNS/val-designs-5/$arm --json $RUNS/val-designs-5/$arm.json
done
