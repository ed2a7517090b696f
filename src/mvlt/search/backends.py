"""Nearest-neighbour backends for the first stage: the top-k rows of ``vectors @ query``.

``exact`` (the default) is a numpy inner product over every row: on 11,715 products x 128 dims it
takes well under a millisecond, exact by construction, nothing to build or tune. The FAISS
backends (``hnsw``, ``ivf``; ``pip install faiss-cpu``) are for catalogues where a full scan is
too slow (millions of rows); they are approximate, and ``benchmarks/search.py --faiss`` measures
their recall@10 against ``exact``. FAISS is imported only when one of them is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

BACKENDS = ("exact", "hnsw", "ivf")


class Backend(Protocol):
    """Top-k inner-product search over fixed unit-length rows."""

    name: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)``, each ``Q x k``, best first; ties broken by the lower row."""
        ...

    def save(self, path: Path) -> None: ...


class ExactBackend:
    """Brute-force inner product in numpy (float32)."""

    name = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        rows = np.stack([top_k(s, k) for s in scores])
        return np.take_along_axis(scores, rows, axis=1), rows

    def save(self, path: Path) -> None:
        """Nothing to save: the embeddings are the index."""


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` highest ``scores``, best first, a tie going to the lower row (so results
    do not depend on how ``argpartition`` happened to cut)."""
    n = len(scores)
    k = min(k, n)
    rows = np.arange(n)
    if k < n:
        cut = scores[np.argpartition(-scores, k - 1)[:k]].min()
        rows = np.flatnonzero(scores >= cut)
    return rows[np.lexsort((rows, -scores[rows]))[:k]]


class FaissBackend:
    """A FAISS inner-product index (HNSW graph or IVF lists over flat vectors)."""

    def __init__(self, name: str, index: Any) -> None:
        self.name, self.index = name, index

    @classmethod
    def build(cls, name: str, vectors: np.ndarray, **params: Any) -> FaissBackend:
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        d = x.shape[1]
        if name == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(params.get("m", 32)), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params.get("ef_construction", 80))
            index.hnsw.efSearch = int(params.get("ef_search", 128))
        elif name == "ivf":
            # FAISS's rule of thumb, 4 sqrt(N) lists, with the >= 39 training points each it asks for
            nlist = int(params.get("nlist") or max(1, min(round(4 * np.sqrt(len(x))), len(x) // 39)))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = (
                x if len(x) <= 64 * nlist else x[np.random.default_rng(0).choice(len(x), 64 * nlist, False)]
            )
            index.train(sample)
            index.nprobe = int(params.get("nprobe", max(1, nlist // 16)))
        else:
            raise ValueError(f"unknown FAISS backend {name!r}; choose hnsw or ivf")
        index.add(x)
        return cls(name, index)

    @classmethod
    def load(cls, name: str, path: Path) -> FaissBackend:
        return cls(name, _faiss().read_index(str(path)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows.astype(np.int64)

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "the hnsw and ivf backends need FAISS: pip install faiss-cpu (or pip install 'mvlt[search]'); "
            "the exact backend needs nothing"
        ) from err
    return faiss


def make_backend(name: str, vectors: np.ndarray, saved: Path | None = None, **params: Any) -> Backend:
    """The backend ``name`` over ``vectors``; a FAISS index is read from ``saved`` when it exists."""
    if name == "exact":
        return ExactBackend(vectors)
    if name not in BACKENDS:
        raise ValueError(f"unknown search backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if saved is not None and saved.is_file():
        backend = FaissBackend.load(name, saved)
        if backend.index.ntotal == len(vectors) and backend.index.d == vectors.shape[1]:
            return backend
    return FaissBackend.build(name, vectors, **params)
