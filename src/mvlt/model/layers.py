"""Transformer building blocks: spatial-reduction attention over [visual ; text] tokens.

Module and parameter names follow PVT-v1 (``q``, ``kv``, ``proj``, ``sr``, ``norm``, ``fc1``,
``fc2``) so ImageNet PVT weights and the released MVLT checkpoints map onto them one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PatchEmbed(nn.Module):
    """Conv (kernel = stride) + LayerNorm: a ``B x C x H x W`` map to ``B x (h*w) x D`` tokens."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class SpatialReductionAttention(nn.Module):
    """Multi-head attention over the joint sequence ``[visual (h*w) ; text (L)]``.

    Queries come from every token. Keys and values come from ``[SR(visual) ; text]``: the visual
    tokens are reshaped to their ``h x w`` map (hence the explicit ``hw`` argument), reduced by a
    ``sr x sr`` strided conv + LayerNorm, and the text tokens are appended unreduced.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def reduce(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """The key/value source: ``[LN(SR(visual)) ; text]``, or ``x`` itself when ``sr == 1``."""
        num_visual = hw[0] * hw[1]
        if self.sr_ratio == 1 or num_visual == 0:
            return x
        b, _, c = x.shape
        visual = x[:, :num_visual].transpose(1, 2).reshape(b, c, hw[0], hw[1])
        visual = self.norm(self.sr(visual).flatten(2).transpose(1, 2))
        return torch.cat((visual, x[:, num_visual:]), dim=1)

    def forward(
        self,
        x: torch.Tensor,
        hw: tuple[int, int],
        key_mask: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``: ``B x N x C``; ``key_mask``: ``B x 1 x 1 x M`` bool over the reduced keys (True = keep).

        ``queries`` (``B x n x C``, default ``x``) attend to the keys/values of ``x``: passing only
        the [CLS] row computes that row's output alone, for heads that read nothing else.
        """
        queries = x if queries is None else queries
        b, n, c = queries.shape
        q = self.q(queries).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(self.reduce(x, hw)).view(b, -1, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def num_keys(self, hw: tuple[int, int], num_text: int) -> int:
        """Length of the key sequence for a ``hw`` visual map and ``num_text`` text tokens."""
        if self.sr_ratio == 1:
            return hw[0] * hw[1] + num_text
        return (hw[0] // self.sr_ratio) * (hw[1] // self.sr_ratio) + num_text


class Block(nn.Module):
    """Pre-norm transformer block: ``x += DropPath(Attn(LN x)); x += DropPath(MLP(LN x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        x: torch.Tensor,
        hw: tuple[int, int],
        key_mask: torch.Tensor | None = None,
        query_index: int | None = None,
    ) -> torch.Tensor:
        """With ``query_index``, return only that token's output (``B x 1 x C``), computed exactly
        as in the full block but without the other tokens' queries and MLPs."""
        normed = self.norm1(x)
        if query_index is None:
            x = x + self.drop_path(self.attn(normed, hw, key_mask))
        else:
            rows = slice(query_index, query_index + 1)
            x = x[:, rows] + self.drop_path(self.attn(normed, hw, key_mask, queries=normed[:, rows]))
        return x + self.drop_path(self.mlp(self.norm2(x)))
