"""What an index folder holds, and how it is read and written.

::

    INDEX/
      index.json               format, the checkpoint that built it (path + content hash), the
                               catalogue (source, split, image folder), embedding settings, builds
      products.jsonl           one product per line: id, text, category, sub-category, image path
      embeddings.safetensors   "image" and "text": N x D float32, unit length (ITC)
      images/                  only for catalogues without image files (synthetic, Fashion-Gen .h5)
      faiss-*.index            only with a FAISS backend

The folder is always written whole into a temporary sibling and renamed into place
(:func:`mvlt.fileio.atomic_directory`), so an interrupted build or addition leaves the old index
or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..fileio import atomic_write, atomic_write_text, read_json

FORMAT = "mvlt-catalogue-index"
VERSION = 1
MANIFEST = "index.json"
PRODUCTS = "products.jsonl"
EMBEDDINGS = "embeddings.safetensors"
IMAGES = "images"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt")
"""The files whose bytes define the embeddings: architecture, weights and tokenizer."""


class IndexFileError(ValueError):
    """An index folder that is missing, damaged, or made by another checkpoint."""


@dataclass(frozen=True)
class Product:
    """One indexed product. ``image`` is relative to the index's image folder (or absolute when
    the catalogue pointed outside its folder: such images are searched, never served)."""

    product_id: str
    text: str
    category: str
    subcategory: str
    image: str


def checkpoint_sha256(directory: str | Path) -> str:
    """Content hash of a checkpoint: the bytes of its config, weights and tokenizer files, so a
    retrained, edited or re-tokenized checkpoint in the same folder hashes differently."""
    directory = Path(directory)
    digest = hashlib.sha256()
    found = 0
    for name in CHECKPOINT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        found += 1
        digest.update(name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(chunk)
    if not found:
        raise FileNotFoundError(f"checkpoint {directory}: no {', '.join(CHECKPOINT_FILES)} to hash")
    return digest.hexdigest()


def write_index(
    folder: Path, manifest: dict[str, Any], products: list[Product], images: np.ndarray, texts: np.ndarray
) -> None:
    """Write the three files of an index into ``folder`` (a temporary one: see the module doc)."""
    tensors = {
        "image": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
        "text": torch.from_numpy(np.ascontiguousarray(texts, dtype=np.float32)),
    }
    atomic_write(folder / EMBEDDINGS, lambda tmp: save_file(tensors, str(tmp), metadata={"format": FORMAT}))
    lines = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in products)
    atomic_write_text(folder / PRODUCTS, lines)
    atomic_write_text(folder / MANIFEST, json.dumps({**manifest, "products": len(products)}, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    missing = f"not a search index: {folder / MANIFEST} is missing (build one with `mvlt index`)"
    manifest = read_json(folder / MANIFEST, missing=missing, error=IndexFileError)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{folder / MANIFEST} is not an mvlt search index (format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise IndexFileError(
            f"{folder}: index format version {manifest.get('version')}, this mvlt reads {VERSION}; rebuild it"
        )
    return manifest


def read_products(folder: Path) -> list[Product]:
    path = folder / PRODUCTS
    if not path.is_file():
        raise IndexFileError(f"damaged index: {path} is missing")
    products = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            products.append(Product(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as err:
            raise IndexFileError(f"damaged index: {path} line {number}: {err}") from err
    return products


def read_embeddings(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, texts)``, both ``count x D`` float32."""
    path = folder / EMBEDDINGS
    if not path.is_file():
        raise IndexFileError(f"damaged index: {path} is missing")
    try:
        tensors = load_file(str(path))
        images, texts = tensors["image"].numpy(), tensors["text"].numpy()
    except (SafetensorError, OSError, KeyError) as err:
        raise IndexFileError(f"damaged index: {path} is not readable ({err})") from err
    if not len(images) == len(texts) == count:
        raise IndexFileError(
            f"damaged index: {path} holds {len(images)} image and {len(texts)} text embeddings for "
            f"{count} products"
        )
    return images, texts
