"""Tags for the server: an uploaded photo's (``POST /tag``) and each search result's.

A result's tags are computed when it is returned, from its product photo, in one batch per
search: nothing is stored in the index, so an index built before tag heads existed (or with
another vocabulary) is served with tags as it is, and one product photo that cannot be read any
more leaves that result without tags (logged) instead of failing the search.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from ..data.errors import DataError
from ..data.images import ImageLoadError, prepare_image
from ..tagging import Tagger, head_labels

log = logging.getLogger("mvlt.search")


def served_tags(
    index: Any, vocabulary: Mapping[str, Sequence[str]] | None = None, top_k: int = 3
) -> ServedTags | None:
    """Tags for ``index`` when its checkpoint has tag heads or a zero-shot ``vocabulary`` is given."""
    if not head_labels(index.model) and not vocabulary:
        return None
    return ServedTags(index, vocabulary, top_k)


class ServedTags:
    """A :class:`~mvlt.tagging.Tagger` over the index's model, at the index's image size and precision."""

    def __init__(
        self, index: Any, vocabulary: Mapping[str, Sequence[str]] | None = None, top_k: int = 3
    ) -> None:
        settings = index.manifest["embedding"]
        self.index, self.top_k = index, top_k
        self.image_size, self.resize = int(settings["image_size"]), settings["resize"]
        self.tagger = Tagger(index.model, vocabulary, autocast=self._autocast)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.index.precision == "bf16":
            return torch.autocast(device_type=self.index.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> dict[str, str]:
        """Per attribute, its source (``fine-tuned`` or ``zero-shot``): what ``/healthz`` reports."""
        return dict(self.tagger.sources)

    def _tag(self, pictures: Sequence[Image.Image]) -> list[dict[str, Any]]:
        pixels = torch.stack([prepare_image(p, self.image_size, self.resize) for p in pictures])
        tagged = self.tagger.tag(pixels.to(self.index.device), self.top_k)
        return [{a: [t.to_dict() for t in tags[a]] for a in self.tagger.sources} for tags in tagged]

    def photo(self, picture: Image.Image) -> dict[str, Any]:
        """``{"tags": {attribute: [{label, probability}, ...]}, "sources": {attribute: source}}``."""
        return {"tags": self._tag([picture])[0], "sources": self.describe()}

    def products(self, rows: Sequence[int]) -> list[dict[str, Any] | None]:
        """The tags of each product row (``None`` where its photo cannot be read)."""
        pictures: dict[int, Image.Image] = {}
        for row in rows:
            try:
                pictures[row] = self.index.catalogue.load_image(row)
            except (ImageLoadError, DataError, OSError) as err:
                log.warning("product row %s is served without tags: %s", row, err)
        tagged = dict(zip(pictures, self._tag(list(pictures.values())))) if pictures else {}
        return [tagged.get(row) for row in rows]
