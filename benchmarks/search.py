"""Search benchmark: index build speed, query latency, index memory and retrieval quality.

On the H&M catalogue (``../shared/data/hm_fashion_11k``) with a trained checkpoint:

- **build**: an index of every product (11,715), in products/s (each = one image + one text);
- **latency**: text queries (test-split descriptions) through ``CatalogueIndex.search``, first
  stage alone and with ``--rerank`` (default 20), p50 / p95; photo queries the same;
- **memory**: the embeddings' bytes and the process's resident memory with the index loaded;
- **quality**: an index of the test split (2,408 products); each product's own text is the query,
  and R@1 / R@10 / R@50 of that product, first stage and two-stage;
- **FAISS** (``--faiss``): HNSW and IVF against exact on a synthetic clustered set of unit
  vectors (1 M x 128 by default): build time, recall@10, latency.

Targets (issue 13): first stage p50 <= 50 ms; with ``--rerank 20`` p50 <= 2 s.

    .venv/bin/python benchmarks/search.py --checkpoint runs/demo-hm/model [--quick] [--faiss]
                                          [--json FILE]

``--quick`` checks the script in a minute (500 products, fewer queries, a 100 k FAISS set).
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
from mvlt.search.backends import ExactBackend, make_backend

TARGETS_MS = {"first_stage_p50": 50.0, "rerank_p50": 2000.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=Path("runs/demo-hm/model"), help="trained checkpoint")
    p.add_argument("--data", default=str(HM_MANIFEST), help="catalogue (default: H&M)")
    p.add_argument(
        "--work", type=Path, default=None, help="where the indexes go (default: a temporary folder)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes: checks that the script works")
    p.add_argument("--queries", type=int, default=200, help="timed queries per latency row")
    p.add_argument("--rerank", type=int, default=20, help="ITM re-ranking depth (default 20)")
    p.add_argument("--quality-queries", type=int, default=None, help="default: every test product")
    p.add_argument("--no-quality", action="store_true", help="skip the test-split quality run")
    p.add_argument("--faiss", action="store_true", help="also measure HNSW / IVF on a synthetic set")
    p.add_argument("--faiss-n", type=int, default=1_000_000, help="synthetic vectors (default 1 M)")
    p.add_argument("--faiss-dim", type=int, default=128, help="their dimension (default 128)")
    p.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"), help="default: fp32 on CPU")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.queries = min(args.queries, 20)
        args.quality_queries = args.quality_queries or 100
        args.faiss_n = min(args.faiss_n, 100_000)
    return args


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def rss_mb() -> float:
    """Resident memory now (not the peak): what holding the index costs."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def timed(index: CatalogueIndex, queries: list[dict], **options: object) -> dict[str, float]:
    index.search(**queries[0], **options)  # warm-up: kernel selection, caches
    ms = []
    for q in queries:
        start = time.perf_counter()
        index.search(**q, **options)
        ms.append((time.perf_counter() - start) * 1000)
    return {**percentiles(ms), "queries": len(ms)}


def build_and_latency(args: argparse.Namespace, work: Path) -> dict:
    limit = 500 if args.quick else None
    start = time.perf_counter()
    index = CatalogueIndex.build(
        args.checkpoint,
        args.data,
        work / "all",
        limit=limit,
        precision=args.precision,
        progress=sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - start
    build = index.manifest["builds"][-1]
    del index
    before = rss_mb()
    index = CatalogueIndex.load(work / "all", precision=args.precision)
    loaded = rss_mb()
    test = open_catalogue(args.data, split="test")
    rng = np.random.default_rng(0)
    texts = [test.texts[i] for i in rng.choice(len(test), size=min(args.queries, len(test)), replace=False)]
    photos = [index.image_path(int(r)) for r in rng.choice(len(index), size=min(args.queries, len(index)))]
    return {
        "products": len(index),
        "image_size": index.manifest["embedding"]["image_size"],
        "precision": index.precision,
        "build_seconds": round(seconds, 1),
        "build_products_per_s": build["products_per_s"],
        "embeddings_mb": round(index.nbytes / 2**20, 2),
        "rss_mb_model_and_index": round(loaded, 1),
        "rss_mb_load_delta": round(loaded - before, 1),
        "text_first_stage": timed(index, [{"text": t} for t in texts], k=10),
        f"text_rerank_{args.rerank}": timed(index, [{"text": t} for t in texts], k=10, rerank=args.rerank),
        "photo_first_stage": timed(index, [{"image": p} for p in photos], k=10),
        f"photo_rerank_{args.rerank}": timed(index, [{"image": p} for p in photos], k=10, rerank=args.rerank),
    }


def quality(args: argparse.Namespace, work: Path) -> dict:
    index = CatalogueIndex.build(
        args.checkpoint,
        args.data,
        work / "test",
        split="test",
        precision=args.precision,
        progress=sys.stderr.isatty(),
    )
    rows = np.arange(len(index))
    if args.quality_queries and args.quality_queries < len(index):
        rows = np.sort(np.random.default_rng(1).choice(len(index), args.quality_queries, replace=False))
    out: dict = {"catalogue_products": len(index), "queries": len(rows), "rerank": args.rerank}
    for stage, rerank in (("first_stage", 0), ("two_stage", args.rerank)):
        ranks = []
        start = time.perf_counter()
        for r in rows.tolist():
            hits = index.search(index.products[r].text, k=50, rerank=rerank)
            ranks.append(next((h.rank for h in hits if h.row == r), 51))
        ranks_a = np.array(ranks)
        out[stage] = {f"r@{k}": round(float(np.mean(ranks_a <= k)), 4) for k in (1, 10, 50)}
        out[stage]["seconds"] = round(time.perf_counter() - start, 1)
    shared = len(index.products) - len({p.text for p in index.products})
    out["products_sharing_a_text"] = shared
    out["chance_r@1"] = round(1 / len(index), 5)
    return out


def clustered(n: int, d: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around ``centres``, generated in blocks (1 M x 128 floats = 512 MB)."""
    out = np.empty((n, d), dtype=np.float32)
    for at in range(0, n, 100_000):
        m = min(100_000, n - at)
        x = centres[rng.integers(0, len(centres), m)] + 0.5 * rng.standard_normal((m, d)).astype(
            np.float32
        ) / np.sqrt(d)
        out[at : at + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def faiss_recall(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.faiss_dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(args.faiss_n, args.faiss_dim, rng, centres)
    queries = clustered(200, args.faiss_dim, rng, centres)
    out: dict = {"vectors": args.faiss_n, "dim": args.faiss_dim, "queries": len(queries)}
    exact = ExactBackend(vectors)
    truth = exact.search(queries, 10)[1]
    rows = {"exact": (exact, 0.0)}
    for name in ("hnsw", "ivf"):
        start = time.perf_counter()
        rows[name] = (make_backend(name, vectors), time.perf_counter() - start)
    for name, (backend, build_s) in rows.items():
        ms, found = [], []
        for q in queries:
            start = time.perf_counter()
            found.append(backend.search(q[None], 10)[1][0])
            ms.append((time.perf_counter() - start) * 1000)
        recall = np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), np.array(found).tolist())]
        )
        out[name] = {
            "build_seconds": round(build_s, 1),
            "recall@10": round(float(recall), 4),
            **percentiles(ms),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.checkpoint.is_dir():
        raise SystemExit(f"--checkpoint {args.checkpoint}: not a checkpoint directory")
    if args.data != "synthetic" and not Path(args.data).exists():
        raise SystemExit(f"--data {args.data}: not found (set MVLT_SHARED or pass --data)")
    result: dict = {"machine": machine(), "checkpoint": str(args.checkpoint), "quick": args.quick}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        result["index"] = build_and_latency(args, work)
        report_index(result["index"], args.rerank)
        if not args.no_quality:
            result["quality"] = quality(args, work)
            report_quality(result["quality"])
    if args.faiss:
        result["faiss"] = faiss_recall(args)
        report_faiss(result["faiss"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def report_index(r: dict, rerank: int) -> None:
    first, second = r["text_first_stage"], r[f"text_rerank_{rerank}"]
    ok = lambda value, target: "meets" if value <= target else "MISSES"  # noqa: E731
    print(
        f"index of {r['products']} products at {r['image_size']} px ({r['precision']}): built in "
        f"{r['build_seconds']} s, {r['build_products_per_s']} products/s"
    )
    print(
        f"memory: embeddings {r['embeddings_mb']} MB; process RSS with model + index "
        f"{r['rss_mb_model_and_index']} MB (+{r['rss_mb_load_delta']} MB to load)"
    )
    print(
        f"text query, first stage: p50 {first['p50_ms']} ms, p95 {first['p95_ms']} ms "
        f"({ok(first['p50_ms'], TARGETS_MS['first_stage_p50'])} the 50 ms target)"
    )
    print(
        f"text query, rerank {rerank}: p50 {second['p50_ms']} ms, p95 {second['p95_ms']} ms "
        f"({ok(second['p50_ms'], TARGETS_MS['rerank_p50'])} the 2 s target)"
    )
    photo = r["photo_first_stage"]
    print(f"photo query, first stage: p50 {photo['p50_ms']} ms, p95 {photo['p95_ms']} ms")
    if f"photo_rerank_{rerank}" in r:
        photo = r[f"photo_rerank_{rerank}"]
        print(f"photo query, rerank {rerank}: p50 {photo['p50_ms']} ms, p95 {photo['p95_ms']} ms")


def report_quality(q: dict) -> None:
    print(
        f"quality: {q['queries']} test products' own texts against {q['catalogue_products']} test products "
        f"(chance R@1 {q['chance_r@1']:.2%}; {q['products_sharing_a_text']} share a text)"
    )
    for stage in ("first_stage", "two_stage"):
        s = q[stage]
        label = stage.replace("_", " ") + (f" (rerank {q['rerank']})" if stage == "two_stage" else "")
        print(
            f"  {label}: R@1 {s['r@1']:.1%}  R@10 {s['r@10']:.1%}  R@50 {s['r@50']:.1%}  ({s['seconds']} s)"
        )


def report_faiss(f: dict) -> None:
    print(f"FAISS on {f['vectors']:,} synthetic unit vectors x {f['dim']} ({f['queries']} queries, top 10):")
    for name in ("exact", "hnsw", "ivf"):
        r = f[name]
        print(
            f"  {name:<5} build {r['build_seconds']:>6} s  recall@10 {r['recall@10']:.3f}  "
            f"p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
