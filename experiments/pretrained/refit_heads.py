"""Fit a fine-tuning run's recognition heads again, as ``--fit-heads`` does, with other soft targets.

    python experiments/pretrained/refit_heads.py --run RUN/finetune --teacher-weight 0 --out OUT
    mvlt evaluate --checkpoint OUT --data ... --task recognition --out OUT-eval

A paired control: the run's last step checkpoint (its trained heads, before the fit it ended with)
has its output layers fitted on the run's own training catalogue, to the labels mixed with the
frozen teachers' out-of-fold probabilities at ``--teacher-weight`` (0: the labels alone), and is
saved as a model folder. The encoder is the run's, so two refits of one run differ only in the
fit's targets; the teachers' features and probabilities are read from the run's teacher cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mvlt.data.image_cache import open_image_cache
from mvlt.model import MVLT
from mvlt.train.config import load_config
from mvlt.train.data import open_training_catalogue
from mvlt.train.head_fit import fit_recognition_heads
from mvlt.train.teachers.models import TeacherUnavailable, require_teachers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a fine-tuning run's output folder")
    p.add_argument("--teacher-weight", type=float, default=0.0, help="the teachers' share of the targets")
    p.add_argument("--out", type=Path, required=True, help="where the refitted model is saved")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not 0 <= args.teacher_weight <= 1:
        p.error("--teacher-weight must be in [0, 1]")
    if not (args.run / "config.yaml").is_file():
        p.error(f"--run {args.run}: no config.yaml (not a training run's output folder)")
    if not sorted((args.run / "checkpoints").glob("step-*")):
        p.error(f"--run {args.run}: no step checkpoint under checkpoints/")
    if args.teacher_weight:
        try:
            require_teachers()  # before any encoding, not after it
        except TeacherUnavailable as err:
            p.error(f"--teacher-weight {args.teacher_weight:g} needs the teachers: {err}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.run / "config.yaml")
    checkpoint = sorted((args.run / "checkpoints").glob("step-*"))[-1]
    model = MVLT.from_pretrained(checkpoint).eval()
    size = model.config.image_size
    catalogue = open_training_catalogue(config, size)
    cache = (
        open_image_cache(catalogue, size, config.resize, config.image_cache) if config.image_cache else None
    )
    teacher = None
    if args.teacher_weight:
        from mvlt.train.teachers.distill import recognition_targets

        teacher, _ = recognition_targets(catalogue, model.label_maps, config.teacher_cache, progress=False)
    records = fit_recognition_heads(
        model, catalogue, size, config.resize, cache, teacher=teacher, teacher_weight=args.teacher_weight
    )
    model.save_pretrained(args.out)
    record = {"checkpoint": str(checkpoint), "teacher_weight": args.teacher_weight, "heads": records}
    (args.out / "refit.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
