"""Helpers for the data tests: tiny manifests with tiny images, written into ``tmp_path``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

COLUMNS = ("image", "text", "category", "subcategory", "product_id", "split")


def write_image(
    path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (24, 32)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def default_rows(n: int = 6) -> list[dict[str, str]]:
    """``n`` valid rows: two categories, alternating splits, zero-padded product ids."""
    return [
        {
            "image": f"images/{i:03d}.png",
            "text": f"A {'red' if i % 2 else 'blue'} product number {i}.",
            "category": "Tops" if i % 2 else "Bottoms",
            "subcategory": "Shirt" if i % 2 else "Skirt",
            "product_id": f"{i:010d}",
            "split": "train" if i < n - 2 else "test",
        }
        for i in range(n)
    ]


def write_csv(
    path: Path, rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS, images: bool = True
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    if images:
        for row in rows:
            if row.get("image"):
                write_image(path.parent / row["image"])
    return path


def write_jsonl(path: Path, rows: Sequence[dict[str, object]], images: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if images:
        for row in rows:
            if row.get("image"):
                write_image(path.parent / str(row["image"]))
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A valid 6-row CSV manifest with its images."""
    return write_csv(tmp_path / "metadata.csv", default_rows())


class Files:
    """The helpers above, as a fixture (test modules here are not a package, so they cannot import them)."""

    write_image = staticmethod(write_image)
    default_rows = staticmethod(default_rows)
    write_csv = staticmethod(write_csv)
    write_jsonl = staticmethod(write_jsonl)


@pytest.fixture
def files() -> type[Files]:
    return Files
