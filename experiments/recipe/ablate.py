"""Table 3(d) analogue for the default recipe: which objectives make retrieval learn, at equal steps.

Trains each variant from scratch with the same seed, data order, batch, learning rate and number of
steps, evaluates retrieval (every scorer) on the same 1 + K candidate lists, and writes
``OUT/results.json`` (one entry per variant) and ``OUT/curves.png`` (each objective's loss by step).
A variant whose ``OUT/<variant>/eval/metrics.json`` exists is not run again, so an interrupted sweep
continues where it stopped.

    python experiments/recipe/ablate.py --out runs/ablate-synthetic      # docs/RESULTS.md, CPU rows
    python experiments/recipe/ablate.py --data ../shared/data/hm_fashion_11k/metadata.csv --image-size 96 \\
        --steps 400 --out runs/ablate-hm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, dict[str, Any]] = {
    "itc": {"objectives": ["itc"]},
    "itc+itm": {"objectives": ["itc", "itm"]},
    "itc+itm+mlm": {"objectives": ["itc", "itm", "mlm"]},
    "itc+itm+mir": {"objectives": ["itc", "itm", "mir"]},
    "all": {},  # the default recipe: ITC + ITM + MLM + MIR
    "paper": {"recipe": "paper"},  # MIR + ITM + MLM at 10 / 1 / 1, the paper's heads
}
SYNTHETIC_PRODUCTS = 3000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--model", default="mvlt_nano")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--rerank-top", type=int, default=16)
    p.add_argument(
        "--precision", default="fp32", help="training: fp32 by default, the same arithmetic on every CPU"
    )
    p.add_argument("--eval-precision", default="auto", help="scoring: auto (bf16 where native) by default")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {name: run_variant(name, args) for name in chosen}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    draw(args.out, chosen)
    print(table(results))
    return 0


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    synthetic = args.data == "synthetic"
    return (
        {"num_products": SYNTHETIC_PRODUCTS, "image_size": args.image_size, "seed": args.seed}
        if synthetic
        else {}
    )


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from mvlt.data import open_catalogue
    from mvlt.eval import EvalOptions, RetrievalProtocol, evaluate
    from mvlt.model import MVLT
    from mvlt.train import TrainConfig, train

    run = args.out / name
    metrics_file = run / "eval" / "metrics.json"
    if not metrics_file.is_file():
        config = TrainConfig(
            task="pretrain", model=args.model, data=args.data, data_options=data_options(args),
            tokenizer="train" if args.data == "synthetic" else None, image_size=args.image_size,
            batch_size=args.batch_size, steps=args.steps, lr=args.lr, seed=args.seed,
            precision=args.precision, threads=args.threads, out=str(run), log_every=20,
            checkpoint_every=200, keep_checkpoints=1, tensorboard=False, **VARIANTS[name],
        )  # fmt: skip
        started = time.perf_counter()
        resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
        result = train(config, resume=resume)
        if result.interrupted:
            print(f"ablate: {name} interrupted; run the same command again to continue", file=sys.stderr)
            raise SystemExit(130)
        (run / "train_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
        test = open_catalogue(args.data, split="test", **data_options(args))
        options = EvalOptions(
            retrieval=RetrievalProtocol(queries=args.queries, seed=args.seed), precision=args.eval_precision,
            rerank_top=args.rerank_top, training_logs=(str(run / "metrics.jsonl"),),
            checkpoint=str(run),
        )  # fmt: skip
        evaluate(MVLT.from_pretrained(run), test, "retrieval", options, run / "eval")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    losses = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    seconds = (
        (run / "train_seconds.txt").read_text().strip() if (run / "train_seconds.txt").is_file() else None
    )
    keep = {k: v for k, v in metrics.items() if "_r1_" in k or "_r5_" in k or "_r10_" in k}
    return {
        "variant": name,
        "settings": VARIANTS[name],
        "steps": args.steps,
        "train_seconds": float(seconds) if seconds else None,
        "final_losses": {k[5:]: v for k, v in losses.items() if k.startswith("loss/")},
        "scorers": metrics["protocol"]["retrieval"]["scorers"],
        "queries": metrics["protocol"]["retrieval"]["queries_evaluated"],
        "metrics": keep,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: R@1 / R@5 (± standard error) per variant and scorer."""
    lines = ["| variant | scorer | TIR R@1 | TIR R@5 | ITR R@1 | ITR R@5 |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        for scorer in r["scorers"]:
            tag = scorer.replace("+", "_")
            cells = []
            for d in ("tir", "itr"):
                for k in (1, 5):
                    key = f"{tag}_{d}_r{k}_1p100_subcat"
                    value, se = r["metrics"].get(key), r["metrics"].get(key + "_se")
                    cells.append(f"{100 * value:.1f} ± {100 * se:.1f}" if value is not None else "-")
            lines.append(f"| {name} | {scorer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(out: Path, names: list[str]) -> None:
    from mvlt.eval.curves import draw_curves, read_losses

    runs = {n: read_losses(out / n / "metrics.jsonl") for n in names if (out / n / "metrics.jsonl").is_file()}
    draw_curves(runs).save(out / "curves.png")


if __name__ == "__main__":
    raise SystemExit(main())
