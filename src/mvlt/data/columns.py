"""A catalogue's own attribute columns (colour, pattern, department...), by catalogue row: what
``mvlt tag`` scores against and what ``mvlt finetune --labels`` trains tag heads on.

The catalogue classes keep only the columns pre-training needs, so a manifest's other columns are
read here from the file itself and joined to the catalogue's rows by product id (the first row of
a product id, as retrieval does). The labels of a column are its distinct non-empty values over
the whole file, every split included, so the test split is tagged with the same choice of labels
that a shop's catalogue offers. The synthetic catalogue hands over its attributes directly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exits import UsageError

NOT_ATTRIBUTES = ("image", "text", "product_id", "split")
"""Columns that identify or describe a row rather than tag it."""


@dataclass
class Columns:
    """``values[column][i]``: the value of catalogue row ``i`` (``""`` when empty);
    ``labels[column]``: the column's distinct non-empty values, sorted."""

    values: dict[str, list[str]]
    labels: dict[str, list[str]]


def _clean(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def read_manifest_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV or JSONL manifest, values as clean strings."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for line in text.splitlines():
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a malformed row: the catalogue already skipped or refused it
                if isinstance(obj, dict):
                    rows.append({str(k): _clean(v) for k, v in obj.items()})
        header = list(dict.fromkeys(k for row in rows for k in row))
        return header, rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    rows = [{k.strip(): _clean(v) for k, v in row.items() if k is not None} for row in reader]
    return header, rows


def catalogue_columns(catalogue: Any, columns: Sequence[str], flag: str = "--zero-shot") -> Columns:
    """The values and labels of ``columns`` for every row of ``catalogue`` (a manifest or the
    synthetic catalogue; ``category`` and ``subcategory`` from any catalogue). A column that is
    not an attribute, or not there, is a :class:`UsageError` starting with ``flag``."""
    for column in columns:
        if column in NOT_ATTRIBUTES:
            raise UsageError(f"{flag} {column}: column {column!r} is not an attribute to tag")
    if hasattr(catalogue, "attributes") and not hasattr(catalogue, "path"):  # synthetic
        table = [{k: _clean(v) for k, v in a.items()} for a in catalogue.attributes]
        header = list(dict.fromkeys(k for row in table for k in row))
        _check_known(columns, header, catalogue.source, flag)
        return _columns(columns, [[row.get(c, "") for row in table] for c in columns], table, flag)
    if all(c in ("category", "subcategory") for c in columns):
        core = {"category": catalogue.categories, "subcategory": catalogue.subcategories}
        table = [{c: _clean(core[c][i]) for c in columns} for i in range(len(catalogue))]
        return _columns(columns, [[row[c] for row in table] for c in columns], table, flag)
    path = getattr(catalogue, "path", None)
    if path is None or Path(path).suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise UsageError(
            f"{flag} {','.join(columns)}: a catalogue's own columns need a CSV or JSONL manifest, and "
            f"{catalogue.source} is not one"
        )
    header, rows = read_manifest_rows(Path(path))
    _check_known(columns, header, str(path), flag)
    by_id: dict[str, dict[str, str]] = {}
    for row in rows:
        by_id.setdefault(row.get("product_id", ""), row)
    values = [[by_id.get(pid, {}).get(c, "") for pid in catalogue.product_ids] for c in columns]
    return _columns(columns, values, rows, flag)


def _check_known(columns: Sequence[str], header: Sequence[str], source: str, flag: str) -> None:
    unknown = [c for c in columns if c not in header]
    if unknown:
        offered = ", ".join(h for h in header if h not in NOT_ATTRIBUTES)
        raise UsageError(
            f"{flag} {','.join(unknown)}: unknown column(s) {', '.join(map(repr, unknown))} "
            f"in {source} (its columns: {offered})"
        )


def _columns(
    columns: Sequence[str], values: list[list[str]], table: list[dict[str, str]], flag: str
) -> Columns:
    labels = {}
    for column in columns:
        found: list[str] = []
        seen: set[str] = set()
        for value in sorted({row.get(column, "") for row in table} - {""}):
            if value.casefold() not in seen:  # labels match case-folded: one label per spelling
                found.append(value)
                seen.add(value.casefold())
        if len(found) < 2:
            raise UsageError(
                f"{flag} {column}: column {column!r} has {len(found)} distinct value(s), "
                "nothing to choose between"
            )
        labels[column] = found
    return Columns(dict(zip(columns, values)), labels)
