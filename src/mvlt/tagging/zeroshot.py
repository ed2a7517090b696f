"""Zero-shot tags from the ITC embeddings: a photo's embedding against each label's, as a text.

Any checkpoint trained with ITC heads can tag an attribute it never had a head for: each label is
embedded once through a prompt (``"{label}"`` or ``"a photo of a {label} garment"``), a photo
once, and their cosines over a temperature become a softmax over that attribute's labels. The
default temperature is the model's own ITC temperature, the scale its contrastive loss was
trained at, so the probabilities are those the ITC objective itself would assign.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.batches import encode_texts
from .vocabulary import DEFAULT_TEMPLATE, check_labels, check_template, prompts


@dataclass(frozen=True)
class Tag:
    """One label of one attribute for one image, with its probability among the attribute's labels."""

    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": round(self.probability, 6)}


ImageTags = dict[str, list[Tag]]
"""Per attribute, the top-k tags of one image, the most probable first."""


def require_itc(model: Any) -> None:
    """Zero-shot tagging needs the ITC embeddings and a tokenizer to embed the labels with."""
    if getattr(model, "itc_head", None) is None:
        raise ValueError(
            "this checkpoint has no ITC heads (contrastive_dim = 0: the paper's recipe or the authors' "
            "weights), so it cannot tag zero-shot; train with the default recipe"
        )
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(
            "this checkpoint has no tokenizer (tokenizer_config.json + vocab.txt) to embed labels"
        )


class ZeroShotTagger:
    """A model and a vocabulary, with each label embedded once; :meth:`tag` scores image batches."""

    def __init__(
        self,
        model: Any,
        vocabulary: Mapping[str, Sequence[str]],
        *,
        template: str = DEFAULT_TEMPLATE,
        temperature: float | None = None,
        autocast: Callable[[], Any] | None = None,
    ) -> None:
        require_itc(model)
        if not vocabulary:
            raise ValueError("the vocabulary names no attribute to tag")
        self.model, self.template = model, check_template(template)
        self.vocabulary = {a: check_labels(a, labels, "vocabulary") for a, labels in vocabulary.items()}
        if temperature is None:
            temperature = float(model.itc_head.clamped_temperature().detach())
        if not temperature > 0:
            raise ValueError(f"the temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.autocast = autocast or contextlib.nullcontext
        self.label_embeddings = {a: self._embed_labels(a, labels) for a, labels in self.vocabulary.items()}

    def _embed_labels(self, attribute: str, labels: Sequence[str], chunk: int = 64) -> torch.Tensor:
        """Unit-length ITC embeddings of the labels' prompts, ``chunk`` texts per pass."""
        texts = prompts(self.template, attribute, labels)
        device = next(self.model.parameters()).device
        out = []
        for at in range(0, len(texts), chunk):
            batch = encode_texts(self.model.tokenizer, texts[at : at + chunk])
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            with torch.inference_mode(), self.autocast():
                out.append(self.model.encode_texts(ids, mask).float())
        return torch.cat(out)

    def probabilities(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per attribute, ``B x labels`` probabilities of ``images`` (``B x 3 x S x S`` in [0, 1])."""
        with torch.inference_mode(), self.autocast():
            return self.probabilities_from(self.model.image_features(images))

    def probabilities_from(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`probabilities` from ``model.image_features``' pooled features (shared with the
        tag heads, so a photo costs one image pass whatever tags it)."""
        return {a: logits.softmax(-1) for a, logits in self.logits_from(pooled).items()}

    def logits_from(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per attribute, ``B x labels`` cosines over the temperature of the photos' embeddings."""
        with torch.inference_mode(), torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.logits_of(self.model.embed_image_features(pooled))

    def text_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per attribute, ``B x labels`` cosines over the temperature of texts (a product's
        description) with each label: the text's evidence, from one text-only pass."""
        with torch.inference_mode(), self.autocast():
            texts = self.model.encode_texts(input_ids, attention_mask)
        return self.logits_of(texts)

    def logits_of(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per attribute, ``B x labels`` cosines of unit-length ITC ``embeddings`` with each label's,
        over the temperature."""
        with torch.inference_mode():
            unit = embeddings.float()
            return {a: unit @ e.T / self.temperature for a, e in self.label_embeddings.items()}

    def tag(self, images: torch.Tensor, top_k: int = 3) -> list[ImageTags]:
        """Per image, per attribute, the ``top_k`` labels with their probabilities."""
        return top_tags(self.probabilities(images), self.vocabulary, top_k)


def top_tags(
    probabilities: Mapping[str, torch.Tensor], vocabulary: Mapping[str, Sequence[str]], top_k: int
) -> list[ImageTags]:
    """Per image, per attribute, the ``top_k`` labels of ``B x labels`` probabilities."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    out: list[ImageTags] = []
    for attribute, probs in probabilities.items():
        labels = vocabulary[attribute]
        values, rows = probs.topk(min(top_k, len(labels)), dim=-1)
        out = out or [{} for _ in range(probs.shape[0])]
        for i, (vs, rs) in enumerate(zip(values.cpu().tolist(), rows.cpu().tolist())):
            out[i][attribute] = [Tag(labels[r], v) for v, r in zip(vs, rs)]
    return out


def zero_shot_tags(
    model: Any,
    images: torch.Tensor,
    vocabulary: Mapping[str, Sequence[str]],
    *,
    template: str = DEFAULT_TEMPLATE,
    temperature: float | None = None,
    top_k: int = 3,
) -> list[ImageTags]:
    """Tag ``images`` (``B x 3 x S x S`` in [0, 1]) with the labels of ``vocabulary``
    (``{"colour": ["black", "white"], ...}``); see :class:`ZeroShotTagger` to tag many batches."""
    tagger = ZeroShotTagger(model, vocabulary, template=template, temperature=temperature)
    return tagger.tag(images, top_k)
