"""Heads on the last stage's text tokens: ITM, MLM and the two recognition heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClsTokenHead(nn.Module):
    """[CLS] of T^4 -> Linear + LayerNorm -> Linear: the ITM head and each recognition head.

    ``extra_bias`` adds the separate output bias of the released heads (``linear_bias``), so that
    ``compat="official"`` has exactly the released parameters.
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, extra_bias: bool = False) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden))
        self.fc = nn.Linear(hidden, num_classes)
        self.extra_bias = nn.Parameter(torch.zeros(num_classes)) if extra_bias else None

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.embed(cls))
        return logits if self.extra_bias is None else logits + self.extra_bias


class MLMHead(nn.Module):
    """T^4 -> Linear + LN -> dense + GELU + LN -> word-embedding matrix (tied) + bias.

    The decoder matrix is not a parameter of the head: ``forward`` takes the word-embedding
    weight, so the tie needs no bookkeeping and checkpoints hold the matrix once. Callers pass
    only the positions that carry an MLM label (the released head scored all 128 positions).
    """

    def __init__(self, in_dim: int, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden))
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(F.gelu(self.dense(self.embed(tokens))))
        return F.linear(hidden, word_embeddings, self.bias)
