"""One tagger over a checkpoint's fine-tuned tag heads and any zero-shot vocabulary.

Both read the same image-only pass (``model.image_features``), so a photo costs one encoder pass
whatever it is tagged with, and a photo without a description is tagged like any other. An
attribute that has a head and a zero-shot vocabulary is tagged by the head (trained on the
catalogue's own values); :meth:`Tagger.tag_by_source` keeps both, for evaluation.

Image + text (evaluation only: a new photo has no description) multiplies each source's image
evidence by the description's (:meth:`Tagger.log_probabilities`). For the fine-tuned source that
is the checkpoint's text tag heads, trained on the text-only pass beside the image heads: two
fine-tuned experts. For the zero-shot source, and for a checkpoint fine-tuned before text heads
existed, it is zero-shot: the description's ITC embedding against each label's (ITC heads needed).
Reading text always needs the tokenizer.

With a :class:`~.neighbours.Neighbours` memory (a labelled catalogue's photos), the head columns
gain two sources: ``neighbours`` (the nearest photos' votes alone) and ``fine-tuned+neighbours``
(the heads' probabilities and the votes, mixed by ``neighbour_weight``), the one their tags are
reported from. Their image + text is the fine-tuned source's text evidence over the same labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .neighbours import DEFAULT_WEIGHT, Neighbours
from .vocabulary import DEFAULT_TEMPLATE
from .zeroshot import ImageTags, ZeroShotTagger, top_tags

FINE_TUNED, ZERO_SHOT = "fine-tuned", "zero-shot"
NEIGHBOURS, BLENDED = "neighbours", "fine-tuned+neighbours"
SOURCES = (FINE_TUNED, NEIGHBOURS, BLENDED, ZERO_SHOT)
HEAD_LABELLED = (FINE_TUNED, NEIGHBOURS, BLENDED)
"""The sources over the tag heads' labels, which share the fine-tuned source's text evidence."""
IMAGE, IMAGE_TEXT = "image", "image+text"
MODES = (IMAGE, IMAGE_TEXT)
"""What a tag is read from: the photo alone (the default everywhere), or the photo and its text."""

LogProbabilities = dict[str, dict[str, torch.Tensor]]
"""Per source, per attribute, ``B x labels`` log-probabilities."""


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
    """Tags from ``model``'s tag heads (unless ``heads=False``), a zero-shot ``vocabulary`` and,
    for the head columns, the votes of a ``neighbours`` memory (mixed in by ``neighbour_weight``)."""

    def __init__(
        self,
        model: Any,
        vocabulary: Mapping[str, Sequence[str]] | None = None,
        *,
        heads: bool = True,
        template: str = DEFAULT_TEMPLATE,
        temperature: float | None = None,
        autocast: Callable[[], Any] | None = None,
        neighbours: Neighbours | None = None,
        neighbour_weight: float = DEFAULT_WEIGHT,
    ) -> None:
        self.model, self.template, self.temperature = model, template, temperature
        self.neighbours, self.neighbour_weight = neighbours, neighbour_weight
        self.autocast = autocast or contextlib.nullcontext
        self._text_evidence: dict[str, ZeroShotTagger] = {}
        self.heads = head_labels(model) if heads else {}
        self.text_heads = bool(self.heads) and bool(getattr(model, "text_tag_heads", None))
        """Whether image + text reads the fine-tuned source's text from its text tag heads (else
        from zero-shot text evidence: a checkpoint fine-tuned before they existed)."""
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
        if neighbours is not None:
            self._check_neighbours(neighbours, neighbour_weight)
            self.vocabularies |= {NEIGHBOURS: self.heads, BLENDED: self.heads}
        extra = {a: ZERO_SHOT for a in zero_shot if a not in self.heads}
        head_source = BLENDED if neighbours is not None else FINE_TUNED
        self.sources = {**dict.fromkeys(self.heads, head_source), **extra}
        """Per attribute, the source of its tags in :meth:`tag`."""

    def _check_neighbours(self, neighbours: Neighbours, weight: float) -> None:
        if not self.heads:
            raise ValueError(
                "neighbours vote over the tag heads' labels, and this checkpoint has no tag heads"
            )
        if neighbours.labels != self.heads:
            raise ValueError(
                f"the neighbours' labels are not the tag heads' ({', '.join(neighbours.labels)} against "
                f"{', '.join(self.heads)}): build them with the heads' labels (build_neighbours)"
            )
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"neighbour weight {weight}: a mixing weight between 0 and 1")

    @property
    def attributes(self) -> list[str]:
        return list(self.sources)

    @property
    def reads_text(self) -> bool:
        """Whether :meth:`log_probabilities` can take texts: a tokenizer, and the ITC heads for any
        source whose text evidence is zero-shot."""
        model = self.model
        if getattr(model, "tokenizer", None) is None:
            return False
        zero_shot_text = self.zero_shot is not None or (bool(self.heads) and not self.text_heads)
        return not zero_shot_text or getattr(model, "itc_head", None) is not None

    def log_probabilities(
        self, images: torch.Tensor, texts: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> dict[str, LogProbabilities]:
        """Per mode (:data:`IMAGE`, and :data:`IMAGE_TEXT` when ``texts``, the rows' tokenized
        ``(input_ids, attention_mask)``, are given), per source, per attribute, ``B x labels``
        log-probabilities of ``images`` (``B x 3 x S x S``), from one image pass.

        Image + text is a product of experts, renormalised: the source's image evidence times the
        text's. The fine-tuned source's text evidence is its text tag heads' softmax when the
        checkpoint has them; otherwise, and for the zero-shot source, zero-shot from the text's ITC
        embedding over the same labels (for the zero-shot source: zero-shot on the sum of the
        photo's and the text's embeddings).
        """
        with torch.inference_mode(), self.autocast():
            pooled = self.model.image_features(images)
            image: LogProbabilities = {}
            if self.heads:
                logits = self.model.tag_logits_from(pooled)
                image[FINE_TUNED] = {c: logits[c].log_softmax(-1) for c in self.heads}
                if self.neighbours is not None:
                    image |= self._neighbour_sources(pooled, image[FINE_TUNED])
            if self.zero_shot is not None:
                logits = self.zero_shot.logits_from(pooled)
                image[ZERO_SHOT] = {a: v.log_softmax(-1) for a, v in logits.items()}
        out = {IMAGE: image}
        if texts is not None:
            out[IMAGE_TEXT] = {}
            for source, evidence in image.items():
                text = self.text_logits(source, texts)
                out[IMAGE_TEXT][source] = {
                    a: (v + text[a].log_softmax(-1)).log_softmax(-1) for a, v in evidence.items()
                }
        return out

    def _neighbour_sources(self, pooled: torch.Tensor, heads: dict[str, torch.Tensor]) -> LogProbabilities:
        """The neighbours' votes alone, and mixed with the heads' probabilities (log)."""
        assert self.neighbours is not None
        votes, w = self.neighbours.probabilities(pooled), self.neighbour_weight
        return {
            NEIGHBOURS: {c: votes[c].log() for c in self.heads},
            BLENDED: {c: ((1 - w) * heads[c].float().exp() + w * votes[c]).log() for c in self.heads},
        }

    def text_logits(self, source: str, texts: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per attribute of ``source``, ``B x labels`` logits of the text's evidence."""
        if source in HEAD_LABELLED:
            source = FINE_TUNED
        if source == FINE_TUNED and self.text_heads:
            with torch.inference_mode(), self.autocast():
                return self.model.text_tag_logits(*texts)
        return self.text_evidence(source).text_logits(*texts)

    def text_evidence(self, source: str) -> ZeroShotTagger:
        """The labels of ``source``'s vocabulary embedded as texts (once), to score texts with."""
        if source not in self._text_evidence:
            if not self.reads_text:
                raise ValueError(
                    "image + text tags need the checkpoint's tokenizer and, where the text's evidence "
                    "is zero-shot, its ITC heads; this checkpoint has no ITC heads or no tokenizer"
                )
            if source == ZERO_SHOT and self.zero_shot is not None:
                self._text_evidence[source] = self.zero_shot
            else:
                self._text_evidence[source] = ZeroShotTagger(
                    self.model, self.vocabularies[source], template=self.template,
                    temperature=self.temperature, autocast=self.autocast,
                )  # fmt: skip
        return self._text_evidence[source]

    def probabilities(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Per source, per attribute, ``B x labels`` probabilities of ``images`` (``B x 3 x S x S``)."""
        image = self.log_probabilities(images)[IMAGE]
        return {s: {a: v.exp() for a, v in by_attribute.items()} for s, by_attribute in image.items()}

    def tag_modes(
        self, images: torch.Tensor, texts: tuple[torch.Tensor, torch.Tensor] | None = None, top_k: int = 3
    ) -> list[dict[str, dict[str, ImageTags]]]:
        """Per image, per mode, per source, per attribute, the ``top_k`` labels with their
        probabilities (:meth:`log_probabilities`' modes)."""
        modes = {
            mode: {
                s: top_tags({a: v.exp() for a, v in p.items()}, self.vocabularies[s], top_k)
                for s, p in by_source.items()
            }
            for mode, by_source in self.log_probabilities(images, texts).items()
        }
        return [
            {mode: {s: tags[i] for s, tags in by_source.items()} for mode, by_source in modes.items()}
            for i in range(images.shape[0])
        ]

    def tag_by_source(self, images: torch.Tensor, top_k: int = 3) -> list[dict[str, ImageTags]]:
        """Per image, per source, per attribute, the ``top_k`` labels with their probabilities."""
        return [modes[IMAGE] for modes in self.tag_modes(images, top_k=top_k)]

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
