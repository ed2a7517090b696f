"""ONNX runtime benchmark: the first stage's quality and query latency, PyTorch against the exported
encoders (``mvlt export``) in onnxruntime, fp32 and int8.

- **quality**: an index of the H&M test split (2,408 products) built with each runtime; each
  product's text is the query, its image the answer (and the reverse), recall@1/10/50 of the first
  stage; also int8 queries against the PyTorch-built index (how a server with ``--runtime
  onnx-int8`` searches an index built in fp32). Rank = 1 + products scored strictly higher.
- **agreement**: max |difference| of each runtime's embeddings from PyTorch's, over the test split;
- **latency**: ``CatalogueIndex.search`` at batch 1 (one query at a time, as the server runs
  them), text and photo queries, first stage alone, p50 / p95 per runtime.

    .venv/bin/python benchmarks/onnx_runtime.py --checkpoint CKPT --onnx DIR [--threads 2]
                                                [--queries 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HM_MANIFEST, machine
from mvlt.data import open_catalogue
from mvlt.search import CatalogueIndex

RUNTIMES = ("torch", "onnx", "onnx-int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint")
    p.add_argument("--onnx", type=Path, required=True, help="its `mvlt export --format onnx` folder")
    p.add_argument("--data", default=str(HM_MANIFEST), help="catalogue (default: H&M)")
    p.add_argument("--split", default="test", help="the products to index and query: test (default) or all")
    p.add_argument("--limit", type=int, default=None, help="only the first N products (a quick check)")
    p.add_argument("--queries", type=int, default=200, help="timed queries per latency row")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--image-cache", default="auto", help="decoded-image cache (as mvlt index)")
    p.add_argument("--work", type=Path, default=None, help="where the indexes go (default: temporary)")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    args.split = None if args.split == "all" else args.split
    return args


def recall(queries: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    """R@1/10/50 of row i of ``answers`` for query i."""
    scores = queries @ answers.T
    own = np.diag(scores)[:, None]
    ranks = 1 + (scores > own).sum(1)
    return {f"r@{k}": round(float(np.mean(ranks <= k)), 4) for k in (1, 10, 50)}


def quality(embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    out = {}
    for runtime, (images, texts) in embeddings.items():
        out[runtime] = {"text_to_image": recall(texts, images), "image_to_text": recall(images, texts)}
    images, _ = embeddings["torch"]
    out["onnx-int8 queries, torch index"] = {
        "text_to_image": recall(embeddings["onnx-int8"][1], images),
        "image_to_text": recall(embeddings["onnx-int8"][0], embeddings["torch"][1]),
    }
    return out


def timed(index: CatalogueIndex, queries: list[dict]) -> dict[str, float]:
    for q in queries[:5]:
        index.search(**q, k=10)  # warm-up: kernel selection, caches
    ms = []
    for q in queries:
        start = time.perf_counter()
        index.search(**q, k=10)
        ms.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "queries": len(ms),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work_dir = tempfile.TemporaryDirectory() if args.work is None else None
    work = args.work or Path(work_dir.name)
    embeddings, builds = {}, {}
    for runtime in RUNTIMES:
        onnx = None if runtime == "torch" else args.onnx
        index = CatalogueIndex.build(
            args.checkpoint, args.data, work / runtime, split=args.split, limit=args.limit,
            precision="fp32", image_cache=args.image_cache, runtime=runtime, onnx=onnx,
        )  # fmt: skip
        embeddings[runtime] = (index.embeddings["images"], index.embeddings["texts"])
        build = index.manifest["builds"][-1]
        builds[runtime] = {"seconds": build["seconds"], "products_per_s": build["products_per_s"]}
    reference = embeddings["torch"]
    agreement = {
        runtime: {
            kind: float(np.abs(got - want).max())
            for kind, got, want in zip(("images", "texts"), pair, reference)
        }
        for runtime, pair in embeddings.items()
        if runtime != "torch"
    }
    test = open_catalogue(args.data, split=args.split)
    rng = np.random.default_rng(0)
    n = min(args.queries, len(test))
    texts = [{"text": test.texts[i]} for i in rng.choice(len(test), size=n, replace=False)]
    latency = {}
    for runtime in RUNTIMES:
        onnx = None if runtime == "torch" else args.onnx
        index = CatalogueIndex.load(work / "torch", precision="fp32", runtime=runtime, onnx=onnx)
        photos = [{"image": index.image_path(int(r))} for r in rng.choice(len(index), size=n)]
        latency[runtime] = {
            "text_first_stage": timed(index, texts),
            "photo_first_stage": timed(index, photos),
        }
    report = {
        "checkpoint": str(args.checkpoint),
        "onnx": str(args.onnx),
        "products": len(reference[0]),
        "split": args.split,
        "builds": builds,
        "max_abs_diff_vs_torch": agreement,
        "quality_first_stage": quality(embeddings),
        "latency_batch_1": latency,
        "machine": machine(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if work_dir is not None:
        work_dir.cleanup()
    return report


if __name__ == "__main__":
    main()
