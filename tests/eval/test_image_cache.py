"""Evaluation (and the search index, through the same context) reads the decoded-image cache:
the same pixels as decoding each image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mvlt.data import build_image_cache, open_catalogue
from mvlt.eval.context import EvalContext

from ..manifests import write_manifest


def _manifest(folder: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"images/{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (50 + 9 * i, 70, 3), dtype=np.uint8)).save(folder / name)
        rows.append(
            {"image": name, "text": f"item {i}", "category": "c", "subcategory": "s", "product_id": str(i)}
        )
    path = folder / "metadata.csv"
    write_manifest(path, rows)
    return path


def test_context_pixels_from_the_cache_are_the_decoded_ones(tmp_path: Path) -> None:
    catalogue = open_catalogue(_manifest(tmp_path / "data"))
    cache = build_image_cache(catalogue, 32, "crop_stretch", tmp_path / "cache", progress=False)
    cpu = torch.device("cpu")
    plain = EvalContext(None, catalogue, None, cpu, image_size=32, resize="crop_stretch")
    cached = EvalContext(None, catalogue, None, cpu, image_size=32, resize="crop_stretch", image_cache=cache)
    rows = list(range(len(catalogue)))
    assert torch.equal(plain.images(rows), cached.images(rows))
    assert all(torch.equal(plain.pixels(r), cached.pixels(r)) for r in rows)
    assert not cached._images  # the mapped file is the cache: nothing kept in memory
