"""Two-stage catalogue search: an ITC embedding shortlist, then ITM re-ranks its top K.

A cross-encoder alone cannot search a catalogue interactively (one joint pass per product and
query), so the index stores each product's unit-length image and text embeddings once
(``model.encode_images`` / ``encode_texts``), a query is embedded once, and the first stage is an
inner product over the index. ``rerank=K`` then scores the top K (query, product) pairs with the
ITM head and orders them by ITC logit (cosine / temperature) + ITM log-odds: the ``itc+itm``
scorer of the evaluation (``mvlt.eval.retrieval``, ``mvlt.eval.scoring``), whose functions
this module reuses.

A text query is matched against the products' images and a photo against their texts (the
cross-modal directions the model is trained and evaluated on); ``over`` can choose the same
modality instead (look-alike photos, similar descriptions), without re-ranking.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.catalogue import Catalogue
from ..data.image_cache import ImageCache, open_image_cache
from ..data.images import ImageLoadError, load_image, prepare_image
from ..data.sources import open_catalogue
from ..eval.context import EvalContext
from ..eval.retrieval import product_rows, reranked_scores
from ..eval.scoring import model_embedder, model_scorer
from ..exits import UsageError
from ..fileio import atomic_directory
from ..runtime import resolve_device, resolve_precision
from . import store
from .backends import Backend, make_backend
from .onnx_encoders import open_encoders
from .store import IndexFileError, Product, checkpoint_sha256

log = logging.getLogger("mvlt.search")

OVER = ("images", "texts")
"""What a query is compared with: the products' images or their texts."""


class IndexMismatchError(IndexFileError):
    """The index was built by another checkpoint: its embeddings do not fit this model."""


class QueryError(UsageError):
    """A query the index cannot answer (no text or photo, both, a bad ``k``...): the asker's error."""


@dataclass(frozen=True)
class SearchHit:
    """One result. ``score`` orders the results: the cosine in the first stage, ITC logit + ITM
    log-odds (``stage == "rerank"``) for the re-ranked top K, which always come first."""

    rank: int
    row: int
    product_id: str
    text: str
    category: str
    subcategory: str
    image: str
    score: float
    cosine: float
    match: float | None
    stage: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IndexCatalogue(Catalogue):
    """The indexed products as a catalogue, so evaluation's input pipeline (``EvalContext``:
    prepared-image cache, tokenizing) serves the re-ranking stage too."""

    def __init__(self, products: Sequence[Product], root: Path, source: str) -> None:
        super().__init__(source)
        self.root = root
        self.texts = [p.text for p in products]
        self.product_ids = [p.product_id for p in products]
        self.categories = [p.category for p in products]
        self.subcategories = [p.subcategory for p in products]
        self.groups = list(self.product_ids)
        self.image_paths = [root / p.image for p in products]  # an absolute image stays absolute

    def load_image(self, index: int) -> Image.Image:
        return load_image(self.image_paths[index])


# ------------------------------------------------------------------------------------- helpers
def _load_model(checkpoint: Path, device: torch.device) -> Any:
    from ..model import MVLT

    if not checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: not a checkpoint directory")
    model = MVLT.from_pretrained(checkpoint).eval().to(device)
    if model.tokenizer is None:
        raise ValueError(f"checkpoint {checkpoint} has no tokenizer (tokenizer_config.json + vocab.txt)")
    if model.itc_head is None:
        raise ValueError(
            f"checkpoint {checkpoint} has no ITC heads (contrastive_dim = 0: the paper's recipe or the "
            "authors' weights), so it has no embeddings to index; train with the default recipe"
        )
    return model


def _context(
    model: Any,
    catalogue: Any,
    device: torch.device,
    precision: str,
    settings: dict[str, Any],
    cache_bytes: int,
    image_cache: ImageCache | None = None,
) -> EvalContext:
    return EvalContext(
        model,
        catalogue,
        model.tokenizer,
        device,
        precision,
        int(settings["image_size"]),
        settings["resize"],
        int(settings["batch_size"]),
        cache_bytes,
        image_cache=image_cache,
    )


def _image_entry(catalogue: Any, row: int, root: Path | None, folder: Path, number: int) -> str:
    """Where product ``row``'s image is, relative to the index's image folder ``root``; a
    catalogue without image files (``root`` None) has its image written into the index."""
    if root is None:
        name = f"{store.IMAGES}/{number:07d}.png"
        (folder / store.IMAGES).mkdir(exist_ok=True)
        catalogue[row].image.save(folder / name)
        return name
    path = Path(os.path.abspath(catalogue.image_paths[row]))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def search_precision(requested: str | None, device: torch.device) -> str:
    """``fp32`` on CPU unless asked otherwise; ``auto`` elsewhere. On CPU, bf16 kernels are built
    anew for every new input shape (each query's text length, each batch's padding): measured
    ~30-200 ms per new shape against ~2 ms for a query in fp32, and a 2x slower index build."""
    if requested is None:
        requested = "fp32" if device.type == "cpu" else "auto"
    return resolve_precision(requested, device).name


def _check_range(name: str, value: int, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise QueryError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------- index
class CatalogueIndex:
    """A built index, loaded with the model that made it. Build with :meth:`build`, open with
    :meth:`load`, grow with :meth:`add`, query with :meth:`search` (thread-safe: one at a time)."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        products: list[Product],
        images: np.ndarray,
        texts: np.ndarray,
        model: Any,
        device: torch.device,
        precision: str,
        backend: str = "exact",
        encoder: Any = None,
    ) -> None:
        self.path, self.manifest, self.products = path, manifest, products
        self.embeddings = {"images": images, "texts": texts}
        self.model, self.device, self.precision = model, device, precision
        self.encoder = encoder if encoder is not None else model  # ITC embeddings: the model or ONNX
        self.runtime = getattr(encoder, "runtime", "torch")
        self.backend_name = backend
        self.kept = 0  # products the last add() found already indexed and left as they were
        root = manifest["catalogue"]["root"]
        self.root = Path(root) if root is not None else path
        self.catalogue = IndexCatalogue(products, self.root, manifest["catalogue"]["source"])
        self._ctx = _context(model, self.catalogue, device, precision, manifest["embedding"], 256 << 20)
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self.itc_scale = 1.0 / float(model.itc_head.clamped_temperature().detach())

    def __len__(self) -> int:
        return len(self.products)

    def __repr__(self) -> str:
        return (
            f"CatalogueIndex({str(self.path)!r}, {len(self)} products, backend={self.backend_name!r}, "
            f"runtime={self.runtime!r})"
        )

    @property
    def checkpoint(self) -> dict[str, Any]:
        return self.manifest["checkpoint"]

    @property
    def nbytes(self) -> int:
        """Memory held by the embeddings (the FAISS structures, when used, come on top)."""
        return sum(int(e.nbytes) for e in self.embeddings.values())

    # ----------------------------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        checkpoint: str | Path,
        data: str | Path | Catalogue,
        out: str | Path,
        *,
        split: str | None = None,
        limit: int | None = None,
        backend: str = "exact",
        batch_size: int = 64,
        device: str = "cpu",
        precision: str | None = None,
        resize: str = "pad",
        progress: bool = False,
        skip_bad_rows: bool = False,
        image_cache: str = "off",
        runtime: str = "torch",
        onnx: str | Path | None = None,
    ) -> CatalogueIndex:
        """Embed every product of ``data`` (a manifest, a folder, a Fashion-Gen file, ``synthetic``
        or a :class:`Catalogue`) with ``checkpoint`` and write the index to ``out`` atomically.

        One row per product (a product's first row). ``limit`` keeps the first N products.
        ``image_cache`` (``off``, ``auto`` or a folder): read the images from the decoded-image
        cache of the whole catalogue (:mod:`mvlt.data.image_cache`), built first if needed; off by
        default, since an index reads each image once (and ``add`` only the new ones).
        ``runtime``: ``torch``, or ``onnx`` / ``onnx-int8`` with ``onnx`` an ``mvlt export`` folder
        of the same checkpoint (:mod:`mvlt.search.onnx_encoders`): what computes the embeddings.
        """
        checkpoint, out = Path(checkpoint), Path(out)
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be >= 1, got {limit}")
        dev = resolve_device(device)
        chosen = search_precision(precision, dev)
        model = _load_model(checkpoint, dev)
        sha256 = checkpoint_sha256(checkpoint)
        encoder = open_encoders(runtime, onnx, sha256)
        catalogue = data if isinstance(data, Catalogue) else _open(data, split, skip_bad_rows)
        root = getattr(catalogue, "root", None)
        manifest: dict[str, Any] = {
            "format": store.FORMAT,
            "version": store.VERSION,
            "checkpoint": {"path": str(checkpoint.resolve()), "sha256": sha256},
            "catalogue": {
                "source": str(catalogue.source),
                "split": catalogue.split,
                "root": str(Path(os.path.abspath(root))) if root is not None else None,
            },
            "embedding": {
                "image_size": int(model.config.image_size),
                "resize": resize,
                "precision": chosen,
                "batch_size": int(batch_size),
                "dim": int(model.embedding_dim),
            },
            "backend": backend,
            "builds": [],
        }
        index = cls(out, manifest, [], *_empty(model), model, dev, chosen, backend, encoder)
        return index._extend(catalogue, limit, progress, fresh=True, image_cache=image_cache)

    def add(
        self,
        data: str | Path | Catalogue,
        *,
        split: str | None = None,
        limit: int | None = None,
        progress: bool = False,
        skip_bad_rows: bool = False,
        image_cache: str = "off",
    ) -> int:
        """Embed the products of ``data`` not in the index yet (by product id) and rewrite the
        index atomically; the old rows are not re-embedded. Returns how many were added.
        ``image_cache``: as in :meth:`build`.

        Products already in the index keep their text, category and embeddings even when ``data``
        changed them (an addition never rewrites a row: a rebuild does); they are counted in
        :attr:`kept` and logged, so that a changed product is not mistaken for an updated one."""
        catalogue = data if isinstance(data, Catalogue) else _open(data, split, skip_bad_rows)
        before = len(self)
        known = {p.product_id for p in self.products}
        self.kept = len(known & set(catalogue.product_ids))
        self._extend(catalogue, limit, progress, fresh=False, image_cache=image_cache)
        if self.kept:
            log.info("%d products already in the index kept as they are; rebuild to update them", self.kept)
        return len(self) - before

    def _extend(
        self, catalogue: Any, limit: int | None, progress: bool, fresh: bool, image_cache: str = "off"
    ) -> CatalogueIndex:
        root_text = self.manifest["catalogue"]["root"]
        own_images = root_text is None
        root = getattr(catalogue, "root", None)
        if not fresh and own_images != (root is None):
            kind = "writes its product images itself" if own_images else f"reads images from {root_text}"
            raise UsageError(
                f"cannot add {catalogue.source} to {self.path}: the index {kind}; build a new index"
            )
        if not fresh and root is not None and Path(os.path.abspath(root)) != Path(root_text):
            raise UsageError(
                f"cannot add {catalogue.source} to {self.path}: its images are in {root}, the index's "
                f"in {root_text}; put the new manifest in that folder or build a new index"
            )
        known = {p.product_id for p in self.products}
        rows = [r for pid, r in product_rows(catalogue.product_ids).items() if pid not in known]
        rows = rows[:limit] if limit is not None else rows
        if not rows and not fresh:
            return self  # nothing new: the index stays as it is
        settings = self.manifest["embedding"]
        cache = open_image_cache(catalogue, int(settings["image_size"]), settings["resize"], image_cache,
                                 progress=progress)  # fmt: skip
        ctx = _context(self.model, catalogue, self.device, self.precision, settings, 0, cache)
        embed = model_embedder(self.encoder, ctx, ctx.batch_size, ctx.autocast)
        start = time.perf_counter()
        with atomic_directory(self.path) as tmp:
            if not fresh and own_images and (self.path / store.IMAGES).is_dir():
                shutil.copytree(self.path / store.IMAGES, tmp / store.IMAGES, copy_function=os.link)
            image_root = None if own_images else Path(root_text)
            products = [
                Product(
                    catalogue.product_ids[r],
                    catalogue.texts[r],
                    catalogue.categories[r],
                    catalogue.subcategories[r],
                    _image_entry(catalogue, r, image_root, tmp, len(self) + i),
                )
                for i, r in enumerate(rows)
            ]
            images, texts = [self.embeddings["images"]], [self.embeddings["texts"]]
            bar = tqdm(total=len(rows), unit="product", desc="embedding", disable=not progress)
            with torch.inference_mode():
                for at in range(0, len(rows), 4 * ctx.batch_size):
                    chunk = rows[at : at + 4 * ctx.batch_size]
                    images.append(embed.images(chunk).numpy())
                    texts.append(embed.texts(chunk).numpy())
                    bar.update(len(chunk))
            bar.close()
            seconds = time.perf_counter() - start
            all_images, all_texts = np.concatenate(images), np.concatenate(texts)
            build = {
                "added": len(rows),
                "source": str(catalogue.source),
                "split": catalogue.split,
                "precision": self.precision,
                "runtime": self.runtime,
                "seconds": round(seconds, 3),
                "products_per_s": round(len(rows) / seconds, 2) if seconds > 0 else None,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            manifest = {**self.manifest, "builds": [*self.manifest["builds"], build]}
            store.write_index(tmp, manifest, [*self.products, *products], all_images, all_texts)
            if self.backend_name != "exact":
                for over, vectors in (("images", all_images), ("texts", all_texts)):
                    make_backend(self.backend_name, vectors).save(tmp / _faiss_name(self.backend_name, over))
        self.manifest = store.read_manifest(self.path)
        self.products = [*self.products, *products]
        self.embeddings = {"images": all_images, "texts": all_texts}
        self.catalogue = IndexCatalogue(self.products, self.root, self.manifest["catalogue"]["source"])
        self._ctx = _context(
            self.model, self.catalogue, self.device, self.precision, self.manifest["embedding"], 256 << 20
        )
        self._backends.clear()
        return self

    # ------------------------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        checkpoint: str | Path | None = None,
        backend: str | None = None,
        device: str = "cpu",
        precision: str | None = None,
        runtime: str = "torch",
        onnx: str | Path | None = None,
    ) -> CatalogueIndex:
        """Open an index and the checkpoint that built it (``checkpoint`` if it moved; its content
        hash must match the one recorded, or :class:`IndexMismatchError` says so). ``runtime`` and
        ``onnx``: as in :meth:`build`."""
        path = Path(path)
        manifest, products, images, texts = _read(path)
        recorded = manifest["checkpoint"]
        ckpt = Path(checkpoint) if checkpoint is not None else Path(recorded["path"])
        if not ckpt.is_dir():
            hint = "" if checkpoint is not None else " (where it was at build time); pass --checkpoint DIR"
            raise FileNotFoundError(f"checkpoint {ckpt} that built the index {path} not found{hint}")
        found = checkpoint_sha256(ckpt)
        if found != recorded["sha256"]:
            raise IndexMismatchError(
                f"index {path} was built by another checkpoint: {recorded['path']} with sha256 "
                f"{recorded['sha256'][:16]}, but {ckpt} has sha256 {found[:16]}; its embeddings do not "
                f"fit this model. Rebuild the index (`mvlt index --checkpoint {ckpt} ...`) or pass the "
                "checkpoint that built it"
            )
        dev = resolve_device(device)
        chosen = search_precision(precision, dev)
        model = _load_model(ckpt, dev)
        encoder = open_encoders(runtime, onnx, found)
        backend = backend or manifest.get("backend", "exact")
        return cls(path, manifest, products, images, texts, model, dev, chosen, backend, encoder)

    def reopen(self) -> CatalogueIndex:
        """The index as its folder holds it now (after an ``add`` by another process), sharing
        this one's model, encoders and settings, its backends built: ready to take over from this
        one. Refuses a damaged folder (:class:`IndexFileError`) or one built by another checkpoint
        (:class:`IndexMismatchError`: a new checkpoint needs a new process)."""
        manifest, products, images, texts = _read(self.path)
        built_by = manifest["checkpoint"]["sha256"]
        if built_by != self.checkpoint["sha256"]:
            raise IndexMismatchError(
                f"index {self.path} is now built by another checkpoint (sha256 {built_by[:16]}, serving "
                f"{self.checkpoint['sha256'][:16]}); restart the server to change the model"
            )
        args = (self.model, self.device, self.precision, self.backend_name, self.encoder)
        fresh = CatalogueIndex(self.path, manifest, products, images, texts, *args)
        for over in OVER:
            fresh.backend(over)
        return fresh

    # ---------------------------------------------------------------------------------- search
    def backend(self, over: str) -> Backend:
        """The first-stage backend over the ``images`` or ``texts`` embeddings (built on first use)."""
        if over not in self._backends:
            saved = self.path / _faiss_name(self.backend_name, over)
            self._backends[over] = make_backend(self.backend_name, self.embeddings[over], saved)
        return self._backends[over]

    def search(
        self,
        text: str | None = None,
        image: str | Path | Image.Image | None = None,
        *,
        k: int = 10,
        rerank: int = 0,
        over: str | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best products for a text or a photo (a path or a PIL image).

        ``rerank=K`` re-orders the first stage's top K with ITM (ITC logit + ITM log-odds); the
        rest keep their first-stage order below them. ``over``: ``images`` (default for a text)
        or ``texts`` (default for a photo).
        """
        if (text is None) == (image is None):
            raise QueryError("give a text or a photo to search with (exactly one)")
        k, rerank = _check_range("k", k, 1), _check_range("rerank", rerank, 0)
        over = over or ("images" if text is not None else "texts")
        if over not in OVER:
            raise QueryError(f"over must be one of {', '.join(OVER)}, got {over!r}")
        cross_modal = (text is not None) == (over == "images")
        if rerank and not cross_modal:
            raise QueryError(
                "rerank scores (text, image) pairs: it needs a text over images or a photo over texts"
            )
        if text is not None and not text.strip():
            raise QueryError("the query text is empty")
        if not len(self):
            return []
        picture = _as_image(image) if image is not None else None
        with self._lock, torch.inference_mode():
            query = self._embed_query(text, picture)
            depth = min(len(self), max(k, rerank))
            cosine, rows = (a[0] for a in self.backend(over).search(query, depth))
            cosine = cosine.astype(np.float64)
            order, score, match = np.arange(len(rows)), cosine.copy(), None
            if rerank:
                top = np.arange(min(rerank, len(rows)))
                match = np.full(len(rows), np.nan)
                match[top] = self._match(text, picture, rows[top])
                scored = top[np.isfinite(match[top])]  # an unreadable image: ranked after the re-ranked
                second = np.zeros(len(rows))
                second[scored] = self.itc_scale * cosine[scored] + match[scored]
                order = np.argsort(-reranked_scores(cosine, second, scored), kind="stable")
                score[scored] = second[scored]
        hits = []
        for rank, i in enumerate(order[:k].tolist(), start=1):
            p = self.products[int(rows[i])]
            reranked = match is not None and not np.isnan(match[i])
            hits.append(
                SearchHit(
                    rank,
                    int(rows[i]),
                    p.product_id,
                    p.text,
                    p.category,
                    p.subcategory,
                    p.image,
                    float(score[i]),
                    float(cosine[i]),
                    float(match[i]) if reranked else None,
                    "rerank" if reranked else "first",
                )
            )
        return hits

    def _embed_query(self, text: str | None, picture: Image.Image | None) -> np.ndarray:
        ctx = self._ctx
        with ctx.autocast():
            if text is not None:
                ids, mask = self._query_tokens(text)
                out = self.encoder.encode_texts(ids, mask)
            else:
                out = self.encoder.encode_images(self._query_pixels(picture)[None])
        return out.float().cpu().numpy()

    def _query_tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.model.tokenizer.encode(text)
        limit = int(self.model.config.max_text_len)
        if len(ids) > limit:  # keep [CLS] ... [SEP], as EvalContext does for catalogue texts
            ids = [*ids[: limit - 1], self.model.tokenizer.sep_id]
        ids_t = torch.tensor([ids], dtype=torch.long, device=self.device)
        return ids_t, torch.ones_like(ids_t)

    def _query_pixels(self, picture: Image.Image | None) -> torch.Tensor:
        settings = self.manifest["embedding"]
        assert picture is not None
        return prepare_image(picture, int(settings["image_size"]), settings["resize"]).to(self.device)

    def _match(self, text: str | None, picture: Image.Image | None, rows: np.ndarray) -> np.ndarray:
        """ITM log-odds of the query with each of ``rows`` (a text with their images, or a photo
        with their texts), batched like the evaluation; NaN for a product whose image file cannot
        be read any more (logged), so one broken file does not break every query near it."""
        out = np.full(len(rows), np.nan)
        wanted = list(range(len(rows)))
        if text is not None:
            wanted = [i for i in wanted if self._readable(int(rows[i]))]
        if self.model.config.fusion_stage > 1:  # the query's unimodal stages once, not once per pair
            return self._match_staged(text, picture, rows, wanted, out)
        scorer = model_scorer(self.model, "log_odds", self._ctx.autocast)
        for at in range(0, len(wanted), self._ctx.batch_size):
            positions = wanted[at : at + self._ctx.batch_size]
            chunk = [int(rows[i]) for i in positions]
            if text is not None:
                ids, mask = self._query_tokens(text)
                images = self._ctx.images(chunk)
                ids, mask = ids.expand(len(chunk), -1), mask.expand(len(chunk), -1)
            else:
                ids, mask = self._ctx.text_batch(chunk)
                images = self._query_pixels(picture)[None].expand(len(chunk), -1, -1, -1)
            out[positions] = scorer(images, ids, mask).float().cpu().numpy()
        return out

    def _match_staged(
        self,
        text: str | None,
        picture: Image.Image | None,
        rows: np.ndarray,
        wanted: list[int],
        out: np.ndarray,
    ) -> np.ndarray:
        """``_match`` for a model that fuses late: the query's unimodal features once (a photo's
        image pass is most of a pair's cost), each candidate's once, the joint stages per pair."""
        model, ctx = self.model, self._ctx
        with ctx.autocast():
            if text is not None:
                ids, query_mask = self._query_tokens(text)
                query = model.unimodal_features(input_ids=ids, attention_mask=query_mask)[1]
            else:
                query = model.unimodal_features(images=self._query_pixels(picture)[None])[0]
            for at in range(0, len(wanted), ctx.batch_size):
                positions = wanted[at : at + ctx.batch_size]
                chunk = [int(rows[i]) for i in positions]
                if text is not None:
                    visual = model.unimodal_features(images=ctx.images(chunk))[0]
                    tokens, mask = query.expand(len(chunk), -1, -1), query_mask.expand(len(chunk), -1)
                else:
                    ids, mask = ctx.text_batch(chunk)
                    tokens = model.unimodal_features(input_ids=ids, attention_mask=mask)[1]
                    visual = query.expand(len(chunk), -1, -1, -1)
                out[positions] = model.match_score_joint(visual, tokens, mask).float().cpu().numpy()
        return out

    def _readable(self, row: int) -> bool:
        try:
            self._ctx.pixels(row)  # cached: the batch reads it again for free
        except ImageLoadError as err:
            log.warning("product %s is not re-ranked: %s", self.products[row].product_id, err)
            return False
        return True

    def image_path(self, row: int) -> Path:
        """The file of product ``row``'s image (it may lie outside :attr:`root`: see the server)."""
        return self.catalogue.image_paths[row]


def _read(path: Path) -> tuple[dict[str, Any], list[Product], np.ndarray, np.ndarray]:
    """An index folder's manifest, products and ``(images, texts)`` embeddings, checked to agree."""
    if not path.is_dir():
        raise FileNotFoundError(f"--index {path}: no such index folder (build one with `mvlt index`)")
    manifest = store.read_manifest(path)
    products = store.read_products(path)
    if len(products) != manifest.get("products"):
        raise IndexFileError(
            f"damaged index: {path / store.PRODUCTS} lists {len(products)} products, "
            f"{path / store.MANIFEST} {manifest.get('products')}"
        )
    return (manifest, products, *store.read_embeddings(path, len(products)))


def _faiss_name(backend: str, over: str) -> str:
    return f"faiss-{backend}-{over}.index"


def _empty(model: Any) -> tuple[np.ndarray, np.ndarray]:
    d = int(model.embedding_dim)
    return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)


def _open(data: str | Path, split: str | None, skip_bad_rows: bool) -> Catalogue:
    if str(data).strip().lower() != "synthetic" and not Path(data).exists():
        raise FileNotFoundError(f"--data {data}: no such file or directory")
    return open_catalogue(data, split=split, skip_bad_rows=skip_bad_rows)


def _as_image(image: str | Path | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    return load_image(image)
