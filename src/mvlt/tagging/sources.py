"""What ``mvlt tag`` reads photos from: a folder of photos that belong to no catalogue, or the rows
of a catalogue (a manifest, Fashion-Gen or ``synthetic``), one interface for both.

A photo that cannot be read stops the command with its file (and row) named, or with
``skip_bad_rows`` is left out and counted by reason, as every command that reads a catalogue does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.errors import DataError, SkipLog, handle_bad_row
from ..data.images import ImageLoadError, load_image, prepare_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class Photo:
    """One photo to tag: ``name`` (the file, relative to the folder, or the catalogue's image
    path) and, from a catalogue, its ``product_id`` and ``row``."""

    name: str
    product_id: str | None = None
    row: int | None = None


class PhotoFolder:
    """Every image file under ``folder`` (sub-folders too), in path order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"--images {self.folder}: no such folder")
        self.source = str(self.folder)
        paths = sorted(
            p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not paths:
            raise FileNotFoundError(
                f"--images {self.folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"
            )
        self.photos = [Photo(p.relative_to(self.folder).as_posix()) for p in paths]

    def load(self, photo: Photo) -> Image.Image:
        try:
            return load_image(self.folder / photo.name)
        except ImageLoadError as err:
            detail = str(err).removeprefix(f"{err.path}: ")
            raise DataError(self.source, photo.name, err.reason, detail) from err


class CataloguePhotos:
    """The rows of an open catalogue (one photo per row)."""

    def __init__(self, catalogue: Any) -> None:
        self.catalogue, self.source = catalogue, str(catalogue.source)
        paths = getattr(catalogue, "image_paths", None)
        self.photos = [
            Photo(str(paths[i]) if paths is not None else catalogue.row_name(i), catalogue.product_ids[i], i)
            for i in range(len(catalogue))
        ]

    def load(self, photo: Photo) -> Image.Image:
        assert photo.row is not None
        return self.catalogue.load_image(photo.row)  # a bad image raises DataError naming its row


class PhotoSource(Protocol):
    source: str
    photos: list[Photo]

    def load(self, photo: Photo) -> Image.Image: ...


def prepared_batches(
    source: PhotoSource,
    photos: Sequence[Photo],
    *,
    image_size: int,
    batch_size: int,
    skips: SkipLog,
    skip_bad_rows: bool = False,
    progress: bool = False,
    desc: str = "tagging",
) -> Iterator[tuple[list[Photo], torch.Tensor]]:
    """``photos`` decoded and prepared (the same ``prepare_image`` as training and search),
    ``batch_size`` at a time, as (the photos read, ``B x 3 x S x S``). An unreadable photo stops
    the run naming it, or with ``skip_bad_rows`` is counted in ``skips``."""

    def prepared(photo: Photo) -> torch.Tensor | DataError:
        try:
            return prepare_image(source.load(photo), image_size)
        except DataError as err:
            return err

    bar = tqdm(total=len(photos), unit="photo", desc=desc, disable=not progress)
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
        for at in range(0, len(photos), batch_size):
            batch = photos[at : at + batch_size]
            chunk, pixels = [], []
            for photo, image in zip(batch, pool.map(prepared, batch)):
                if isinstance(image, DataError):
                    handle_bad_row(image, skip_bad_rows, skips)
                    continue
                chunk.append(photo)
                pixels.append(image)
            if chunk:
                yield chunk, torch.stack(pixels)
            bar.update(len(batch))
    bar.close()
