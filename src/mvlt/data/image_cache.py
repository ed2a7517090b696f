"""Decoded-image cache: every image of a catalogue decoded and prepared once, into one uint8 file.

Decoding and resizing JPEGs every epoch costs as much CPU as the training step on a small
machine. The cache holds what :func:`~mvlt.data.images.prepare_pixels` makes of each row (the
uint8 ``S x S x 3`` image just before the float conversion) in one ``.npy`` file of shape
``N x S x S x 3``, memory-mapped by every process that reads it, so a sample is a page read and
``uint8 -> float / 255``: bit for bit what the decoding path gives.

The file name carries a key: a hash of the preprocessing (size, resize mode,
:data:`PREPROCESS_VERSION`) and of the catalogue's image sources (each row's path, file size and
mtime, in row order; see :meth:`~mvlt.data.catalogue.Catalogue.image_sources`), so a changed image
or setting means another file, built anew (no extension in place). A build writes a temporary
file in the same folder, fsyncs it and renames it: an interrupted build leaves only a temporary,
which is never read and is removed by the next build. One build per key at a time (a lock file),
so DDP ranks and concurrent runs wait for the first one instead of decoding twice.

The cache lives outside the data folder, which may be read-only: in ``$MVLT_CACHE_DIR/images``,
else ``~/.cache/mvlt/images``, or in a folder given by ``--image-cache DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..runtime import cache_dir
from .catalogue import Catalogue
from .images import RESIZE_MODES, pixels_to_tensor, prepare_pixels

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are still atomic, just not serialised
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("mvlt.data")

PREPROCESS_VERSION = 1
"""Bump when :func:`~mvlt.data.images.prepare_pixels` changes what it makes: every cache rebuilds."""
CACHE_SETTINGS = ("auto", "off")
"""``image_cache`` words; any other value is a folder."""
_CHUNK = 64


def default_cache_dir() -> Path:
    """``images/`` in mvlt's cache folder (``$MVLT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mvlt``, else
    ``~/.cache/mvlt``), never the data folder, which may be read-only."""
    return cache_dir() / "images"


def cache_key(catalogue: Catalogue, size: int, resize: str) -> str | None:
    """Hash of the preprocessing and of every row's image source; None: not cacheable (synthetic)."""
    sources = catalogue.image_sources()
    if sources is None:
        return None
    digest = hashlib.sha256()
    head = {"version": PREPROCESS_VERSION, "size": int(size), "resize": resize, "rows": len(sources)}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for source in sources:
        digest.update(json.dumps(source).encode() + b"\n")
    return digest.hexdigest()


class ImageCache:
    """The prepared images of one catalogue at one size, memory-mapped on first use in each process
    (a pickled cache, e.g. in a DataLoader worker, carries only its path)."""

    def __init__(self, path: str | Path, count: int, size: int, resize: str) -> None:
        self.path, self.count, self.size, self.resize = Path(path), int(count), int(size), resize
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            array = np.load(self.path, mmap_mode="r")
            if array.shape != self.shape or array.dtype != np.uint8:
                raise ValueError(
                    f"image cache {self.path} holds {array.shape} {array.dtype}, not {self.shape}"
                )
            self._array = array
        return self._array

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, self.size, self.size, 3)

    def __len__(self) -> int:
        return self.count

    def pixels(self, index: int) -> np.ndarray:
        """uint8 ``S x S x 3`` of item ``index`` (a read-only view of the mapped file)."""
        return self.array[int(index)]

    def image(self, index: int) -> torch.Tensor:
        """Float ``3 x S x S`` in [0, 1], identical to ``prepare_image`` of the decoded file."""
        return pixels_to_tensor(self.pixels(index))

    def check(self, catalogue: Catalogue, size: int, resize: str) -> None:
        """Refuse a cache made for other rows or images, another size or resize mode."""
        if (len(catalogue), int(size), resize) != (self.count, self.size, self.resize):
            raise ValueError(
                f"image cache {self.path} holds {self.count} images at {self.size} px ({self.resize}); "
                f"the dataset needs {len(catalogue)} at {size} px ({resize})"
            )
        if cache_path(catalogue, size, resize, self.path.parent) != self.path:
            raise ValueError(f"image cache {self.path} was made from other rows or image files")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # each process maps the file itself

    def __repr__(self) -> str:
        return f"ImageCache({str(self.path)!r}, {self.count} x {self.size} px, {self.resize})"


def open_image_cache(
    catalogue: Catalogue,
    size: int,
    resize: str = "pad",
    setting: str | Path | None = "auto",
    *,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache | None:
    """The cache a run asked for: ``"off"`` (or None) none; ``"auto"`` the default folder; else a
    folder. None also for catalogues drawn in memory (synthetic), which have nothing to decode, and
    for objects that are not a :class:`Catalogue`."""
    if setting is None or str(setting).strip().lower() == "off":
        return None
    word = str(setting).strip().lower()
    directory = None if word == "auto" else Path(str(setting)).expanduser()
    sources = getattr(catalogue, "image_sources", None)  # evaluation takes look-alike catalogues too
    if sources is None or sources() is None:
        if directory is not None:
            log.info("%s: no image files to cache (drawn in memory)", catalogue.source)
        return None
    return build_image_cache(catalogue, size, resize, directory, workers=workers, progress=progress)


def cache_path(catalogue: Catalogue, size: int, resize: str, directory: str | Path | None = None) -> Path:
    """Where the cache of ``catalogue`` at ``size`` / ``resize`` is (or will be)."""
    key = cache_key(catalogue, size, resize)
    if key is None:
        raise ValueError(f"{catalogue.source}: a catalogue drawn in memory has no image cache")
    folder = Path(directory) if directory is not None else default_cache_dir()
    return folder / f"images-{int(size)}px-{resize}-{key[:24]}.npy"


def _valid(path: Path, shape: tuple[int, ...]) -> bool:
    """A finished cache of this shape (its header read; a renamed file is always complete)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == shape and array.dtype == np.uint8


def build_image_cache(
    catalogue: Catalogue,
    size: int,
    resize: str = "pad",
    directory: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache:
    """The cache of ``catalogue`` at ``size`` / ``resize``, built first if it is not there.

    A bad image stops the build with the catalogue's :class:`~mvlt.data.errors.DataError`,
    naming the row and file (with ``skip_bad_rows`` such rows were dropped at open), and
    leaves no cache behind. ``workers``: decoding processes (default: up to 4, one per CPU).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; choose one of {RESIZE_MODES}")
    path = cache_path(catalogue, size, resize, directory)
    cache = ImageCache(path, len(catalogue), size, resize)
    if _valid(path, cache.shape):
        return cache
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, wait=True):
        if _valid(path, cache.shape):  # another process built it while we waited
            return cache
        _clean_stale(path)
        _build(catalogue, cache, workers, progress)
    return cache


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def _locked(path: Path, wait: bool) -> Iterator[bool]:
    """Hold the build lock of ``path``; yields False when ``wait`` is off and another holds it."""
    if fcntl is None:
        yield True
        return
    with open(_lock_path(path), "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        if wait:
            log.debug("building %s", path)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_stale(own: Path) -> None:
    """Remove temporaries of interrupted builds: this key's (its lock is ours) and those of other
    keys whose build lock nobody holds."""
    for tmp in own.parent.glob(".images-*.npy.tmp-*"):
        final = tmp.with_name(tmp.name[1:].split(".tmp-")[0])
        with contextlib.ExitStack() as stack:
            if final != own and not stack.enter_context(_locked(final, wait=False)):
                continue  # being built right now
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                log.info("removed %s, left by an interrupted build", tmp)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _build(catalogue: Catalogue, cache: ImageCache, workers: int | None, progress: bool) -> None:
    """Decode every row into a temporary file, fsync it and rename it to the cache's path."""
    tmp = _temporary(cache.path)
    n = cache.count
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, max(1, n // _CHUNK))
    bar = tqdm(total=n, desc=f"decoding images -> {cache.path.name}", unit="img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)  # fmt: skip
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=cache.shape)
        del out  # workers (or _fill_rows here) write through their own mappings
        chunks = [(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]
        if workers == 1:
            _init_worker(catalogue, tmp, cache.size, cache.resize)
            for start, stop in chunks:
                bar.update(_fill_rows(start, stop))
        else:
            _fill_parallel(catalogue, tmp, cache, chunks, workers, bar)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, cache.path)
        _fsync_folder(cache.path.parent)
        _write_info(catalogue, cache)
    finally:
        bar.close()
        _WORKER.clear()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("image cache %s: %d images at %d px", cache.path, n, cache.size)


def _fill_parallel(
    catalogue: Catalogue, tmp: Path, cache: ImageCache, chunks: list[tuple[int, int]], workers: int, bar: Any
) -> None:
    """Decode ``chunks`` in ``workers`` processes, each writing into the mapped temporary."""
    with ProcessPoolExecutor(
        workers, initializer=_init_worker, initargs=(catalogue, tmp, cache.size, cache.resize)
    ) as pool:
        futures = [pool.submit(_fill_rows, start, stop) for start, stop in chunks]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    bar.update(future.result())  # re-raises a worker's DataError
        except BaseException:
            for future in futures:
                future.cancel()
            raise


_WORKER: dict[str, Any] = {}


def _init_worker(catalogue: Catalogue, tmp: Path, size: int, resize: str) -> None:
    _WORKER.update(catalogue=catalogue, out=np.load(tmp, mmap_mode="r+"), size=size, resize=resize)


def _fill_rows(start: int, stop: int) -> int:
    """Decode and prepare rows ``start .. stop - 1`` into the mapped temporary; returns the count."""
    catalogue, out = _WORKER["catalogue"], _WORKER["out"]
    for i in range(start, stop):
        out[i] = prepare_pixels(catalogue.load_image(i), _WORKER["size"], _WORKER["resize"])
    out.flush()
    return stop - start


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (where the OS lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_info(catalogue: Catalogue, cache: ImageCache) -> None:
    """A small JSON beside the cache saying what it holds (for people cleaning the folder)."""
    info = {"source": catalogue.source, "split": catalogue.split, "images": cache.count, "size": cache.size,
            "resize": cache.resize, "version": PREPROCESS_VERSION}  # fmt: skip
    with contextlib.suppress(OSError):
        cache.path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
