#!/bin/bash
# Design selection on the validation slice, tenth session: the teachers' probabilities as soft
# targets of the heads' fit. One diagnostic on the `fit6` checkpoint of ../val-designs-3/arms.sh
# (13-minute pre-training, 6-minute fine-tuning, heads fitted to the labels): probes on its [CLS]
# fitted to the labels mixed with the teacher pair's out-of-fold sub-category probabilities at
# weights 0.3, 0.6 and 1, scored on the slice's val split. 0.6 was kept (--fit-heads-teacher 0.6).
# Run from the repository root under `flock /tmp/mvlt-cpu.lock`, on a quiet machine.
python docs/results/tagging/make_val_slice.py
python experiments/pretrained/student_probe.py --checkpoint runs/val-designs-3/fit6 \
  --data /tmp/hm-val/metadata.csv --split val --image-cache runs/val-designs/caches/image-cache \
  --teacher-cache runs/val-designs/caches/teacher-cache --teacher-weights 0.3,0.6,1 \
  --out docs/results/pretrained/val-designs-4/probe-fit6-soft.json
