"""Tagging fixtures: a tiny random checkpoint (as search's), and a small synthetic catalogue written
as a manifest whose extra columns (colour, pattern) are the attributes a shop would tag."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mvlt.data import SyntheticCatalogue

from ..manifests import write_manifest
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
    write_manifest(manifest, rows)
    return manifest


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tagging") / "checkpoint")


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tagged_catalogue(tmp_path_factory.mktemp("tagging") / "shop")


def write_headed_checkpoint(folder: Path, manifest: Path) -> Path:
    """A random checkpoint (as :func:`write_checkpoint`'s) with tag heads for the manifest's colour
    and pattern columns and their label maps, as ``mvlt finetune --labels colour,pattern`` saves."""
    import torch

    import mvlt
    from mvlt.data import bert_tokenizer
    from mvlt.data.labels import LabelMaps

    from ..search.conftest import IMAGE_SIZE

    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    maps = LabelMaps.build([], [], {c: [r[c] for r in rows] for c in ("colour", "pattern")})
    torch.manual_seed(0)
    classes = {c: len(maps.tag_names(c)) for c in maps.tag_columns}
    model = mvlt.create_model(
        "mvlt_nano", image_size=IMAGE_SIZE, contrastive_dim=32, max_text_len=48, tag_classes=classes
    )
    model.tokenizer, model.label_maps = bert_tokenizer(max_length=48), maps
    return model.save_pretrained(folder)


@pytest.fixture(scope="session")
def headed_checkpoint(tmp_path_factory: pytest.TempPathFactory, shop: Path) -> Path:
    return write_headed_checkpoint(tmp_path_factory.mktemp("tagging") / "headed", shop)


def strip_text_heads(checkpoint: Path) -> Path:
    """``checkpoint`` as fine-tuned before text tag heads existed: its weights without them."""
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.startswith("text_tag_heads.")}, str(weights))
    return checkpoint
