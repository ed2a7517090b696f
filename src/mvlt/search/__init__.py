"""Catalogue search: ``mvlt index``, ``mvlt search`` and ``mvlt serve``.

:class:`CatalogueIndex` embeds a catalogue once with a checkpoint's ITC heads and answers text or
photo queries with an embedding shortlist re-ranked by ITM. The web server (:mod:`.serve`, FastAPI)
and the FAISS backends are imported only when used, so this package needs neither.
"""

from .backends import BACKENDS
from .index import OVER, CatalogueIndex, IndexMismatchError, QueryError, SearchHit
from .store import IndexFileError, checkpoint_sha256

__all__ = [
    "BACKENDS",
    "OVER",
    "CatalogueIndex",
    "IndexFileError",
    "IndexMismatchError",
    "QueryError",
    "SearchHit",
    "checkpoint_sha256",
]
