"""Draw a kept run's learning curves for docs/RESULTS.md: each objective's loss by step.

    python experiments/recipe/curves.py docs/results/recipe/hm-cpu/pretrain_metrics.jsonl \\
        --out docs/images/hm_cpu_curves.png

Dashed levels: ITC's ln(batch) (a uniform guess over the batch) and ITM's 0.637 (one positive and
two mined negatives per item, scored at their base rate).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mvlt.eval.curves import draw_curves, read_losses

ITM_BASE_RATE = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", nargs="+", type=Path, help="metrics.jsonl files (one line per run)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--batch-size", type=int, default=64, help="global batch, for ITC's chance level")
    args = p.parse_args(argv)
    runs = {path.stem if len(args.logs) > 1 else "": read_losses(path) for path in args.logs}
    reference = {"itc": math.log(args.batch_size), "itm": ITM_BASE_RATE}
    draw_curves(runs if len(runs) > 1 else {"run": next(iter(runs.values()))}, reference).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
