"""What each pre-training objective costs a training step: the budget's arithmetic.

Times the optimizer step (``forward_loss`` + backward + fused AdamW) of a fresh model (``--model``,
default ``mvlt_nano``) at the demo's shapes (batch 64, 96 px, H&M-length texts) with ITC alone and
with each other objective added, in bf16 where the CPU computes it natively (else fp32); the median
of the steps after two warm-up steps. MLM and MIR share one joint pass over the masked inputs, so
their costs overlap.

    .venv/bin/python benchmarks/objective_cost.py [--model mvlt_nano] ['--sets=itc;itc + itm']
        [--threads 2] [--steps 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hm_text_lengths, machine, make_batch, write_json
from mvlt.model import LossWeights, create_model, list_models
from mvlt.runtime import Precision, cpu_has_native_bf16
from mvlt.train.optim import build_optimizer

SETS = {
    "default (itc 1, itm 3, mlm 1, mir 1)": {"itc": 1.0, "itm": 3.0, "mlm": 1.0, "mir": 1.0},
    "itc": {"itc": 1.0},
    "itc + itm": {"itc": 1.0, "itm": 3.0},
    "itc + mlm": {"itc": 1.0, "mlm": 1.0},
    "itc + mir": {"itc": 1.0, "mir": 1.0},
}
"""Objective sets; every weight not named is 0 (``LossWeights``' own defaults are the paper's)."""


def step_seconds(
    weights: dict[str, float], batches: list, precision: str, steps: int, model_name: str = "mvlt_nano"
) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, image_size=batches[0]["images"].shape[-1]).train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    names = ("itc", "mir", "itm", "mlm", "category", "subcategory")
    chosen = LossWeights(**{n: weights.get(n, 0.0) for n in names})
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with Precision(precision, "benchmark", "cpu").autocast():
            loss = model.forward_loss(batches[i % len(batches)], chosen, itm_negatives="itc")["total"]
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mvlt_nano", help="registered variant (mvlt.list_models())")
    p.add_argument("--sets", default=None, help="only these objective sets, named as printed, ';'-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    chosen = args.sets.split(";") if args.sets else list(SETS)
    unknown = [name for name in chosen if name not in SETS]
    if unknown:
        p.error(f"--sets: unknown {unknown}; the sets are {list(SETS)}")
    if args.model not in list_models():
        p.error(f"--model: unknown variant {args.model!r}; registered: {list_models()}")
    torch.set_num_threads(args.threads)
    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    lengths, _ = hm_text_lengths()
    batches = [make_batch(64, 96, lengths, seed=s) for s in range(3)]
    rows = {}
    for name in chosen:
        rows[name] = round(step_seconds(SETS[name], batches, precision, args.steps, args.model), 3)
        print(f"{name:40} {rows[name]:.3f} s/step ({precision})", flush=True)
    write_json(
        args.json,
        {"model": args.model, "seconds_per_step": rows, "precision": precision, "machine": machine()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
