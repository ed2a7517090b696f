"""Shared fixtures. Tests that need the real H&M catalogue read it from ``../shared/data``.

When ``CI=true`` and the data is missing those tests fail instead of skipping, so CI can never
pass by silently testing less.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MVLT_SHARED", REPO_ROOT.parent / "shared"))
HM_DIR = SHARED / "data" / "hm_fashion_11k"
BERT_VOCAB = SHARED / "assets" / "bert-base-uncased-vocab.txt"


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"shared test data not found: {path} (set MVLT_SHARED to the folder holding data/ and assets/)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def hm_dir() -> Path:
    """The H&M catalogue folder (``metadata.csv`` + ``images/``)."""
    return _require(HM_DIR / "metadata.csv").parent


@pytest.fixture(scope="session")
def bert_vocab() -> Path:
    """The BERT-base-uncased ``vocab.txt`` the released code tokenizes with."""
    return _require(BERT_VOCAB)


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mvlt-cache")


@pytest.fixture(autouse=True)
def _private_cache(_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured ``--precision auto`` choices go to a folder of the test session, never the user's."""
    monkeypatch.setenv("MVLT_CACHE_DIR", str(_cache_dir))


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests run on 2 cores; keep torch from oversubscribing them."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


OFFICIAL_KEYS = SHARED / "reference" / "official_state_dict_keys.txt"


@pytest.fixture(scope="session")
def official_keys() -> Path:
    """The 266-tensor layout of the authors' released MVLT checkpoints."""
    return _require(OFFICIAL_KEYS)
