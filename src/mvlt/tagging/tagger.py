"""One tagger over a checkpoint's fine-tuned tag heads and any zero-shot vocabulary.

Both read the same image-only pass (``model.image_features``), so a photo costs one encoder pass
whatever it is tagged with, and a photo without a description is tagged like any other. An
attribute that has a head and a zero-shot vocabulary is tagged by the head (trained on the
catalogue's own values); :meth:`Tagger.tag_by_source` keeps both, for evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .vocabulary import DEFAULT_TEMPLATE
from .zeroshot import ImageTags, ZeroShotTagger, top_tags

FINE_TUNED, ZERO_SHOT = "fine-tuned", "zero-shot"
SOURCES = (FINE_TUNED, ZERO_SHOT)


def head_labels(model: Any) -> dict[str, list[str]]:
    """The checkpoint's tag columns and their labels, in head order (empty without tag heads)."""
    heads = getattr(model, "tag_heads", None)
    if not heads:
        return {}
    maps = getattr(model, "label_maps", None)
    if maps is None or maps.tag_columns != list(heads):
        raise ValueError("this checkpoint has tag heads but no label maps for them (labels.json 'tags')")
    return {column: maps.tag_names(column) for column in heads}


class Tagger:
    """Tags from ``model``'s tag heads (unless ``heads=False``) and a zero-shot ``vocabulary``."""

    def __init__(
        self,
        model: Any,
        vocabulary: Mapping[str, Sequence[str]] | None = None,
        *,
        heads: bool = True,
        template: str = DEFAULT_TEMPLATE,
        temperature: float | None = None,
        autocast: Callable[[], Any] | None = None,
    ) -> None:
        self.model = model
        self.autocast = autocast or contextlib.nullcontext
        self.heads = head_labels(model) if heads else {}
        self.zero_shot = (
            ZeroShotTagger(model, vocabulary, template=template, temperature=temperature, autocast=autocast)
            if vocabulary
            else None
        )
        if not self.heads and self.zero_shot is None:
            raise ValueError(
                "nothing to tag: this checkpoint has no tag heads (mvlt finetune --labels colour,...) "
                "and no zero-shot vocabulary was given (--zero-shot)"
            )
        zero_shot = self.zero_shot.vocabulary if self.zero_shot is not None else {}
        self.vocabularies = {FINE_TUNED: self.heads, ZERO_SHOT: zero_shot}
        extra = {a: ZERO_SHOT for a in zero_shot if a not in self.heads}
        self.sources = {**dict.fromkeys(self.heads, FINE_TUNED), **extra}
        """Per attribute, the source of its tags in :meth:`tag`."""

    @property
    def attributes(self) -> list[str]:
        return list(self.sources)

    def probabilities(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Per source, per attribute, ``B x labels`` probabilities of ``images`` (``B x 3 x S x S``)."""
        with torch.inference_mode(), self.autocast():
            pooled = self.model.image_features(images)
            out: dict[str, dict[str, torch.Tensor]] = {}
            if self.heads:
                logits = self.model.tag_logits_from(pooled)
                out[FINE_TUNED] = {c: logits[c].softmax(-1) for c in self.heads}
            if self.zero_shot is not None:
                out[ZERO_SHOT] = self.zero_shot.probabilities_from(pooled)
        return out

    def tag_by_source(self, images: torch.Tensor, top_k: int = 3) -> list[dict[str, ImageTags]]:
        """Per image, per source, per attribute, the ``top_k`` labels with their probabilities."""
        by_source = {
            s: top_tags(p, self.vocabularies[s], top_k) for s, p in self.probabilities(images).items()
        }
        return [{s: tags[i] for s, tags in by_source.items()} for i in range(images.shape[0])]

    def tag(self, images: torch.Tensor, top_k: int = 3) -> list[ImageTags]:
        """Per image, per attribute (from its source in :attr:`sources`), the ``top_k`` labels."""
        return [merge(tags, self.sources) for tags in self.tag_by_source(images, top_k)]


def merge(by_source: Mapping[str, ImageTags], sources: Mapping[str, str]) -> ImageTags:
    """One image's tags, each attribute from its source."""
    return {attribute: by_source[source][attribute] for attribute, source in sources.items()}


def tag_images(
    model: Any,
    images: torch.Tensor,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    *,
    top_k: int = 3,
    template: str = DEFAULT_TEMPLATE,
    temperature: float | None = None,
) -> list[ImageTags]:
    """Tag ``images`` (``B x 3 x S x S`` in [0, 1], no text) with the checkpoint's tag heads and
    the zero-shot ``vocabulary`` (``{"pattern": ["solid", "striped"]}``); ``Tagger(...).sources``
    says which gave each attribute. Build a :class:`Tagger` once to tag many batches."""
    return Tagger(model, vocabulary, template=template, temperature=temperature).tag(images, top_k)
