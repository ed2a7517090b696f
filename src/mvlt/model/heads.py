"""Heads on the last stage's features: ITC, ITM (paper's and fused), MLM and the two recognition heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ClsTokenHead(nn.Module):
    """[CLS] of T^4 -> Linear + LayerNorm -> Linear: the ITM head and each recognition head.

    ``extra_bias`` adds the separate output bias of the released heads (``linear_bias``), so that
    ``compat="official"`` has exactly the released parameters. ``extra_dim``: the output layer also
    reads that many features given beside the [CLS] (``MVLTConfig.recognition_reads_itc``).
    """

    def __init__(
        self, in_dim: int, hidden: int, num_classes: int, extra_bias: bool = False, extra_dim: int = 0
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden))
        self.fc = nn.Linear(hidden + extra_dim, num_classes)
        self.extra_bias = nn.Parameter(torch.zeros(num_classes)) if extra_bias else None
        self.extra_dim = extra_dim

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def hidden(self, cls: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """What the output layer reads: ``B x (hidden + extra_dim)``."""
        hidden = self.embed(cls)
        if not self.extra_dim:
            return hidden
        if extra is None or extra.shape[-1] != self.extra_dim:
            got = None if extra is None else tuple(extra.shape)
            raise ValueError(f"this head reads {self.extra_dim} extra features beside the [CLS], got {got}")
        return torch.cat((hidden, extra.to(hidden.dtype)), -1)

    def forward(self, cls: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.fc(self.hidden(cls, extra))
        return logits if self.extra_bias is None else logits + self.extra_bias


class MLMHead(nn.Module):
    """T^4 -> Linear + LN -> dense + GELU + LN -> word-embedding matrix (tied) + bias.

    The decoder matrix is not a parameter of the head: ``forward`` takes the word-embedding
    weight, so the tie needs no bookkeeping and checkpoints hold the matrix once. Callers pass
    only the positions that carry an MLM label (the released head scored all 128 positions).
    ``train_embeddings=False`` keeps the tie for the logits but stops the decoder's gradient at the
    embedding matrix (see ``MVLTConfig.mlm_trains_embeddings``).
    """

    def __init__(self, in_dim: int, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden))
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(
        self, tokens: torch.Tensor, word_embeddings: torch.Tensor, train_embeddings: bool = True
    ) -> torch.Tensor:
        hidden = self.norm(F.gelu(self.dense(self.embed(tokens))))
        return F.linear(hidden, word_embeddings if train_embeddings else word_embeddings.detach(), self.bias)


class EmbeddingPair(nn.Module):
    """Two linear projections of the unimodal features into one unit-length space: the image
    pass's mean visual token and the text pass's [CLS] (``B x D_4`` -> ``B x dim``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(in_dim, dim)
        self.text_proj = nn.Linear(in_dim, dim)

    @property
    def dim(self) -> int:
        return self.image_proj.out_features

    def embed_image(self, pooled: torch.Tensor) -> torch.Tensor:
        """``B x D_4`` mean visual token of the image-only pass -> ``B x dim``, unit length."""
        return F.normalize(self.image_proj(pooled), dim=-1)

    def embed_text(self, cls: torch.Tensor) -> torch.Tensor:
        """``B x D_4`` [CLS] of the text-only pass -> ``B x dim``, unit length."""
        return F.normalize(self.text_proj(cls), dim=-1)


class MimicHead(nn.Module):
    """Training-only projections of the unimodal features to a teacher's own feature widths (an
    absent side is ``None``): what ``kd_image_raw`` / ``kd_text_raw`` compare with the teachers."""

    def __init__(self, in_dim: int, image_dim: int, text_dim: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(in_dim, image_dim) if image_dim else None
        self.text_proj = nn.Linear(in_dim, text_dim) if text_dim else None


class ContrastiveHead(EmbeddingPair):
    """ITC (CLIP / ALBEF): project the unimodal image and text features into one space.

    ``temperature`` is learnt and clamped to ``bounds`` when read (CLIP clamps its logit scale
    for the same reason: a temperature that runs to 0 makes the loss blow up).
    """

    def __init__(
        self, in_dim: int, dim: int, temperature: float = 0.07, bounds: tuple[float, float] = (0.01, 0.5)
    ) -> None:
        super().__init__(in_dim, dim)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.bounds = bounds

    def clamped_temperature(self) -> torch.Tensor:
        return self.temperature.clamp(*self.bounds)


class FusedMatchHead(nn.Module):
    """ITM on the joint pass with an explicit text x image interaction.

    score = s * cos(P_t [CLS], P_v mean(visual)) + w . [CLS] + b, where [CLS] and the visual tokens
    are both the last stage's outputs of the *joint* pass (each has attended to the other
    modality). ``P_t`` / ``P_v`` are the ITC projections when the model has them (``shared``),
    so matching starts from the space ITC aligns and spends its own capacity on what the joint
    stage adds; the [CLS] read-out lets cross-attention add what a cosine cannot express.
    Returns 2-way logits ``[0, score]``, a drop-in for the paper's head (softmax = sigmoid(score)).
    """

    def __init__(
        self, in_dim: int, dim: int, own_projections: bool, scale: float = 10.0, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        self.text_proj = nn.Linear(in_dim, dim) if own_projections else None
        self.image_proj = nn.Linear(in_dim, dim) if own_projections else None
        self.cls_score = nn.Linear(in_dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.max_scale = max_scale

    @property
    def num_classes(self) -> int:
        return 2

    def forward(
        self, cls: torch.Tensor, visual: torch.Tensor, shared: ContrastiveHead | None = None
    ) -> torch.Tensor:
        """``cls``: ``B x D_4``; ``visual``: ``B x D_4`` mean of the fused visual tokens."""
        if self.text_proj is not None and self.image_proj is not None:
            text, image = self.text_proj(cls), self.image_proj(visual)
        elif shared is not None:
            text, image = shared.text_proj(cls), shared.image_proj(visual)
        else:
            raise ValueError("this fused ITM head shares the ITC projections: pass the ContrastiveHead")
        cosine = (F.normalize(text, dim=-1) * F.normalize(image, dim=-1)).sum(-1)
        score = self.log_scale.exp().clamp(max=self.max_scale) * cosine + self.cls_score(cls).squeeze(-1)
        return torch.stack((torch.zeros_like(score), score), dim=-1)
