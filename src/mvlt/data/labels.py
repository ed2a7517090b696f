"""Label maps: category and sub-category names <-> class ids, built from the training split, and
those of any other column a tag head is trained for (``mvlt finetune --labels colour,pattern``).

Saved next to the weights (``labels.json``) so a checkpoint's recognition and tag heads can be read
back as names. A label that is not in the maps (seen only at evaluation, say) encodes to ``-100``
(ignored by the loss) and is *recorded*, so callers report "unknown labels" instead of silently
mapping them to some class.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from ..masking import IGNORE_INDEX

FIELDS = ("category", "subcategory")
FORMAT_VERSION = 1


class LabelMaps:
    """Name <-> id maps for ``category`` and ``subcategory`` (ids in sorted-name order).

    ``unknown`` holds, per field, a Counter of the names :meth:`encode_category` /
    :meth:`encode_subcategory` could not map; ``unknown_report()`` turns it into one line.
    Empty names mean "no label": they encode to ``-100`` and are counted under ``unlabelled``.
    """

    def __init__(
        self,
        categories: Sequence[str],
        subcategories: Sequence[str],
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._names = {"category": list(categories), "subcategory": list(subcategories)}
        self._tags = {column: list(values) for column, values in (tags or {}).items()}
        self._ids: dict[str, dict[str, int]] = {}
        for name, values in self._names.items():
            self._ids[name] = _ids(name, values)
        self._tag_ids = {column: _ids(column, values) for column, values in self._tags.items()}
        for column, values in self._tags.items():
            if len(values) < 2:
                raise ValueError(f"tag column {column!r} needs at least two labels, got {values}")
        self.unknown: dict[str, Counter[str]] = {f: Counter() for f in FIELDS}
        self.unlabelled: Counter[str] = Counter()
        self.tag_unlabelled: Counter[str] = Counter()
        """Per tag column, the rows :meth:`encode_tag` met without a value (left out of its loss)."""

    # --------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        categories: Iterable[str],
        subcategories: Iterable[str],
        tags: Mapping[str, Iterable[str]] | None = None,
    ) -> LabelMaps:
        """Maps over the distinct non-empty names (sorted, so the ids do not depend on row order)."""
        columns = {column: sorted({v for v in values if v}) for column, values in (tags or {}).items()}
        return cls(sorted({c for c in categories if c}), sorted({s for s in subcategories if s}), columns)

    def with_tags(self, tags: Mapping[str, Iterable[str]]) -> LabelMaps:
        """These maps with tag columns built from ``tags`` (column -> every row's value)."""
        return LabelMaps.build(self.category_names, self.subcategory_names, tags)

    @classmethod
    def from_catalogue(cls, catalogue: Any) -> LabelMaps:
        """Maps over a (training) catalogue's ``categories`` and ``subcategories``."""
        return cls.build(catalogue.categories, catalogue.subcategories)

    # --------------------------------------------------------------------------------- encoding
    def _encode(self, field: str, name: str | None) -> int:
        if not name:
            self.unlabelled[field] += 1
            return IGNORE_INDEX
        index = self._ids[field].get(name)
        if index is None:
            self.unknown[field][name] += 1
            return IGNORE_INDEX
        return index

    def encode_category(self, name: str | None) -> int:
        return self._encode("category", name)

    def encode_subcategory(self, name: str | None) -> int:
        return self._encode("subcategory", name)

    def encode_tag(self, column: str, value: str | None) -> int:
        """Tag column ``column``'s id of ``value``: ``-100`` for an empty value (counted in
        ``tag_unlabelled``) or a value the maps do not know (counted in ``unknown``)."""
        if not value:
            self.tag_unlabelled[column] += 1
            return IGNORE_INDEX
        index = self._tag_ids[column].get(value)
        if index is None:
            self.unknown.setdefault(f"tag {column}", Counter())[value] += 1
            return IGNORE_INDEX
        return index

    def tag_names(self, column: str) -> list[str]:
        """Tag column ``column``'s labels in id order."""
        return list(self._tags[column])

    @property
    def tag_columns(self) -> list[str]:
        """The columns tag heads are trained for, in head order."""
        return list(self._tags)

    def encode(self, category: str | None, subcategory: str | None) -> tuple[int, int]:
        """``(category_id, subcategory_id)``; ``-100`` (recorded in ``unknown``) for unknown names."""
        return self.encode_category(category), self.encode_subcategory(subcategory)

    def contains(self, category: str | None, subcategory: str | None) -> bool:
        """Whether both names (when given) are known; does not record anything."""
        return (not category or category in self._ids["category"]) and (
            not subcategory or subcategory in self._ids["subcategory"]
        )

    def category_id(self, name: str) -> int:
        """Strict lookup: ``KeyError`` naming the label and the known ones."""
        return self._strict("category", name)

    def subcategory_id(self, name: str) -> int:
        return self._strict("subcategory", name)

    def _strict(self, field: str, name: str) -> int:
        try:
            return self._ids[field][name]
        except KeyError:
            raise KeyError(f"unknown {field} {name!r} (known: {len(self._ids[field])} names)") from None

    def category_name(self, index: int) -> str:
        return self._names["category"][index]

    def subcategory_name(self, index: int) -> str:
        return self._names["subcategory"][index]

    # ---------------------------------------------------------------------------------- reports
    def unknown_report(self) -> str | None:
        """E.g. ``"unknown labels: category 'Hats' x3; subcategory 'Cap' x1, 'Visor' x2"``."""
        parts = []
        for field in self.unknown:
            if self.unknown[field]:
                names = ", ".join(f"{n!r} x{c}" for n, c in sorted(self.unknown[field].items()))
                parts.append(f"{field} {names}")
        return "unknown labels (encoded as -100, not scored): " + "; ".join(parts) if parts else None

    def reset_counts(self) -> None:
        self.unknown = {f: Counter() for f in FIELDS}
        self.unlabelled = Counter()
        self.tag_unlabelled = Counter()

    # ------------------------------------------------------------------------------- properties
    @property
    def category_names(self) -> list[str]:
        return list(self._names["category"])

    @property
    def subcategory_names(self) -> list[str]:
        return list(self._names["subcategory"])

    @property
    def num_categories(self) -> int:
        return len(self._names["category"])

    @property
    def num_subcategories(self) -> int:
        return len(self._names["subcategory"])

    # ------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """``tags`` only when there are tag columns, so maps without them keep their old file."""
        data: dict[str, Any] = {"format_version": FORMAT_VERSION, **{f: list(self._names[f]) for f in FIELDS}}
        if self._tags:
            data["tags"] = {column: list(values) for column, values in self._tags.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelMaps:
        missing = [f for f in FIELDS if f not in data]
        if missing:
            raise ValueError(f"label maps lack {missing}")
        tags = data.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, list) for v in tags.values()):
            raise ValueError("label maps' 'tags' must map each column to its list of labels")
        return cls(data["category"], data["subcategory"], tags)

    def save(self, path: str | Path) -> Path:
        """Write the maps as JSON (names in id order); the model saves them as ``labels.json``."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LabelMaps:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"label maps not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{path} is not a label-maps file: {err}") from err

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMaps) and self._names == other._names and self._tags == other._tags

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        tags = "".join(f", {c} {len(v)}" for c, v in self._tags.items())
        return f"LabelMaps({self.num_categories} categories, {self.num_subcategories} subcategories{tags})"


def _ids(name: str, values: Sequence[str]) -> dict[str, int]:
    ids = {v: i for i, v in enumerate(values)}
    if len(ids) != len(values) or "" in ids:
        raise ValueError(f"{name} names must be unique and non-empty: {values}")
    return ids
