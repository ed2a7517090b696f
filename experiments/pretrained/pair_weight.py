"""Score one pair-head checkpoint (``MVLTConfig.pair_head``) at several ``pair_weight`` values on
fixed 1 + K candidate lists: ITC alone (0), the pair head alone (1) and blends, each with the
given scorers. What each embedding space knows, on the same lists; the weight a checkpoint keeps
is its own (set before training), so this reads a finished run and chooses nothing on test.

    python experiments/pretrained/pair_weight.py --checkpoint RUN/train --data MANIFEST \
        --candidates RUN/candidates.json [--weights 0,0.5,1] [--score itc,itc+itm] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import torch

from mvlt.data import open_catalogue
from mvlt.eval import EvalOptions, RetrievalProtocol, evaluate
from mvlt.eval.retrieval import load_candidates
from mvlt.model import MVLT

RECALL = re.compile(r"(tir|itr)_r(1|5|10)_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a model folder with a pair head")
    p.add_argument("--data", required=True, help="catalogue manifest")
    p.add_argument("--split", default="test")
    p.add_argument("--candidates", type=Path, required=True, help="the fixed 1 + K lists to score")
    p.add_argument("--weights", default="0,0.5,1", help="pair_weight values, a comma list in [0, 1]")
    p.add_argument("--score", default="itc,itc+itm", help="scorers, as mvlt evaluate --score")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    try:
        args.weights = [float(w) for w in args.weights.split(",") if w.strip()]
    except ValueError:
        p.error(f"--weights {args.weights!r}: not a comma list of numbers")
    if not args.weights or not all(0.0 <= w <= 1.0 for w in args.weights):
        p.error("--weights: give one or more values in [0, 1]")
    for flag, path in (("--checkpoint", args.checkpoint), ("--candidates", args.candidates)):
        if not path.exists():
            p.error(f"{flag} {path}: no such file or directory")
    return args


def score(model: MVLT, catalogue: object, args: argparse.Namespace) -> dict[str, float]:
    """R@1/5/10 in both directions for every scorer (its ``names`` prefix), on the fixed lists."""
    negatives = int(load_candidates(args.candidates).protocol.get("negatives", 100))
    options = EvalOptions(
        retrieval=RetrievalProtocol(negatives=negatives),
        candidates_file=str(args.candidates),
        score=args.score,
    )
    with tempfile.TemporaryDirectory() as out:
        metrics = evaluate(model, catalogue, "retrieval", options, out)
    return {k: float(v) for k, v in metrics.items() if RECALL.search(k) and isinstance(v, int | float)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = MVLT.from_pretrained(args.checkpoint).eval()
    if model.pair_head is None:
        raise SystemExit(f"pair_weight: {args.checkpoint} has no pair head (MVLTConfig.pair_head)")
    trained_with = model.config.pair_weight
    catalogue = open_catalogue(args.data, split=args.split)
    rows = []
    for weight in args.weights:
        model.config.pair_weight = weight
        rows.append({"pair_weight": weight, **score(model, catalogue, args)})
        r5 = {k: v for k, v in rows[-1].items() if "_r5_" in k and not k.endswith("_se")}
        shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in r5.items())
        print(f"pair_weight {weight:g}: {shown}", flush=True)
    record = {
        "command": "python experiments/pretrained/pair_weight.py " + " ".join(sys.argv[1:]),
        "checkpoint_pair_weight": trained_with,
        "split": args.split,
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
