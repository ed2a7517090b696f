"""First-stage backends: exact top-k (deterministic ties) and the FAISS indexes against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mvlt
from mvlt.search import CatalogueIndex
from mvlt.search.backends import ExactBackend, make_backend, top_k


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit rows around 50 centres, as embeddings of a catalogue's kinds of product are."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(50, d, seed + 100)
    x = centres[rng.integers(0, 50, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_top_k_is_sorted_and_breaks_ties_by_the_lower_row() -> None:
    scores = np.array([0.1, 0.5, 0.9, 0.5, 0.5, 0.2], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [2, 1, 3]
    assert top_k(scores, 10).tolist() == [2, 1, 3, 4, 5, 0]
    vectors = unit_rows(500, 16)
    queries = unit_rows(4, 16, seed=1)
    scores, rows = ExactBackend(vectors).search(queries, 7)
    full = queries @ vectors.T
    assert rows.tolist() == np.argsort(-full, axis=1, kind="stable")[:, :7].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, axis=1))


@pytest.mark.parametrize("name", ["hnsw", "ivf"])
def test_faiss_backends_recall_what_exact_finds(name: str, tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    vectors, queries = clustered_rows(4000, 32), clustered_rows(50, 32, seed=2)
    _, exact = ExactBackend(vectors).search(queries, 10)
    backend = make_backend(name, vectors)
    scores, found = backend.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.tolist(), found.tolist())])
    assert recall >= 0.9, f"{name} recall@10 {recall:.3f}"
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    backend.save(tmp_path / "saved.index")
    reloaded = make_backend(name, vectors, tmp_path / "saved.index")
    assert reloaded.search(queries, 10)[1].tolist() == found.tolist()


def test_an_index_built_with_hnsw_saves_and_uses_it(
    checkpoint: Path, catalogue: Path, tmp_path: Path
) -> None:
    pytest.importorskip("faiss")
    out = tmp_path / "index"
    index = CatalogueIndex.build(checkpoint, catalogue, out, backend="hnsw", precision="fp32")
    assert {"faiss-hnsw-images.index", "faiss-hnsw-texts.index"} <= {p.name for p in out.iterdir()}
    loaded = CatalogueIndex.load(out, precision="fp32")
    assert loaded.backend_name == "hnsw"
    exact = CatalogueIndex.load(out, precision="fp32", backend="exact")
    hits = [h.row for h in loaded.search("a green dress", k=5)]
    assert hits == [h.row for h in exact.search("a green dress", k=5)]  # 36 products: HNSW is exact
    assert index.backend("images").name == "hnsw"
    with pytest.raises(ValueError, match="unknown search backend"):
        make_backend("annoy", np.zeros((2, 2), np.float32))


def test_search_loads_lazily_and_nothing_below_imports_it() -> None:
    code = (
        "import sys, mvlt, mvlt.data, mvlt.model, mvlt.eval, mvlt.train; "
        "heavy = ('mvlt.search', 'fastapi', 'faiss', 'uvicorn'); "
        "bad = sorted(m for m in sys.modules if m.startswith(heavy)); "
        "import mvlt.search; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'faiss', 'uvicorn')); "
        "print(bad, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[] []"
    assert mvlt.CatalogueIndex is CatalogueIndex and "CatalogueIndex" in dir(mvlt)
