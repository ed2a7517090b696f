"""Which catalogue a ``--data`` value means: the word ``synthetic``, a Fashion-Gen HDF5 file or a
manifest (or a folder holding one).

Kept apart from :mod:`.catalogue` so the base class does not import its own subclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalogue import Catalogue, ManifestCatalogue, normalise_split
from .fashiongen import FashionGenCatalogue, find_fashiongen_file
from .synthetic import SyntheticCatalogue

MANIFEST_NAMES = ("metadata.csv", "metadata.jsonl", "manifest.csv", "manifest.jsonl")
"""Files :func:`open_catalogue` looks for when given a directory."""


def open_catalogue(path_or_name: str | Path, split: str | None = None, **options: Any) -> Catalogue:
    """Open a catalogue: ``"synthetic"``, a Fashion-Gen ``.h5`` file (or a folder holding
    ``fashiongen_256_256_{split}.h5``), or a CSV/JSONL manifest (or a folder holding
    ``metadata.csv`` / ``metadata.jsonl`` / ``manifest.csv`` / ``manifest.jsonl``).

    ``options`` go to the catalogue class: :class:`~mvlt.data.catalogue.ManifestCatalogue`,
    :class:`~mvlt.data.fashiongen.FashionGenCatalogue` or
    :class:`~mvlt.data.synthetic.SyntheticCatalogue` (see their docstrings). All accept
    ``skip_bad_rows``. ``split`` ``all`` (or None) means every row.
    """
    split = normalise_split(split)
    if isinstance(path_or_name, str) and path_or_name.strip().lower() == "synthetic":
        return SyntheticCatalogue(split=split, **options)
    path = Path(path_or_name)
    if path.is_dir():
        h5 = find_fashiongen_file(path, split)
        if h5 is not None:
            path = h5
        else:
            found = next((path / n for n in MANIFEST_NAMES if (path / n).is_file()), None)
            if found is None:
                names = ", ".join(MANIFEST_NAMES)
                raise FileNotFoundError(f"{path} holds no manifest ({names}) and no Fashion-Gen .h5 file")
            path = found
    if path.suffix.lower() in (".h5", ".hdf5"):
        return FashionGenCatalogue(path, split=split, **options)
    if path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        return ManifestCatalogue(path, split=split, **options)
    if not path.exists():
        raise FileNotFoundError(
            f"catalogue not found: {path} (expected a manifest, a .h5 file or 'synthetic')"
        )
    raise ValueError(f"{path}: unknown catalogue format (expected .csv, .jsonl, .h5 or 'synthetic')")
