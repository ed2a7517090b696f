"""Fixtures of the training tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvlt.data.sources import open_catalogue
from mvlt.data.tokenizer import Tokenizer
from mvlt.train import train

from .helpers import IMAGE_SIZE, NUM_PRODUCTS, tiny_config


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small WordPiece vocabulary for the whole session, saved to disk.

    Runs that are compared with each other must share it: ``Tokenizer.train`` is not
    reproducible across processes (the same texts give a different vocabulary in each
    process), so runs that each trained their own would differ.
    """
    catalogue = open_catalogue("synthetic", split="train", num_products=NUM_PRODUCTS, image_size=IMAGE_SIZE)
    path = tmp_path_factory.mktemp("tokenizer")
    Tokenizer.train(catalogue.texts, 200).save(path)
    return path


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A saved pre-training run (3 steps): what fine-tuning starts from."""
    out = tmp_path_factory.mktemp("pretrained")
    train(tiny_config(out, tokenizer_dir, steps=3))
    return out
