"""Retrieval of a checkpoint trained on the demo's synthetic catalogue (3,000 products, 64 px, seed 0):
R@1 / R@5 of every scorer on its test split, fp32, 1 + 100 lists. The design probes of
docs/DESIGN.md were scored with this (``probes.sh``).

    python experiments/recipe/eval_synthetic.py CHECKPOINT [QUERIES]
"""

from __future__ import annotations

import sys

import torch

from mvlt.data import open_catalogue
from mvlt.eval import EvalOptions, RetrievalProtocol, evaluate
from mvlt.model import MVLT


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    model = MVLT.from_pretrained(argv[0])
    queries = int(argv[1]) if len(argv) > 1 else 200
    test = open_catalogue("synthetic", split="test", num_products=3000, image_size=64, seed=0)
    options = EvalOptions(retrieval=RetrievalProtocol(queries=queries, negatives=100), precision="fp32")
    metrics = evaluate(model, test, "retrieval", options)
    for scorer in metrics["protocol"]["retrieval"]["scorers"]:
        tag = scorer.replace("+", "_")
        cells = " ".join(
            f"{d.upper()} R@{k} {100 * metrics[f'{tag}_{d}_r{k}_1p100_subcat']:.1f}"
            for d in ("tir", "itr")
            for k in (1, 5)
        )
        print(f"{argv[0]} {scorer}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
