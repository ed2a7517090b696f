"""Writing catalogue manifests in tests: one CSV writer for every suite that builds a shop."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def write_manifest(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``rows`` as a CSV manifest at ``path`` (columns: the first row's keys, in order)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
