"""Tags by the votes of the nearest labelled photos: a catalogue's own products as a memory.

A head compresses the training photos into one linear map per attribute; some of what they hold
is lost there. The memory keeps every labelled photo of a catalogue (its image-only pass, the same
``model.image_features`` the heads read, L2-normalised) and tags a new photo by its ``k`` most
similar ones, each voting for its label with weight ``softmax(cosine / temperature)`` (the
weighted kNN of InstDisc and DINO's evaluation). The votes are over the heads' labels (a memory
value the heads do not know is not counted), so they blend with the heads' probabilities:
``(1 - weight) * head + weight * votes`` (:class:`~.tagger.Tagger`). The model is unchanged; the
memory is built from the catalogue at start-up, one image pass per photo.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..data.columns import catalogue_columns
from ..data.errors import SkipLog
from ..exits import UsageError
from .sources import CataloguePhotos, prepared_batches

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.05
DEFAULT_WEIGHT = 0.5
FLOOR = 1e-6
"""Added to every label's votes before renormalising: a label no neighbour has keeps a finite log."""


@dataclass
class Neighbours:
    """``features``: ``N x D`` unit rows; ``targets[column]``: ``N`` label ids into
    ``labels[column]`` (-1: empty or not a label); ``source``: where the photos came from."""

    features: torch.Tensor
    labels: dict[str, list[str]]
    targets: dict[str, torch.Tensor]
    source: str = ""
    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.k < 1 or self.temperature <= 0:
            raise ValueError(
                f"neighbours: k must be >= 1 and temperature > 0, not {self.k}, {self.temperature}"
            )
        for column, target in self.targets.items():
            if len(target) != len(self.features):
                raise ValueError(f"neighbours: {len(target)} {column} labels for {len(self.features)} photos")

    def __len__(self) -> int:
        return len(self.features)

    def probabilities(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per column, ``B x labels`` vote shares of the ``k`` nearest photos to ``pooled``
        (``B x D`` image-pass features, on the memory's device); neighbours without a label in a
        column do not vote there."""
        query = F.normalize(pooled.float(), dim=-1)
        cosine, nearest = (query @ self.features.T).topk(min(self.k, len(self)), dim=1)
        weights = (cosine / self.temperature).softmax(dim=1)
        out = {}
        for column, names in self.labels.items():
            target = self.targets[column][nearest]
            votes = torch.zeros(len(query), len(names), device=query.device)
            votes.scatter_add_(1, target.clamp(min=0), weights * (target >= 0))
            votes += FLOOR
            out[column] = votes / votes.sum(dim=1, keepdim=True)
        return out


def label_targets(values: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
    """Each value's index in ``labels`` (-1 when empty or not a label)."""
    index = {label: i for i, label in enumerate(labels)}
    return torch.tensor([index.get(v, -1) for v in values], dtype=torch.long)


def catalogue_features(
    model: Any,
    catalogue: Any,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], Any] | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
) -> tuple[list[int], torch.Tensor, SkipLog]:
    """The catalogue rows read, their ``N x D`` fp32 image-pass features (``model.image_features``,
    on ``device``) and what was skipped: the memory's pass, and a scored split's."""
    photos = CataloguePhotos(catalogue)
    skips, rows, features = SkipLog(), [], []
    batches = prepared_batches(
        photos, photos.photos, image_size=int(model.config.image_size), batch_size=batch_size,
        skips=skips, skip_bad_rows=skip_bad_rows, progress=progress, desc="image pass",
    )  # fmt: skip
    with torch.inference_mode(), (autocast or contextlib.nullcontext)():
        for chunk, pixels in batches:
            features.append(model.image_features(pixels.to(device)).float())
            rows.extend(int(p.row or 0) for p in chunk)
    if not rows:
        raise ValueError(f"{photos.source}: no photo could be read")
    return rows, torch.cat(features), skips


def build_neighbours(
    model: Any,
    catalogue: Any,
    labels: Mapping[str, Sequence[str]],
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], Any] | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
) -> tuple[Neighbours, SkipLog]:
    """Every photo of ``catalogue`` through ``model``'s image-only pass (kept on ``device``), with
    its values of the ``labels`` columns (a column the catalogue lacks: a UsageError naming it), and
    what was skipped."""
    columns = catalogue_columns(catalogue, list(labels), "--neighbours")
    rows, features, skips = catalogue_features(
        model, catalogue, batch_size=batch_size, device=device, autocast=autocast,
        skip_bad_rows=skip_bad_rows, progress=progress,
    )  # fmt: skip
    targets = {
        column: label_targets([columns.values[column][r] for r in rows], names).to(features.device)
        for column, names in labels.items()
    }
    labels = {c: list(v) for c, v in labels.items()}
    memory = Neighbours(F.normalize(features, dim=-1), labels, targets, str(catalogue.source), k, temperature)
    return memory, skips


def open_neighbours(
    model: Any, heads: Mapping[str, Sequence[str]], manifest: str, split: str | None, **options: Any
) -> Neighbours:
    """The ``split`` of ``manifest`` as a memory over ``model``'s tag ``heads`` (column: labels;
    ``--neighbours``); a skipped photo is logged. ``options``: :func:`build_neighbours`'s."""
    from ..data.sources import open_catalogue

    if not heads:
        raise UsageError(
            "--neighbours votes over the tag heads' labels, and this checkpoint has no tag heads"
        )
    catalogue = open_catalogue(manifest, split=split, skip_bad_rows=options.get("skip_bad_rows", False))
    memory, skips = build_neighbours(model, catalogue, heads, **options)
    report = skips.report(memory.source)
    if report:
        logging.getLogger("mvlt.tagging").warning("--neighbours: %s", report)
    return memory
