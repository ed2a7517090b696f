"""Label vocabularies for zero-shot tagging: which attributes to tag and the labels each may take.

A vocabulary comes from ``--zero-shot`` values, each one of:

- ``colour=black,white,red``: an attribute and its labels (``;`` separates several in one value);
- ``colour`` or ``colour,pattern``: the catalogue's own columns, whose distinct values are the
  labels (needs a manifest: :mod:`.attributes` reads them);
- a ``.yaml`` / ``.yml`` / ``.json`` file holding ``{"colour": ["black", "white"], ...}``.

A wrong value is the command line's fault (:class:`~mvlt.exits.UsageError`, exit 2) and the error
names it; a file that is missing or malformed is what the command points at (exit 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Any

import yaml

from ..exits import UsageError

FILE_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_TEMPLATE = "{label}"
TEMPLATE_FIELDS = ("label", "attribute")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .-]*$")


@dataclass
class VocabularySpec:
    """Attributes with their labels (``labels``) and attributes whose labels come from the
    catalogue's column of that name (``columns``), in the order given."""

    labels: dict[str, list[str]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)

    @property
    def attributes(self) -> list[str]:
        return [*self.labels, *self.columns]

    def _add_name(self, name: str, what: str) -> None:
        if not _NAME.match(name):
            raise UsageError(f"{what}: {name!r} is not an attribute name (letters, digits, _ . - and spaces)")
        if name in self.labels or name in self.columns:
            raise UsageError(f"{what}: attribute {name!r} is given twice")

    def add_labels(self, name: str, labels: Sequence[Any], what: str) -> None:
        name = str(name).strip()
        self._add_name(name, what)
        self.labels[name] = check_labels(name, labels, what)

    def add_column(self, name: str, what: str) -> None:
        name = name.strip()
        self._add_name(name, what)
        self.columns.append(name)


def check_labels(name: str, labels: Sequence[Any], what: str) -> list[str]:
    """Labels as clean strings; two at least (one label always wins), none empty or repeated
    (ignoring case)."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise UsageError(f"{what}: the labels of {name!r} must be a list, got {type(labels).__name__}")
    clean = [" ".join(str(label).split()) for label in labels if label is not None]
    if any(not label for label in clean):
        raise UsageError(f"{what}: attribute {name!r} has an empty label")
    seen: set[str] = set()
    repeated = []
    for label in clean:  # evaluation matches labels case-folded, so Black and black are one label
        if label.casefold() in seen:
            repeated.append(label)
        seen.add(label.casefold())
    if repeated:
        raise UsageError(f"{what}: attribute {name!r} repeats label(s) {', '.join(map(repr, repeated))}")
    if len(clean) < 2:
        raise UsageError(f"{what}: attribute {name!r} needs at least two labels to choose from, got {clean}")
    return clean


def parse_specs(values: Sequence[str]) -> VocabularySpec:
    """Every ``--zero-shot`` value in order, into one :class:`VocabularySpec`."""
    if not values:
        raise UsageError("--zero-shot: give the attributes to tag (colour=black,white or a column or a file)")
    spec = VocabularySpec()
    for value in values:
        if value.strip().lower().endswith(FILE_SUFFIXES):
            for name, labels in load_file(Path(value.strip())).items():
                spec.add_labels(name, labels, f"--zero-shot {value}")
            continue
        for part in (p.strip() for p in value.split(";")):
            what = f"--zero-shot {part!r}"
            if not part:
                continue
            if "=" in part:
                name, _, labels = part.partition("=")
                if not name.strip():
                    raise UsageError(f"{what}: no attribute name before '='")
                if not labels.strip():
                    raise UsageError(f"{what}: no labels after '=' (colour=black,white,red)")
                spec.add_labels(name, labels.split(","), what)
            else:
                for column in part.split(","):
                    if not column.strip():
                        raise UsageError(f"{what}: an empty column name")
                    spec.add_column(column, what)
    if not spec.attributes:
        raise UsageError(f"--zero-shot {' '.join(values)!r}: no attribute given")
    return spec


def load_file(path: Path) -> dict[str, list[str]]:
    """The ``{attribute: [labels]}`` mapping of a YAML or JSON file (malformed: ValueError, exit 1)."""
    if not path.is_file():
        raise FileNotFoundError(f"--zero-shot {path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}"
        ) from err
    if not isinstance(data, Mapping) or not data:
        raise ValueError(
            f"{path}: expected a mapping of attribute -> list of labels, e.g. colour: [black, white]"
        )
    try:
        spec = VocabularySpec()
        for name, labels in data.items():
            spec.add_labels(str(name), labels, str(path))
    except UsageError as err:  # the file, not the command line, is wrong
        raise ValueError(str(err)) from None
    return spec.labels


def check_template(template: str) -> str:
    """A prompt template with ``{label}`` (and optionally ``{attribute}``) and no other field."""
    try:
        fields = [f for _, f, _, _ in Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise UsageError(f"--prompt {template!r}: {err}") from None
    unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
    if unknown:
        raise UsageError(
            f"--prompt {template!r}: unknown field(s) {unknown}; use {{label}} and {{attribute}}"
        )
    if "label" not in fields:
        raise UsageError(f"--prompt {template!r}: the template must contain {{label}}")
    return template


def prompts(template: str, attribute: str, labels: Sequence[str]) -> list[str]:
    """The text each label is embedded as."""
    return [template.format(label=label, attribute=attribute.replace("_", " ")) for label in labels]
