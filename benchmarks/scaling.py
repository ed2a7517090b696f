"""How cost grows with image size and text length (issue 7, item 4).

    python benchmarks/scaling.py [--quick] [--json FILE] [--precision fp32|bf16]

Training samples/s, peak RSS, retrieval pairs/s and model FLOPs of ``mvlt_tiny`` at 128 / 256 /
384 px (H&M-length texts) and at 32 / 64 / 128 text tokens (256 px), each measurement in a fresh
process (see ``speed.py``). fp32 by default: on CPUs without native bf16 (AVX2-only machines such
as the one the README's figures come from) bf16 autocast is tens of times slower.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json
from speed import run_worker

IMAGE_SIZES = (128, 256, 384)
TEXT_LENGTHS = (32, 64, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--model", default="mvlt_tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    base = argparse.Namespace(
        model=args.model, batch_size=args.batch_size, threads=args.threads, negatives=100,
        iters=2 if args.quick else 5, queries=1 if args.quick else 3, malloc_tuning=True,
    )  # fmt: skip
    points = [("image_size", s, {"image_size": s, "text_length": 0}) for s in IMAGE_SIZES]
    points += [("text_length", n, {"image_size": 256, "text_length": n}) for n in TEXT_LENGTHS]
    rows = []
    for axis, value, overrides in points:
        point = argparse.Namespace(**vars(base), **overrides)
        train = run_worker(point, "train", precision=args.precision, count_flops=1)
        retrieval = run_worker(point, "retrieval", precision=args.precision, count_flops=1)
        rows.append({axis: value, **{f"train_{k}": v for k, v in train.items()},
                     **{f"retrieval_{k}": v for k, v in retrieval.items()}})  # fmt: skip
        print(
            f"{axis}={value:<4} train {train['samples_per_s']:6.2f} samples/s "
            f"({train['flops_per_sample'] / 1e9:6.2f} GFLOP/sample, RSS {train['peak_rss_gb']:.2f} GB)  "
            f"retrieval {retrieval['pairs_per_s']:7.2f} pairs/s "
            f"({retrieval['flops_per_pair'] / 1e9:.2f} GFLOP/pair)",
            flush=True,
        )
    write_json(args.json, {"machine": machine(), "precision": args.precision, "points": rows})


if __name__ == "__main__":
    main()
