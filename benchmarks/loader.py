"""Loader benchmark: items/s of the pre-training loader (PretrainDataset + DataLoader + collate).

The loader must outrun training, or the model waits for data. Default: the H&M train split
(``../shared/data/hm_fashion_11k``) at 256 px with 2 workers, shuffled like a training epoch.

    .venv/bin/python benchmarks/loader.py [--workers 2] [--batch-size 32] [--image-size 256]
                                          [--batches 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mvlt.data import LabelMaps, PretrainDataset, Tokenizer, open_catalogue

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MVLT_SHARED", REPO.parent / "shared"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=str(SHARED / "data" / "hm_fashion_11k"), help="catalogue (default H&M)"
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--vocab", default=str(SHARED / "assets" / "bert-base-uncased-vocab.txt"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="timed batches (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches: worker start-up, caches")
    parser.add_argument("--resize", default="pad", choices=("pad", "crop_stretch"))
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(1)  # the workers do the work; keep the main process from competing
    t0 = time.perf_counter()
    catalogue = open_catalogue(args.data, split=args.split)
    tokenizer = Tokenizer.from_vocab(args.vocab)
    dataset = PretrainDataset(
        catalogue,
        tokenizer,
        label_maps=LabelMaps.from_catalogue(catalogue),
        image_size=args.image_size,
        resize=args.resize,
    )
    open_s = time.perf_counter() - t0
    needed = (args.warmup + args.batches) * args.batch_size
    if needed > len(dataset):
        raise SystemExit(f"{catalogue.source} has {len(dataset)} items; lower --batches or --batch-size")
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=args.workers,
        collate_fn=dataset.collate,
        drop_last=True,
    )
    batches = iter(loader)
    t1 = time.perf_counter()
    for _ in range(args.warmup):
        next(batches)
    warmup_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    items, lengths = 0, []
    for _ in range(args.batches):
        batch = next(batches)
        items += batch["images"].shape[0]
        lengths.append(batch["input_ids"].shape[1])
    timed_s = time.perf_counter() - t2
    del batches
    return {
        "data": catalogue.source,
        "split": args.split,
        "items_in_split": len(catalogue),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "resize": args.resize,
        "timed_batches": args.batches,
        "timed_items": items,
        "seconds": round(timed_s, 3),
        "items_per_s": round(items / timed_s, 1),
        "ms_per_batch": round(1000 * timed_s / args.batches, 1),
        "open_s": round(open_s, 2),
        "warmup_s": round(warmup_s, 2),
        "mean_text_length": round(sum(lengths) / len(lengths), 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    rows = [
        ("catalogue", f"{result['data']} [{result['split']}], {result['items_in_split']} items"),
        (
            "workers / batch / image",
            f"{result['workers']} / {result['batch_size']} / {result['image_size']} px",
        ),
        (
            "timed",
            f"{result['timed_items']} items in {result['seconds']} s ({result['ms_per_batch']} ms/batch)",
        ),
        ("throughput", f"{result['items_per_s']} items/s"),
        ("open + warm-up", f"{result['open_s']} s + {result['warmup_s']} s"),
        ("padded text length", f"{result['mean_text_length']} tokens (mean of batch maxima)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
