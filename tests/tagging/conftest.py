"""Tagging fixtures: a tiny random checkpoint (as search's), and a small synthetic catalogue written
as a manifest whose extra columns (colour, pattern) are the attributes a shop would tag."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mvlt.data import SyntheticCatalogue

from ..search.conftest import write_checkpoint

PRODUCTS = 24


def write_tagged_catalogue(folder: Path, products: int = PRODUCTS) -> Path:
    """``metadata.csv`` + ``images/*.png``, with ``colour``, ``pattern`` and ``split`` columns;
    the second row's colour (a test row) is left empty (a row a metric cannot score)."""
    source = SyntheticCatalogue(num_products=products, seed=1, image_size=40)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, attributes in enumerate(source.attributes):
        name = f"images/{source.product_ids[i]}.png"
        source[i].image.save(folder / name)
        rows.append(
            {
                "image": name,
                "text": source.texts[i],
                "category": source.categories[i],
                "subcategory": source.subcategories[i],
                "product_id": source.product_ids[i],
                "colour": "" if i == 1 else attributes["colour"].title(),
                "pattern": attributes["pattern"],
                "split": "test" if i % 2 else "train",
            }
        )
    manifest = folder / "metadata.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tagging") / "checkpoint")


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tagged_catalogue(tmp_path_factory.mktemp("tagging") / "shop")
