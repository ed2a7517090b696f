"""Errors for bad catalogue rows, and the tally kept when bad rows are skipped instead.

Every problem with a row names the file and the row, so a user can open the file and fix it. With
``skip_bad_rows`` the same problems are counted by reason instead of raised; nothing is dropped
without being counted and reported.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("mvlt.data")

# Reasons a row can be bad (the keys of ``Catalogue.skipped``).
MISSING_FILE = "missing_file"
BAD_IMAGE = "bad_image"
EMPTY_TEXT = "empty_text"
MISSING_COLUMN = "missing_column"
MISSING_VALUE = "missing_value"
MALFORMED_ROW = "malformed_row"
ENCODING = "encoding"
UNKNOWN_LABEL = "unknown_label"


class DataError(ValueError):
    """A problem with one row (or the whole file) of a catalogue; the message names file and row.

    ``source`` is the file, ``where`` the location (e.g. ``"row 12 (line 13)"``; empty when the
    whole file is at fault), ``reason`` one of the reason constants of this module.
    """

    def __init__(self, source: str, where: str | None = None, reason: str = "", detail: str = "") -> None:
        if where is None:  # rebuilt from its message alone: unpickled, or re-raised by a DataLoader worker
            self.source, self.where, self.reason, self.detail = "", "", reason, source
            super().__init__(source)
            return
        self.source, self.where, self.reason, self.detail = source, where, reason, detail
        location = f"{source}, {where}" if where else source
        super().__init__(f"{location}: {detail}")

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str, str, str]]:
        return (type(self), (self.source, self.where, self.reason, self.detail))


@dataclass
class SkipLog:
    """The rows left out by ``skip_bad_rows``: a count per reason and the first few messages."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    """Where the first skipped rows are (e.g. ``"row 3 (line 4)"``), as many as ``examples``."""
    max_examples: int = 20

    def add(self, error: DataError) -> None:
        self.counts[error.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))
            self.rows.append(error.where or "the whole file")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, source: str = "", first: int = 5) -> str | None:
        """One line such as ``"skipped 3 bad rows of x.csv: 2 missing_file, 1 empty_text (row 2
        (line 3), ...)"``, naming the ``first`` few rows."""
        if not self.total:
            return None
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        where = f" of {source}" if source else ""
        shown = "; ".join(self.rows[:first]) + ("; ..." if self.total > first else "")
        return f"skipped {self.total} bad row{'s' if self.total != 1 else ''}{where}: {parts} ({shown})"


def handle_bad_row(error: DataError, skip: bool, skips: SkipLog) -> None:
    """Raise ``error``, or (with ``skip``) count it; the caller then leaves the row out."""
    if not skip:
        raise error
    skips.add(error)
