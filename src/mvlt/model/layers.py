"""Transformer building blocks: spatial-reduction attention over [visual ; text] tokens.

Module and parameter names follow PVT-v1 (``q``, ``kv``, ``proj``, ``sr``, ``norm``, ``fc1``,
``fc2``) so ImageNet PVT weights and the released MVLT checkpoints map onto them one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cpu_has_native_bf16


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


def patch_tokens(x: torch.Tensor, conv: nn.Conv2d) -> tuple[torch.Tensor, tuple[int, int]]:
    """``conv`` (kernel = stride, no padding) on a ``B x C x H x W`` map, computed as one matrix
    product over the non-overlapping patches: ``B x (h*w) x D`` tokens (row-major, as
    ``conv(x).flatten(2).transpose(1, 2)``) and ``(h, w)``.

    The same sums as the convolution, but a plain GEMM whose backward is two more GEMMs: oneDNN's
    backward of these large-kernel strided convolutions is ~1.3x slower in fp32 and bf16 on one
    thread and worse on two, and the tokens come out in the layout the transformer reads, without
    the NCHW round trip. ``x`` may be a channels-last view of tokens (no copy is made before the
    one gather of the patches).
    """
    k = conv.stride[0]
    b, c, height, width = x.shape
    h, w = height // k, width // k
    if (height, width) != (h * k, w * k):  # the convolution drops a remainder: so do we
        x = x[:, :, : h * k, : w * k]
    patches = x.permute(0, 2, 3, 1).reshape(b, h, k, w, k, c).transpose(2, 3).reshape(b, h * w, k * k * c)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, k * k * c)
    return F.linear(patches, weight, conv.bias), (h, w)


@torch.compiler.assume_constant_result
def _cpu_computes_bf16() -> bool:
    """A constant to ``torch.compile``, which would otherwise trace the /proc/cpuinfo read and break
    the graph there."""
    return cpu_has_native_bf16() is not None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention (``B x heads x N x d``; ``mask`` True = keep), as PyTorch's SDPA.

    In reduced precision on a CPU it is written out as two batched matmuls around a softmax:
    PyTorch's CPU flash kernel gains nothing from bf16 (its backward is slower than in fp32) and
    its math kernel computes in fp32, while the keys here are few (spatial reduction keeps them
    to ~150), so the score matrix is small; measured on an AVX-512 BF16 EPYC, forward + backward
    of the four stages' attention took 94 ms against 177 ms with SDPA (1 thread, batch 8, 256 px).
    The scale and the padding mask (as an additive bias) ride on the first matmul (``baddbmm``),
    which saves two passes over the score matrix forward and one backward. Only where the CPU
    computes bf16 natively: emulated (AVX2), the written-out form is 3.6x slower than SDPA.
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or not _cpu_computes_bf16():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, heads, n, d = q.shape
    m = k.shape[-2]
    if mask is None:
        bias, beta = q.new_zeros(()), 0.0
    else:
        bias = q.new_zeros(mask.shape).masked_fill_(~mask, float("-inf"))
        bias, beta = bias.expand(b, heads, 1, m).reshape(b * heads, 1, m), 1.0
    scores = torch.baddbmm(
        bias, q.reshape(b * heads, n, d), k.reshape(b * heads, m, d).transpose(1, 2), beta=beta, alpha=d**-0.5
    )
    return (scores.softmax(-1) @ v.reshape(b * heads, m, d)).view(b, heads, n, d)


class PatchEmbed(nn.Module):
    """Conv (kernel = stride) + LayerNorm: a ``B x C x H x W`` map to ``B x (h*w) x D`` tokens."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        tokens, hw = patch_tokens(x, self.proj)
        return self.norm(tokens), hw


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
        visual = x[:, :num_visual].unflatten(1, hw).permute(0, 3, 1, 2)  # a view, no copy
        visual = self.norm(patch_tokens(visual, self.sr)[0])
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
        return self.proj(attention(q, k, v, key_mask).transpose(1, 2).reshape(b, n, c))

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
