"""Loader benchmark: items/s of the pre-training loader (PretrainDataset + DataLoader + collate).

The loader must outrun training, or the model waits for data. Default: the H&M train split
(``../shared/data/hm_fashion_11k``) with 2 workers, shuffled like a training epoch, at 96 and
256 px, each size twice: decoding the JPEGs (``decode``) and reading the decoded-image cache
(``cache``, :mod:`mvlt.data.image_cache`; built first when missing, its build time reported).

    .venv/bin/python benchmarks/loader.py [--workers 2] [--batch-size 32] [--image-sizes 96,256]
                                          [--modes decode,cache] [--cache-dir DIR]
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

from mvlt.data import LabelMaps, PretrainDataset, Tokenizer, build_image_cache, open_catalogue
from mvlt.data.image_cache import cache_path

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
    parser.add_argument("--image-sizes", default="96,256", help="comma list of image sides in px")
    parser.add_argument("--modes", default="decode,cache", help="decode (JPEGs every time), cache, or both")
    parser.add_argument("--cache-dir", default=None, help="image cache folder (default: mvlt's)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches: worker start-up, caches")
    parser.add_argument("--resize", default="pad", choices=("pad", "crop_stretch"))
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Every (size, mode) pair of the arguments; the machine's details once."""
    torch.set_num_threads(1)  # the workers do the work; keep the main process from competing
    t0 = time.perf_counter()
    catalogue = open_catalogue(args.data, split=args.split)
    tokenizer = Tokenizer.from_vocab(args.vocab)
    label_maps = LabelMaps.from_catalogue(catalogue)
    open_s = time.perf_counter() - t0
    needed = (args.warmup + args.batches) * args.batch_size
    if needed > len(catalogue):
        raise SystemExit(f"{catalogue.source} has {len(catalogue)} items; lower --batches or --batch-size")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"decode", "cache"}:
        raise SystemExit(f"--modes {args.modes}: choose from decode, cache")
    runs = []
    for size in (int(s) for s in args.image_sizes.split(",") if s.strip()):
        for mode in modes:
            cache, build_s = None, None
            if mode == "cache":
                fresh = not cache_path(catalogue, size, args.resize, args.cache_dir).is_file()
                t1 = time.perf_counter()
                cache = build_image_cache(catalogue, size, args.resize, args.cache_dir)
                build_s = round(time.perf_counter() - t1, 2) if fresh else None
            dataset = PretrainDataset(catalogue, tokenizer, label_maps=label_maps, image_size=size,
                                      resize=args.resize, image_cache=cache)  # fmt: skip
            runs.append(
                {"image_size": size, "mode": mode, "cache_build_s": build_s, **measure(args, dataset)}
            )
    return {
        "data": catalogue.source,
        "split": args.split,
        "items_in_split": len(catalogue),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "resize": args.resize,
        "timed_batches": args.batches,
        "open_s": round(open_s, 2),
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def measure(args: argparse.Namespace, dataset: PretrainDataset) -> dict[str, object]:
    """Items/s of one loader over ``dataset``, after untimed warm-up batches."""
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
        "timed_items": items,
        "seconds": round(timed_s, 3),
        "items_per_s": round(items / timed_s, 1),
        "ms_per_batch": round(1000 * timed_s / args.batches, 1),
        "warmup_s": round(warmup_s, 2),
        "mean_text_length": round(sum(lengths) / len(lengths), 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    rows = [
        ("catalogue", f"{result['data']} [{result['split']}], {result['items_in_split']} items"),
        (
            "workers / batch",
            f"{result['workers']} / {result['batch_size']}, {result['timed_batches']} batches",
        ),
        ("open", f"{result['open_s']} s"),
    ]
    decoded: dict[object, float] = {}
    for r in result["runs"]:  # type: ignore[attr-defined]
        value = f"{r['items_per_s']} items/s ({r['ms_per_batch']} ms/batch, warm-up {r['warmup_s']} s)"
        if r["mode"] == "decode":
            decoded[r["image_size"]] = r["items_per_s"]
        elif r["image_size"] in decoded:
            value += f", {r['items_per_s'] / decoded[r['image_size']]:.1f}x decoding"
        if r["cache_build_s"] is not None:
            value += f"; cache built in {r['cache_build_s']} s"
        rows.append((f"{r['image_size']} px, {r['mode']}", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
