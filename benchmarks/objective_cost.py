"""What each pre-training objective costs a training step: the budget's arithmetic.

Times the optimizer step (``forward_loss`` + backward + fused AdamW) of a fresh model (``--model``,
default ``mvlt_nano``) at the demo's shapes (batch 64, 96 px, H&M-length texts) with ITC alone and
with each other objective added, in bf16 where the CPU computes it natively (else fp32); the median
of the steps after two warm-up steps. MLM and MIR share one joint pass over the masked inputs, so
their costs overlap. ``--text-groups 1,4`` times every set with the texts run as padded (1) and in
4 groups of similar length (``mvlt.model.length_groups``, the default), in the same run.

    .venv/bin/python benchmarks/objective_cost.py [--model mvlt_nano] ['--sets=itc;itc + itm']
        [--text-groups 1,4] [--threads 2] [--steps 8] [--json FILE]
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
from mvlt.model.length_groups import length_groups
from mvlt.model.mvlt import TEXT_GROUPS
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
    weights: dict[str, float],
    batches: list,
    precision: str,
    steps: int,
    model_name: str = "mvlt_nano",
    text_groups: int = TEXT_GROUPS,
) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, image_size=batches[0]["images"].shape[-1]).train()
    model.set_text_groups(text_groups)
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


def padded_tokens(batches: list, groups: int) -> float:
    """Text tokens a row the text passes run, [PAD] included, with texts in ``groups`` length groups
    (1: every text padded to its batch's longest); the real tokens are ``groups`` -> infinity."""
    total = rows = 0
    for batch in batches:
        mask = batch["attention_mask"]
        split = length_groups(mask, groups) or [(torch.arange(len(mask)), mask.shape[1])]
        total += sum(len(r) * width for r, width in split)
        rows += len(mask)
    return round(total / rows, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mvlt_nano", help="registered variant (mvlt.list_models())")
    p.add_argument("--sets", default=None, help="only these objective sets, named as printed, ';'-separated")
    p.add_argument(
        "--text-groups", default=str(TEXT_GROUPS), help="comma list of length-group counts to time"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    try:
        groups = [int(g) for g in args.text_groups.split(",") if g.strip()]
    except ValueError:
        p.error(f"--text-groups {args.text_groups!r}: not a comma list of whole numbers")
    if not groups or min(groups) < 1:
        p.error(f"--text-groups {args.text_groups!r}: give one or more counts >= 1")
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
        for count in groups:
            key = name if len(groups) == 1 else f"{name} | text groups {count}"
            rows[key] = round(step_seconds(SETS[name], batches, precision, args.steps, args.model, count), 3)
            print(f"{key:56} {rows[key]:.3f} s/step ({precision})", flush=True)
    record = {"model": args.model, "seconds_per_step": rows, "precision": precision, "machine": machine()}
    record["text_tokens_per_row"] = {str(count): padded_tokens(batches, count) for count in groups}
    print(f"text tokens a row (padding included), by groups: {record['text_tokens_per_row']}", flush=True)
    if len(groups) > 1:
        base = groups[0]
        record["speedup_over_text_groups_" + str(base)] = {
            f"{name} | text groups {count}": round(
                rows[f"{name} | text groups {base}"] / rows[f"{name} | text groups {count}"], 2
            )
            for name in chosen
            for count in groups[1:]
        }
        for key, value in record["speedup_over_text_groups_" + str(base)].items():
            print(f"{key:56} {value:.2f}x the step with {base} group(s)", flush=True)
    write_json(args.json, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
