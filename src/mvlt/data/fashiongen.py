"""Fashion-Gen 2018 HDF5 files (``fashiongen_256_256_{train,validation}.h5``), read lazily.

The train file is 13 GB, so images are never loaded up front: each process (the main one and
every DataLoader worker) opens its own read-only h5py handle on its first image access (an h5py
handle must not cross a ``fork``), and reads one ``256x256x3`` image per item.
The small string columns (description, name, category, sub-category, product id; tens of MB for the
train file) *are* read once at open time: ITM negatives and retrieval candidates need them for
every item, and reading them per item would cost one HDF5 read each.

Strings are stored as byte strings in ISO-8859-1 (latin-1) and decoded as such. The public
release has no test split; ``split="test"`` (or ``"val"``) selects the validation file, on which
every published Fashion-Gen number is reported.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import errors as E
from .catalogue import Catalogue, file_sources
from .errors import DataError, handle_bad_row
from .labels import LabelMaps

IMAGE_KEY = "input_image"
TEXT_KEYS = {"description": "input_description", "name": "input_name"}
LABEL_KEYS = {
    "category": "input_category",
    "subcategory": "input_subcategory",
    "product_id": "input_productID",
}
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                 "test": "validation"}  # fmt: skip
FILE_PATTERN = "fashiongen_256_256_{split}.h5"
_SPLIT_IN_NAME = re.compile(r"fashiongen_\d+_\d+_(train|validation)\.h5$", re.IGNORECASE)


def find_fashiongen_file(directory: Path, split: str | None) -> Path | None:
    """The Fashion-Gen file of ``split`` in ``directory`` (train when split is None), if present."""
    name = SPLIT_ALIASES.get(split or "train", split or "train")
    path = directory / FILE_PATTERN.format(split=name)
    return path if path.is_file() else None


def decode_latin1(value: Any) -> str:
    """One HDF5 string cell -> str: bytes are latin-1; numbers (product ids) become their digits."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, (np.floating, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


class FashionGenCatalogue(Catalogue):
    """A Fashion-Gen HDF5 file as a catalogue (one item per image; poses of a product share its id).

    Options:
        split: checked against the file name (``_train`` / ``_validation``); ``"test"`` means
            validation. A mismatch is an error, so a train file is never evaluated by mistake.
        skip_bad_rows: skip rows with an empty text (or, with ``label_maps``, an unknown label),
            counted in ``skipped``, instead of raising.
        label_maps: rows whose labels are not in these maps are bad rows (``unknown_label``).
        text_fields: which string columns make the text, joined with ". " (default
            ``("description",)``, as the released code; ``("name", "description")`` adds the title).
    """

    def __init__(
        self,
        path: str | Path,
        split: str | None = None,
        *,
        skip_bad_rows: bool = False,
        label_maps: LabelMaps | None = None,
        text_fields: Sequence[str] = ("description",),
    ) -> None:
        import h5py

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Fashion-Gen file not found: {path}")
        match = _SPLIT_IN_NAME.search(path.name)
        if split is not None and match and SPLIT_ALIASES.get(split, split) != match.group(1).lower():
            raise ValueError(f"{path} is the {match.group(1)} file; it cannot serve split {split!r}")
        super().__init__(str(path), split)
        self.path = path
        unknown_fields = [f for f in text_fields if f not in TEXT_KEYS]
        if unknown_fields or not text_fields:
            raise ValueError(
                f"text_fields must be a non-empty subset of {sorted(TEXT_KEYS)}, got {text_fields}"
            )
        self._handle: Any = None
        self._pid: int | None = None
        try:
            with h5py.File(path, "r") as f:
                columns = self._read_columns(f, [TEXT_KEYS[t] for t in text_fields])
        except OSError as err:
            raise DataError(self.source, "", E.BAD_IMAGE, f"not a readable HDF5 file ({err})") from err
        self.h5_index: list[int] = []
        for i in range(self.num_records):
            where = self.record_name(i)
            text = ". ".join(
                s for s in (" ".join(columns[TEXT_KEYS[t]][i].split()) for t in text_fields) if s
            )
            category = columns[LABEL_KEYS["category"]][i].strip()
            subcategory = columns[LABEL_KEYS["subcategory"]][i].strip()
            problem = None
            if not text:
                problem = DataError(self.source, where, E.EMPTY_TEXT, "empty text")
            elif label_maps is not None and not label_maps.contains(category, subcategory):
                detail = f"unknown label(s) category {category!r} / subcategory {subcategory!r}"
                problem = DataError(self.source, where, E.UNKNOWN_LABEL, detail)
            if problem is not None:
                handle_bad_row(problem, skip_bad_rows, self.skips)
                continue
            self.h5_index.append(i)
            self.texts.append(text)
            self.categories.append(category)
            self.subcategories.append(subcategory)
            product_id = columns[LABEL_KEYS["product_id"]][i].strip()
            self.product_ids.append(product_id)
            self.groups.append(product_id)
        self._finish_open()

    def _read_columns(self, f: Any, text_keys: list[str]) -> dict[str, list[str]]:
        """Read and latin-1-decode the string columns (the only whole-column reads)."""
        if IMAGE_KEY not in f:
            raise DataError(
                self.source, "", E.MISSING_COLUMN, f"no {IMAGE_KEY!r} dataset (found: {sorted(f)})"
            )
        images = f[IMAGE_KEY]
        if images.ndim != 4 or images.shape[-1] != 3:
            detail = f"{IMAGE_KEY!r} has shape {images.shape}, expected N x H x W x 3"
            raise DataError(self.source, "", E.BAD_IMAGE, detail)
        self.num_records = int(images.shape[0])
        columns: dict[str, list[str]] = {}
        for key in [*text_keys, *LABEL_KEYS.values()]:
            if key not in f:
                raise DataError(self.source, "", E.MISSING_COLUMN, f"no {key!r} dataset (found: {sorted(f)})")
            raw = f[key][()]
            raw = raw.reshape(raw.shape[0], -1)[:, 0] if getattr(raw, "ndim", 1) > 1 else raw
            if len(raw) != self.num_records:
                detail = f"{key!r} has {len(raw)} rows, {IMAGE_KEY!r} has {self.num_records}"
                raise DataError(self.source, "", E.MALFORMED_ROW, detail)
            columns[key] = [decode_latin1(v) for v in raw]
        return columns

    @staticmethod
    def record_name(h5_index: int) -> str:
        return f"row {h5_index + 1} (HDF5 index {h5_index})"

    def row_name(self, index: int) -> str:
        return self.record_name(self.h5_index[index])

    def image_sources(self) -> list[Any] | None:
        """The file's identity, then the HDF5 record of every row (the file is 256 px already,
        but a cache at the training size still saves the resize)."""
        (identity,) = file_sources([self.path])
        return [identity, *self.h5_index]

    def _images(self) -> Any:
        """This process's handle on ``input_image``: opened on first use after a fork, never shared."""
        if self._handle is None or self._pid != os.getpid():
            import h5py

            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle[IMAGE_KEY]

    def load_image(self, index: int) -> Image.Image:
        i = self._check_index(index)
        try:
            arr = np.asarray(self._images()[self.h5_index[i]], dtype=np.uint8)
        except (OSError, KeyError, ValueError) as err:
            raise DataError(
                self.source, self.row_name(i), E.BAD_IMAGE, f"cannot read the image ({err})"
            ) from err
        return Image.fromarray(np.ascontiguousarray(arr))

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, None  # each process opens its own
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
