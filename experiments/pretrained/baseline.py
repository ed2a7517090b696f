"""The frozen dual encoder baseline: the row every MVLT result on real photos is compared with.

    python experiments/pretrained/baseline.py --data ../shared/data/hm_fashion_11k/metadata.csv \
        --dim 256 --out runs/baseline-256

EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2, both frozen; their pooled features
standardised, two linear projections and a temperature trained with symmetric InfoNCE on the
training split (epochs chosen on a held-out tenth of it: ``mvlt.train.teachers.dual``), scored
with the project's own retrieval code on the test split's 1 + 100 lists (the same lists as
``mvlt evaluate`` and ``mvlt demo`` draw with the same seed, or ``--candidates FILE``). Writes
``metrics.json`` (R@1/5/10 with standard errors, minutes on the clock, teacher features
included unless they were cached) and prints the headline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mvlt.data import open_catalogue
from mvlt.eval import names
from mvlt.eval.retrieval import RetrievalProtocol, load_candidates, run_retrieval
from mvlt.train.teachers.dual import DualEncoder, fit_dual_encoder
from mvlt.train.teachers.features import teacher_features


class FeatureEmbedder:
    """The run_retrieval ``Embedder`` over precomputed teacher features of the test split."""

    def __init__(self, pair: DualEncoder, features: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.image = pair.embed_images(features["image"])
            self.text = pair.embed_texts(features["text"])

    def images(self, rows: list[int]) -> torch.Tensor:
        return self.image[torch.tensor(rows, dtype=torch.long)]

    def texts(self, rows: list[int]) -> torch.Tensor:
        return self.text[torch.tensor(rows, dtype=torch.long)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a manifest with train and test splits")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dim", type=int, default=256, help="embedding width (256 as measured in the issue)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--candidates", type=Path, default=None, help="saved 1 + 100 lists (retrieval_candidates.json)"
    )
    p.add_argument("--cache", default=None, help="teacher feature cache (default $MVLT_CACHE_DIR/teachers)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train, test = (open_catalogue(args.data, split=s) for s in ("train", "test"))
    train_features = teacher_features(train, args.cache)
    test_features = teacher_features(test, args.cache)
    featured = time.perf_counter()
    groups = list(train.groups or train.product_ids)
    pair, fit = fit_dual_encoder(
        train_features["image"], train_features["text"], groups, args.dim, seed=args.seed
    )
    fitted = time.perf_counter()
    protocol = RetrievalProtocol(queries=args.queries, negatives=100, seed=args.seed)
    candidates = load_candidates(args.candidates) if args.candidates else None
    outcome = run_retrieval(
        test, None, None, protocol, candidates=candidates, scorers=("itc",),
        embedder=FeatureEmbedder(pair, test_features),
    )  # fmt: skip
    k = outcome.candidates.negatives
    record = {
        "name": f"baseline_frozen_dual_encoder_{args.dim}d",
        "fit": {"epochs": fit.epochs, "held_out_r1": fit.held_out_r1, "temperature": pair.temperature},
        "seconds": {
            "features": featured - started,
            "fit": fitted - featured,
            "total": time.perf_counter() - started,
        },
        "metrics": outcome.metrics,
    }
    for d in names.DIRECTIONS:
        for r in (1, 5, 10):
            key = names.recall(d, r, k)
            record[f"{d}_r{r}"] = outcome.metrics[key]
            record[f"{d}_r{r}_se"] = outcome.metrics[names.stderr(key)]
    record["minutes"] = record["seconds"]["total"] / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(
        f"baseline {args.dim} d ({fit.epochs} epochs): TIR R@1/5/10 "
        f"{100 * record['tir_r1']:.1f} / {100 * record['tir_r5']:.1f} / {100 * record['tir_r10']:.1f} %, ITR "
        f"{100 * record['itr_r1']:.1f} / {100 * record['itr_r5']:.1f} / {100 * record['itr_r10']:.1f} % "
        f"({record['minutes']:.1f} min)"
    )
    return record


if __name__ == "__main__":
    main()
