from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mvlt.data import (
    DataError,
    FashionGenCatalogue,
    PairDataset,
    Tokenizer,
    build_image_cache,
    open_catalogue,
    prepare_image,
)

DESCRIPTIONS = [
    "Robe en laine m\xe9rinos \xe0 col rond.".encode("latin-1"),  # non-ASCII latin-1 bytes
    b"Long sleeve cotton t-shirt in black.",
    "Sac \xe0 main \xabclassique\xbb en cuir.".encode("latin-1"),
    b"Slim-fit jeans in indigo denim.",
    b"Wool coat with notched lapels.",
]


def write_fashiongen(path: Path, numeric_ids: bool = True, descriptions: list[bytes] = DESCRIPTIONS) -> Path:
    """A small file in Fashion-Gen's layout: N x H x W x 3 images, (N, 1) byte-string columns."""
    n = len(descriptions)
    images = np.stack([np.full((16, 16, 3), 40 * i, dtype=np.uint8) for i in range(n)])
    with h5py.File(path, "w") as f:
        f.create_dataset("input_image", data=images, chunks=(1, 16, 16, 3))
        f.create_dataset("input_description", data=np.array(descriptions, dtype="S").reshape(n, 1))
        f.create_dataset(
            "input_name", data=np.array([b"NAME %d" % i for i in range(n)], dtype="S").reshape(n, 1)
        )
        cats = [b"DRESSES", b"TOPS", b"BAGS", b"JEANS", b"JACKETS & COATS"]
        f.create_dataset("input_category", data=np.array(cats[:n], dtype="S").reshape(n, 1))
        f.create_dataset(
            "input_subcategory", data=np.array([b"SUB%d" % (i % 2) for i in range(n)]).reshape(n, 1)
        )
        ids = [100 + i // 2 for i in range(n)]  # two poses per product
        data = (
            np.array(ids, dtype=np.int32)
            if numeric_ids
            else np.array([str(i).encode() for i in ids], dtype="S")
        )
        f.create_dataset("input_productID", data=data.reshape(n, 1))
    return path


@pytest.fixture
def h5_file(tmp_path: Path) -> Path:
    return write_fashiongen(tmp_path / "fashiongen_256_256_validation.h5")


def test_reads_metadata_latin1(h5_file: Path) -> None:
    cat = open_catalogue(h5_file)
    assert isinstance(cat, FashionGenCatalogue) and len(cat) == 5
    assert cat.texts[0] == "Robe en laine mérinos à col rond."
    assert cat.texts[2] == "Sac à main «classique» en cuir."
    assert cat.product_ids == ["100", "100", "101", "101", "102"] and cat.groups == cat.product_ids
    assert cat.categories[4] == "JACKETS & COATS" and cat.subcategories[:2] == ["SUB0", "SUB1"]
    assert cat._handle is None  # no image handle until an image is read
    item = cat[3]
    assert (item.product_id, item.category) == ("101", "JEANS")
    assert item.image.size == (16, 16) and item.image.getpixel((0, 0)) == (120, 120, 120)
    named = FashionGenCatalogue(h5_file, text_fields=("name", "description"))
    assert named.texts[1] == "NAME 1. Long sleeve cotton t-shirt in black."


def test_string_product_ids(tmp_path: Path) -> None:
    cat = open_catalogue(write_fashiongen(tmp_path / "f.h5", numeric_ids=False))
    assert cat.product_ids[0] == "100"


def test_split_selection(h5_file: Path) -> None:
    assert len(open_catalogue(h5_file.parent, split="validation")) == 5
    assert len(open_catalogue(h5_file.parent, split="test")) == 5  # no public test split
    with pytest.raises(ValueError, match="validation file; it cannot serve split 'train'"):
        open_catalogue(h5_file, split="train")


def test_empty_text_named_and_skippable(tmp_path: Path) -> None:
    path = write_fashiongen(tmp_path / "f.h5", descriptions=[*DESCRIPTIONS[:2], b"   ", DESCRIPTIONS[3]])
    with pytest.raises(DataError, match=r"row 3 \(HDF5 index 2\): empty text") as err:
        open_catalogue(path)
    assert str(path) in str(err.value)
    cat = open_catalogue(path, skip_bad_rows=True)
    assert (
        len(cat) == 3 and cat.skipped == Counter(empty_text=1) and cat.row_name(2) == "row 4 (HDF5 index 3)"
    )
    assert cat[2].image.getpixel((0, 0)) == (120, 120, 120)  # HDF5 index 3, not 2


def test_missing_dataset(tmp_path: Path) -> None:
    path = write_fashiongen(tmp_path / "f.h5")
    with h5py.File(path, "a") as f:
        del f["input_subcategory"]
    with pytest.raises(DataError, match="no 'input_subcategory' dataset"):
        open_catalogue(path)


def test_per_worker_handles(h5_file: Path, bert_vocab: Path) -> None:
    cat = open_catalogue(h5_file)
    cat.load_image(0)
    assert cat._handle is not None
    clone = pickle.loads(pickle.dumps(cat))  # what a spawned worker receives
    assert clone._handle is None and clone.load_image(1).getpixel((0, 0)) == (40, 40, 40)
    pairs = PairDataset(cat, Tokenizer.from_vocab(bert_vocab), image_size=16)
    loader = DataLoader(pairs, batch_size=2, num_workers=2, collate_fn=pairs.collate)
    batch_images = torch.cat([b["images"] for b in loader])
    expected = torch.tensor([40 * i / 255 for i in range(5)])
    assert torch.allclose(batch_images[:, 0, 0, 0], expected)


def test_image_cache_of_a_fashiongen_file(tmp_path: Path) -> None:
    """The cache holds the HDF5 images prepared at the training size; rewriting the file rebuilds it."""
    path = write_fashiongen(tmp_path / "fashiongen_256_256_train.h5")
    catalogue = open_catalogue(path, split="train")
    cache = build_image_cache(catalogue, 32, "pad", tmp_path / "cache", progress=False)
    assert all(torch.equal(cache.image(i), prepare_image(catalogue.load_image(i), 32)) for i in range(5))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = build_image_cache(
        open_catalogue(path, split="train"), 32, "pad", tmp_path / "cache", progress=False
    )
    assert again.path != cache.path
