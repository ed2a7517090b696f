"""Catalogues: one ``Dataset`` interface over product image + text + labels + product id.

Three sources implement it: a manifest (CSV/JSONL, this module), a Fashion-Gen HDF5 file
(:mod:`.fashiongen`) and the procedural synthetic catalogue (:mod:`.synthetic`).
:func:`~mvlt.data.sources.open_catalogue` picks one from a path or the word ``synthetic``.

Every catalogue keeps its metadata in plain lists (``texts``, ``product_ids``, ``categories``,
``subcategories``, ``groups``) aligned with its indices, so ITM negative sampling and retrieval
candidate sampling never decode an image. Images are decoded only when an item's ``image`` is read.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from . import errors as E
from .errors import DataError, SkipLog, handle_bad_row
from .images import ImageLoadError, load_image
from .labels import LabelMaps

REQUIRED_COLUMNS = ("image", "text", "category", "subcategory", "product_id")
GROUP_COLUMNS = ("product_code", "group")
"""Optional columns naming the product a row is a variant of (H&M's ``product_code``)."""
ALL_SPLITS = ("all", "none")
"""Split names meaning "every row", the same in every command (``--split all``)."""


def normalise_split(split: str | None) -> str | None:
    """``None`` for every row (``None``, ``all``, ``none``), else the split name."""
    if split is None or split.strip().lower() in ALL_SPLITS:
        return None
    return split


@dataclass(eq=False)
class CatalogueItem:
    """One catalogue entry. ``image`` (PIL RGB) is decoded on first access and then kept."""

    index: int
    text: str
    category: str
    subcategory: str
    product_id: str
    group: str = ""
    loader: Callable[[], Image.Image] | None = field(default=None, repr=False)
    _image: Image.Image | None = field(default=None, init=False, repr=False)

    @property
    def image(self) -> Image.Image:
        if self._image is None:
            if self.loader is None:
                raise ValueError(f"item {self.index} has no image loader")
            self._image = self.loader()
        return self._image


class Catalogue(Dataset[CatalogueItem]):
    """Base class: metadata lists + lazy images. Subclasses implement :meth:`load_image` and
    :meth:`row_name`, and fill the lists in ``__init__``.

    Attributes: ``source`` (the file, as a string), ``split`` (or None), ``texts``,
    ``product_ids``, ``categories``, ``subcategories``, ``groups`` (product a variant belongs
    to; the product id when the source has no such notion), ``skips`` (:class:`SkipLog` of the rows
    left out by ``skip_bad_rows``).
    """

    source: str
    split: str | None

    def __init__(self, source: str, split: str | None = None) -> None:
        self.source, self.split = source, split
        self.texts: list[str] = []
        self.product_ids: list[str] = []
        self.categories: list[str] = []
        self.subcategories: list[str] = []
        self.groups: list[str] = []
        self.skips = SkipLog()

    def __len__(self) -> int:
        return len(self.texts)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.source} ({n} items)")
        return index % n

    def __getitem__(self, index: int) -> CatalogueItem:
        i = self._check_index(int(index))
        return CatalogueItem(
            index=i,
            text=self.texts[i],
            category=self.categories[i],
            subcategory=self.subcategories[i],
            product_id=self.product_ids[i],
            group=self.groups[i],
            loader=functools.partial(self.load_image, i),
        )

    def __iter__(self) -> Iterator[CatalogueItem]:
        return (self[i] for i in range(len(self)))

    def load_image(self, index: int) -> Image.Image:
        """Decode image ``index`` as PIL RGB; a bad image raises :class:`DataError` naming file and row."""
        raise NotImplementedError

    def row_name(self, index: int) -> str:
        """Where item ``index`` comes from, e.g. ``"row 12 (line 13)"``."""
        return f"item {index}"

    def image_sources(self) -> list[Any] | None:
        """What each row's image is read from, in row order, as JSON values that change when the
        image does (path, size, mtime): the key of the decoded-image cache
        (:mod:`.image_cache`). None: images drawn in memory, nothing worth caching."""
        return None

    @property
    def skipped(self) -> Counter[str]:
        """Rows left out by ``skip_bad_rows``, counted by reason (empty when none were)."""
        return self.skips.counts

    def skip_report(self) -> str | None:
        """One line naming how many rows were skipped and why, or None."""
        return self.skips.report(self.source)

    def _finish_open(self) -> None:
        """Log, at open time, the rows skipped, the product ids on several rows and the rows without
        labels (:mod:`.audit`; the skips are also ``skipped`` / ``skip_report()``)."""
        from .audit import log_audit

        log_audit(self)

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        skipped = f", skipped={self.skips.total}" if self.skips.total else ""
        return f"{type(self).__name__}({self.source!r}{split}, {len(self)} items{skipped})"


# ----------------------------------------------------------------------------------- manifests
@dataclass
class _RawRow:
    where: str  # "row 3 (line 4)" or "line 4"
    values: dict[str, Any] | None  # None when the row could not be parsed
    problem: DataError | None = None


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


class ManifestCatalogue(Catalogue):
    """A CSV or JSONL manifest with columns ``image, text, category, subcategory, product_id``
    (optional ``split``, and ``product_code`` or ``group`` to tie colour variants together).

    Image paths are relative to the manifest's folder (absolute paths are kept). ``product_id``
    is always a string (so H&M's zero-padded ids survive). Rows are validated at open time
    (columns, values, empty text, labels, file existence); undecodable images are found when
    loaded, or at open time when ``verify_images`` (default: on with ``skip_bad_rows``).

    Options:
        split: keep only rows whose ``split`` column equals this (None: all rows).
        skip_bad_rows: skip bad rows, counted by reason in ``skipped``, instead of raising.
        label_maps: rows whose category/sub-category is not in these maps are bad rows
            (``unknown_label``): use it to open an evaluation split against a model's classes.
        check_files: check at open time that every image file exists (default True).
        verify_images: decode every image at open time (default: ``skip_bad_rows``).
        encoding: text encoding of the manifest (default UTF-8; a BOM is accepted).
    """

    def __init__(
        self,
        path: str | Path,
        split: str | None = None,
        *,
        skip_bad_rows: bool = False,
        label_maps: LabelMaps | None = None,
        check_files: bool = True,
        verify_images: bool | None = None,
        encoding: str = "utf-8",
    ) -> None:
        path = Path(path)
        super().__init__(str(path), split)
        self.path, self.root = path, path.parent
        self._skip = skip_bad_rows
        self.image_paths: list[Path] = []
        self._where: list[str] = []
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        raw = path.read_bytes()
        codec = "utf-8-sig" if encoding.lower().replace("-", "") in ("utf8", "utf8sig") else encoding
        text = raw.decode(codec, errors="surrogateescape")  # undecodable bytes: found and named per row
        rows = (
            self._read_jsonl(text) if path.suffix.lower() in (".jsonl", ".ndjson") else self._read_csv(text)
        )
        self._load_rows(rows, label_maps, encoding)
        if check_files or verify_images or (verify_images is None and skip_bad_rows):
            self._check_images(verify=skip_bad_rows if verify_images is None else verify_images)
        if not self.texts:
            detail = "no usable rows" + (f" in split {split!r}" if split else "")
            if self.skips.total:
                detail += f" ({self.skip_report()})"
            raise DataError(self.source, "", E.MISSING_VALUE, detail)
        self._finish_open()

    # -- parsing -----------------------------------------------------------------------------
    def _read_csv(self, text: str) -> list[_RawRow]:
        lines = io.StringIO(text, newline="")
        reader = csv.reader(lines)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(self.source, "", E.MISSING_COLUMN, "empty manifest (no header line)") from None
        except csv.Error as err:
            raise DataError(self.source, "line 1", E.MALFORMED_ROW, f"unreadable header: {err}") from err
        if any(_has_surrogates(h) for h in header):
            raise DataError(
                self.source, "line 1 (header)", E.ENCODING, "header is not valid text in this encoding"
            )
        header = [h.strip() for h in header]
        self._check_columns(header)
        rows: list[_RawRow] = []
        number, line = 0, reader.line_num
        while True:
            start = line + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                number += 1
                where = f"row {number} (line {start})"
                rows.append(_RawRow(where, None, DataError(self.source, where, E.MALFORMED_ROW, str(err))))
                line = reader.line_num
                continue
            line = reader.line_num
            if not fields:
                continue  # a blank line is not a row
            number += 1
            where = f"row {number} (line {start})"
            if len(fields) != len(header):
                detail = f"has {len(fields)} fields, the header has {len(header)}"
                rows.append(_RawRow(where, None, DataError(self.source, where, E.MALFORMED_ROW, detail)))
                continue
            rows.append(_RawRow(where, dict(zip(header, fields))))
        return rows

    def _check_columns(self, header: Sequence[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            # Every row lacks it, so this is fatal even with skip_bad_rows.
            detail = f"missing required column(s) {', '.join(missing)} (found: {', '.join(header)})"
            raise DataError(self.source, "line 1 (header)", E.MISSING_COLUMN, detail)

    def _read_jsonl(self, text: str) -> list[_RawRow]:
        rows: list[_RawRow] = []
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            if _has_surrogates(line):
                problem = DataError(
                    self.source, where, E.ENCODING, "not valid text in the manifest's encoding"
                )
                rows.append(_RawRow(where, None, problem))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                rows.append(
                    _RawRow(where, None, DataError(self.source, where, E.MALFORMED_ROW, f"bad JSON: {err}"))
                )
                continue
            if not isinstance(obj, dict):
                detail = f"expected a JSON object, got {type(obj).__name__}"
                rows.append(_RawRow(where, None, DataError(self.source, where, E.MALFORMED_ROW, detail)))
                continue
            missing = [c for c in REQUIRED_COLUMNS if c not in obj]
            if missing:
                detail = f"missing required column(s) {', '.join(missing)}"
                rows.append(_RawRow(where, None, DataError(self.source, where, E.MISSING_COLUMN, detail)))
                continue
            rows.append(_RawRow(where, {k: _jsonl_value(v) for k, v in obj.items()}))
        return rows

    # -- validation --------------------------------------------------------------------------
    def _load_rows(self, rows: list[_RawRow], label_maps: LabelMaps | None, encoding: str) -> None:
        has_split = any(r.values is not None and "split" in r.values for r in rows)
        if self.split is not None and rows and not has_split:
            raise DataError(
                self.source, "", E.MISSING_COLUMN, f"no 'split' column to select split {self.split!r}"
            )
        splits: Counter[str] = Counter()
        for row in rows:
            values = row.values
            if values is not None:
                row_split = str(values.get("split", "")).strip()
                splits[row_split] += 1
                if self.split is not None and row_split != self.split:
                    continue
            problem = row.problem or self._validate(row.where, values or {}, label_maps, encoding)
            if problem is not None:
                handle_bad_row(problem, self._skip, self.skips)
                continue
            assert values is not None
            self._append(row.where, values)
        if self.split is not None and not splits.get(self.split):
            available = ", ".join(sorted(s for s in splits if s)) or "none"
            raise DataError(
                self.source, "", E.MISSING_VALUE, f"no rows in split {self.split!r} (splits: {available})"
            )

    def _validate(
        self, where: str, values: dict[str, Any], label_maps: LabelMaps | None, encoding: str
    ) -> DataError | None:
        def bad(reason: str, detail: str) -> DataError:
            return DataError(self.source, where, reason, detail)

        for column, value in values.items():
            if isinstance(value, str) and _has_surrogates(value):
                detail = f"column {column!r} is not valid {encoding} text (see the encoding= option)"
                return bad(E.ENCODING, detail)
        for column in ("image", "product_id"):
            if not str(values.get(column, "")).strip():
                return bad(E.MISSING_VALUE, f"empty {column!r}")
        if not str(values.get("text", "")).strip():
            return bad(E.EMPTY_TEXT, "empty text")
        if label_maps is not None:
            category, subcategory = (str(values.get(c, "")).strip() for c in ("category", "subcategory"))
            unknown = [
                f"{name} {value!r}"
                for name, value, known in (
                    ("category", category, label_maps.contains(category, None)),
                    ("subcategory", subcategory, label_maps.contains(None, subcategory)),
                )
                if not known
            ]
            if unknown:
                return bad(
                    E.UNKNOWN_LABEL, f"unknown label(s) {', '.join(unknown)} (not in the model's label maps)"
                )
        return None

    def _append(self, where: str, values: dict[str, Any]) -> None:
        product_id = str(values["product_id"]).strip()
        group = next(
            (str(values[c]).strip() for c in GROUP_COLUMNS if str(values.get(c, "")).strip()), product_id
        )
        self._where.append(where)
        self.image_paths.append(self.root / str(values["image"]).strip())
        self.texts.append(" ".join(str(values["text"]).split()))
        self.categories.append(str(values.get("category", "")).strip())
        self.subcategories.append(str(values.get("subcategory", "")).strip())
        self.product_ids.append(product_id)
        self.groups.append(group)

    def _check_images(self, verify: bool) -> None:
        """Drop (or raise for) rows whose image is missing, or with ``verify`` fails to decode."""
        if verify:
            workers = min(8, os.cpu_count() or 1)
            with ThreadPoolExecutor(workers) as pool:
                problems = list(pool.map(_verify_image, self.image_paths, chunksize=64))
        else:
            problems = [None if p.is_file() else ImageLoadError(p, E.MISSING_FILE, "image file not found")
                        for p in self.image_paths]  # fmt: skip
        keep = []
        for i, problem in enumerate(problems):
            if problem is None:
                keep.append(i)
                continue
            handle_bad_row(
                DataError(self.source, self._where[i], problem.reason, str(problem)), self._skip, self.skips
            )
        if len(keep) != len(self.image_paths):
            for name in (
                "_where",
                "image_paths",
                "texts",
                "categories",
                "subcategories",
                "product_ids",
                "groups",
            ):
                values = getattr(self, name)
                setattr(self, name, [values[i] for i in keep])

    # -- items -------------------------------------------------------------------------------
    def row_name(self, index: int) -> str:
        return self._where[index]

    def image_sources(self) -> list[Any] | None:
        return file_sources(self.image_paths)

    def load_image(self, index: int) -> Image.Image:
        try:
            return load_image(self.image_paths[index])
        except ImageLoadError as err:
            raise DataError(self.source, self._where[index], err.reason, str(err)) from err


def _jsonl_value(value: Any) -> Any:
    """JSON values as manifest strings: numbers (e.g. product ids) become text, null becomes ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def file_sources(paths: Sequence[Path]) -> list[Any]:
    """``[absolute path, size, mtime_ns]`` per image file (``-1`` when missing: the build names it)."""
    sources: list[Any] = []
    for path in paths:
        name = os.path.abspath(path)
        try:
            stat = os.stat(name)
        except OSError:
            sources.append([name, -1, -1])
            continue
        sources.append([name, stat.st_size, stat.st_mtime_ns])
    return sources


def _verify_image(path: Path) -> ImageLoadError | None:
    """Decode ``path`` (JPEGs at 1/8 scale: truncation still shows) and report a problem, if any."""
    try:
        load_image(path, draft=(32, 32))
    except ImageLoadError as err:
        return err
    return None
