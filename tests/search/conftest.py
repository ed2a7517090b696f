"""Search fixtures: a tiny random ``mvlt_nano`` checkpoint and a small synthetic catalogue written to
disk as a manifest with PNG files (what a shop's catalogue looks like), and an index of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.data import SyntheticCatalogue, bert_tokenizer

from ..manifests import write_manifest

PRODUCTS = 36
IMAGE_SIZE = 32


def write_checkpoint(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = mvlt.create_model("mvlt_nano", image_size=IMAGE_SIZE, contrastive_dim=32, max_text_len=48)
    model.tokenizer = bert_tokenizer(max_length=48)
    return model.save_pretrained(folder)


def write_catalogue(folder: Path, products: int = PRODUCTS, seed: int = 0) -> Path:
    """The synthetic catalogue's products as ``metadata.csv`` + ``images/*.png`` in ``folder``."""
    source = SyntheticCatalogue(num_products=products, seed=seed, image_size=48)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(source)):
        name = f"images/{source.product_ids[i]}.png"
        source[i].image.save(folder / name)
        rows.append(
            {
                "image": name,
                "text": source.texts[i],
                "category": source.categories[i],
                "subcategory": source.subcategories[i],
                "product_id": source.product_ids[i],
            }
        )
    manifest = folder / "metadata.csv"
    write_manifest(manifest, rows)
    return manifest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("search") / "checkpoint")


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("search") / "shop")


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, catalogue: Path) -> Path:
    """An fp32 index of the whole catalogue (read-only: tests that change an index build their own)."""
    out = tmp_path_factory.mktemp("search") / "index"
    mvlt.CatalogueIndex.build(checkpoint, catalogue, out, precision="fp32")
    return out


@pytest.fixture(scope="session")
def index(index_dir: Path) -> mvlt.CatalogueIndex:
    return mvlt.CatalogueIndex.load(index_dir, precision="fp32")
