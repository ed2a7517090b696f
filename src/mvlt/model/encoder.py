"""The MVLT encoder pieces: the text input embedding and one pyramid stage over [visual ; text].

Stage k (eq. 1-2 of the paper): the previous visual map goes through a strided conv + LN and gets
a learned position embedding; the previous text tokens go through Linear + LN and get a learned
text position embedding; the concatenated sequence runs ``M_k`` blocks and is split again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import Block, PatchEmbed


@dataclass
class EncoderOutput:
    """Per-stage features: ``text`` 4 x ``B x L x D_k``, ``visual`` 4 x ``B x D_k x H/R_k x W/R_k``.

    Either is ``None`` when that modality was not given (unimodal features for catalogue search).
    """

    text: list[torch.Tensor] | None
    visual: list[torch.Tensor] | None
    attention_mask: torch.Tensor | None = None

    @property
    def cls(self) -> torch.Tensor:
        """The last stage's [CLS] token, ``B x D_4``: what the ITM and recognition heads read."""
        if self.text is None:
            raise ValueError("this output has no text features (input_ids=None): no [CLS] token")
        return self.text[-1][:, 0]


class TextEmbedding(nn.Module):
    """BERT's input layer: word (+ token type 0) + position embeddings, LayerNorm, dropout."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        num_positions: int,
        *,
        token_type: bool = False,
        pad_token_id: int = 0,
        eps: float = 1e-12,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(num_positions, dim)
        self.token_type_embeddings = nn.Embedding(2, dim) if token_type else None
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"text of {length} tokens is longer than the model's "
                f"{self.position_embeddings.num_embeddings} positions"
            )
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:  # all tokens are segment 0, as in the released code
            x = x + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings.weight[:length]
        return self.dropout(self.norm(x))


class Stage(nn.Module):
    """One pyramid stage over the joint sequence ``[visual ; text]``."""

    def __init__(
        self,
        *,
        in_chans: int,
        text_in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        patch: int,
        pos_grid: tuple[int, int],
        pos_extra_slots: int,
        max_text_len: int,
        drop_path: list[float],
        norm_eps: float,
        mask_padding: bool,
    ) -> None:
        super().__init__()
        self.pos_grid = pos_grid
        self.pos_extra_slots = pos_extra_slots
        self.mask_padding = mask_padding
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.text_proj = nn.Sequential(nn.Linear(text_in_dim, dim), nn.LayerNorm(dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_extra_slots + pos_grid[0] * pos_grid[1], dim))
        self.text_pos_embed = nn.Parameter(torch.zeros(1, max_text_len, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, sr_ratio, drop_path[j], norm_eps) for j in range(depth)
        )

    def visual_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Position embedding for an ``h x w`` map, bilinearly interpolated from the stored grid."""
        pos = self.pos_embed[:, self.pos_extra_slots :]
        if hw == self.pos_grid:
            return pos
        grid = pos.reshape(1, *self.pos_grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=hw, mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def key_mask(
        self, text_mask: torch.Tensor | None, hw: tuple[int, int], batch: int, device: torch.device
    ) -> torch.Tensor | None:
        """``B x 1 x 1 x M`` bool key mask: every (reduced) visual key, the non-[PAD] text keys."""
        if text_mask is None or not self.mask_padding:
            return None
        num_visual = self.blocks[0].attn.num_keys(hw, 0)
        visual = torch.ones(batch, num_visual, dtype=torch.bool, device=device)
        return torch.cat((visual, text_mask.to(torch.bool)), dim=1)[:, None, None, :]

    def embed(
        self, visual: torch.Tensor | None, text: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """The stage's input sequence ``[visual + pos ; text + text_pos]`` and its visual map size."""
        parts, hw = [], (0, 0)
        if visual is not None:
            tokens, hw = self.patch_embed(visual)
            parts.append(tokens + self.visual_pos_embed(hw))
        if text is not None:
            parts.append(self.text_proj(text) + self.text_pos_embed[:, : text.shape[1]])
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)), hw

    def run_blocks(self, x: torch.Tensor, hw: tuple[int, int], key_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, hw, key_mask)
        return x

    def forward(
        self,
        visual: torch.Tensor | None,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``visual``: ``B x C x H x W``, ``text``: ``B x L x C'`` (either may be None); mask ``B x L``."""
        x, hw = self.embed(visual, text)
        key_mask = self.key_mask(text_mask if text is not None else None, hw, x.shape[0], x.device)
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            x = checkpoint(self.run_blocks, x, hw, key_mask, use_reentrant=False)
        else:
            x = self.run_blocks(x, hw, key_mask)
        num_visual = hw[0] * hw[1]
        visual_out = None
        if visual is not None:
            visual_out = x[:, :num_visual].transpose(1, 2).reshape(x.shape[0], -1, *hw)
        text_out = x[:, num_visual:] if text is not None else None
        return visual_out, text_out

    def forward_cls(
        self, visual: torch.Tensor | None, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Only the [CLS] output (``B x D``): the last block computes the [CLS] query alone.

        For heads that read nothing but [CLS] (ITM, recognition); equal to ``forward(...)[1][:, 0]``
        up to floating-point rounding, without the other tokens' queries and MLPs in the last block.
        """
        x, hw = self.embed(visual, text)
        key_mask = self.key_mask(text_mask, hw, x.shape[0], x.device)
        for block in self.blocks[:-1]:
            x = block(x, hw, key_mask)
        return self.blocks[-1](x, hw, key_mask, query_index=hw[0] * hw[1])[:, 0]
