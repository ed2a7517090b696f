"""``torch.compile`` (CPU inductor) against eager, on the demo's shapes: is compiling worth it here?

Times, in fp32 and (where the CPU computes it natively) bf16 autocast, with a fresh ``mvlt_nano``
each time:
1. the training step (``forward_loss`` + backward + fused AdamW, batch 64 at 96 px, the default
   recipe's objectives) over batches whose texts pad to different lengths, as training's do (so
   the compiled graph meets several shapes: inductor marks them dynamic);
2. the ITC image scorer (``encode_images``, inference, batch 64), the evaluator's and the index's
   first stage.
Each row reports the compile time (the first calls, one per shape), the steady step time, and the
speed-up over eager measured in the same run; a compile that fails is reported, not raised.

    .venv/bin/python benchmarks/torch_compile.py [--threads 2] [--iters 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hm_text_lengths, machine, make_batch, timed, write_json
from mvlt.model import LossWeights, create_model
from mvlt.runtime import Precision, cpu_has_native_bf16
from mvlt.train.optim import build_optimizer

SHAPES = 3
"""Batches of different padded text lengths cycled through (compile meets each once first)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="mvlt_nano")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=8, help="timed calls after the warm-up")
    p.add_argument("--parts", default="train,scorer", help="comma list of train, scorer")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def batches(args: argparse.Namespace) -> list[dict[str, torch.Tensor]]:
    lengths, _ = hm_text_lengths()
    out = [make_batch(args.batch_size, args.image_size, lengths, seed=s) for s in range(SHAPES)]
    for batch in out:
        batch["images"] = batch["images"].clamp(0, 1)
    return out


def train_step(args: argparse.Namespace, precision: str, compiled: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(args.model, image_size=args.image_size).train()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    loss_of = torch.compile(model.forward_loss) if compiled else model.forward_loss
    data, state = batches(args), {"i": 0}
    weights = LossWeights(itc=1.0, itm=3.0, mlm=1.0, mir=1.0)

    def step() -> None:
        batch = data[state["i"] % len(data)]
        state["i"] += 1
        optimizer.zero_grad(set_to_none=True)
        with Precision(precision, "benchmark", "cpu").autocast():
            loss = loss_of(batch, weights, itm_negatives="itc")["total"]
        loss.backward()
        optimizer.step()

    return step


def image_scorer(args: argparse.Namespace, precision: str, compiled: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(args.model, image_size=args.image_size).eval()
    encode = torch.compile(model.encode_images) if compiled else model.encode_images
    images = batches(args)[0]["images"]

    def score() -> None:
        with torch.inference_mode(), Precision(precision, "benchmark", "cpu").autocast():
            encode(images)

    return score


def measure(make: Callable[..., Callable[[], None]], *how: object, iters: int) -> dict[str, object]:
    """Compile (first call per shape) and steady seconds per call; a failure is a result."""
    try:
        start = time.perf_counter()
        fn = make(*how)
        for _ in range(SHAPES):
            fn()
        first = time.perf_counter() - start
        return {"first_calls_s": round(first, 2), "seconds": timed(fn, warmup=SHAPES, iters=iters)}
    except Exception as err:  # inductor needs a C++ toolchain; a graph break can also fail
        first_line = f"{type(err).__name__}: {err}".splitlines()[0]
        return {"error": first_line, "trace": traceback.format_exc(limit=3)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    parts = {"train": train_step, "scorer": image_scorer}
    rows = []
    for part in args.parts.split(","):
        for precision in precisions:
            eager = measure(parts[part], args, precision, False, iters=args.iters)
            compiled = measure(parts[part], args, precision, True, iters=args.iters)
            row = {"part": part, "precision": precision, "eager": eager, "compiled": compiled}
            if "seconds" in eager and "seconds" in compiled:
                row["speedup"] = round(eager["seconds"] / compiled["seconds"], 3)
            rows.append(row)
            print({k: v.get("seconds", v.get("error")) if isinstance(v, dict) else v for k, v in row.items()})
    write_json(args.json, {"rows": rows, "args": vars(args), "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
