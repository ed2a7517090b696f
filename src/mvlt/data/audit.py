"""What a catalogue leaves out of a metric, said out loud: rows skipped by ``skip_bad_rows`` (by
reason, the first few named), product ids on more than one row (retrieval keeps one row per
product, the first) and rows without a category or sub-category (recognition cannot score them).

Logged once when a catalogue opens, written to ``train.log`` by training and to ``metrics.json``
by evaluation, so nothing is dropped or left unscored without a count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .errors import log

FIRST = 5
"""How many rows or product ids a report names."""
_logged: set[str] = set()


def duplicate_products(product_ids: Sequence[str]) -> dict[str, list[int]]:
    """Product ids on more than one row -> their rows, in row order."""
    rows: dict[str, list[int]] = defaultdict(list)
    for row, pid in enumerate(product_ids):
        rows[pid].append(row)
    return {pid: found for pid, found in rows.items() if len(found) > 1}


def unlabelled(catalogue: Any) -> dict[str, int]:
    """Rows with an empty ``category`` / ``subcategory``."""
    return {
        "category": sum(1 for c in catalogue.categories if not c),
        "subcategory": sum(1 for s in catalogue.subcategories if not s),
    }


def audit(catalogue: Any) -> dict[str, Any]:
    """The JSON record of what ``catalogue`` leaves out (``metrics.json["protocol"]["data"]``)."""
    skips = catalogue.skips
    duplicates = duplicate_products(catalogue.product_ids)
    return {
        "source": catalogue.source,
        "split": catalogue.split,
        "items": len(catalogue),
        "skipped_rows": skips.total,
        "skipped_by_reason": dict(sorted(skips.counts.items())),
        "skipped_first": skips.rows[:FIRST],
        "duplicate_product_ids": len(duplicates),
        "duplicate_rows": sum(len(rows) - 1 for rows in duplicates.values()),
        "duplicate_first": {pid: len(rows) for pid, rows in list(duplicates.items())[:FIRST]},
        "unlabelled": unlabelled(catalogue),
    }


def audit_lines(catalogue: Any) -> list[str]:
    """The audit as lines for a person (none when nothing is left out)."""
    lines = [catalogue.skip_report()] if catalogue.skips.total else []
    duplicates = duplicate_products(catalogue.product_ids)
    if duplicates:
        pid, rows = next(iter(duplicates.items()))
        named = ", ".join(catalogue.row_name(r) for r in rows[:FIRST])
        first = f"{len(rows)} rows share product_id {pid} ({named})"
        if len(duplicates) == 1:
            lines.append(f"{catalogue.source}: {first}; retrieval uses the first")
        else:
            extra = sum(len(r) - 1 for r in duplicates.values())
            lines.append(
                f"{catalogue.source}: {len(duplicates)} product_ids are on more than one row ({extra} "
                f"extra rows), e.g. {first}; retrieval uses the first row of each"
            )
    missing = unlabelled(catalogue)
    if any(missing.values()):
        lines.append(
            f"{catalogue.source}: {missing['category']} row(s) have no category and "
            f"{missing['subcategory']} no subcategory; recognition leaves them out, so M-CR and S-CR "
            "may score different numbers of items"
        )
    return lines


def log_audit(catalogue: Any) -> None:
    """Log each line of the audit once per process (a run opens its catalogue more than once)."""
    for line in audit_lines(catalogue):
        if line not in _logged:
            _logged.add(line)
            log.warning(line)
