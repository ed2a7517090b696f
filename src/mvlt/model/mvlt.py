"""MVLT: a 4-stage pyramid transformer over [image patches ; text tokens] with MIR, ITM and MLM heads.

Every stage of the computation is a named method that can be called (and tested) alone:
``forward_encoder`` -> ``forward_decoder`` / ``itm_logits`` / ``mlm_logits`` / ``classify`` ->
``forward_loss``. ``forward`` is ``forward_loss`` so the model can be wrapped by DDP as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossWeights, MVLTConfig
from .decoders import build_decoder
from .encoder import EncoderOutput, Stage, TextEmbedding
from .heads import ClsTokenHead, MLMHead

IGNORE_INDEX = -100
OFFICIAL_POS_IMAGE_SIZE = 224
OFFICIAL_TEXT_POSITIONS = 512


class Recognition(NamedTuple):
    """Logits of the two recognition heads (``None`` where the model has no such head)."""

    category: torch.Tensor | None
    subcategory: torch.Tensor | None


class MVLT(nn.Module):
    def __init__(self, config: MVLTConfig) -> None:
        super().__init__()
        self.config = config
        official = config.compat == "official"
        # Not in the state dict: they come from the config, so released weights load unchanged.
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.text_embed = TextEmbedding(
            config.vocab_size,
            config.word_embed_dim,
            OFFICIAL_TEXT_POSITIONS if official else config.max_text_len,
            token_type=official,
            pad_token_id=config.pad_token_id,
            dropout=config.text_dropout,
        )
        pos_size = OFFICIAL_POS_IMAGE_SIZE if official else config.image_size
        drop_path = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        stages, cursor = [], 0
        for k in range(config.num_stages):
            grid = pos_size // config.strides[k]
            stages.append(
                Stage(
                    in_chans=3 if k == 0 else config.embed_dims[k - 1],
                    text_in_dim=config.word_embed_dim if k == 0 else config.embed_dims[k - 1],
                    dim=config.embed_dims[k],
                    depth=config.depths[k],
                    num_heads=config.num_heads[k],
                    mlp_ratio=config.mlp_ratios[k],
                    sr_ratio=config.sr_ratios[k],
                    patch=config.patch_size if k == 0 else 2,
                    pos_grid=(grid, grid),
                    pos_extra_slots=1 if official and k == config.num_stages - 1 else 0,
                    max_text_len=config.max_text_len,
                    drop_path=drop_path[cursor : cursor + config.depths[k]],
                    norm_eps=config.norm_eps,
                    mask_padding=config.mask_padding,
                )
            )
            cursor += config.depths[k]
        self.stages = nn.ModuleList(stages)
        width, hidden = config.embed_dims[-1], config.word_embed_dim
        self.itm_head = ClsTokenHead(width, hidden, 2, extra_bias=official)
        self.mlm_head = MLMHead(width, hidden, config.vocab_size)
        self.category_head = (
            ClsTokenHead(width, hidden, config.num_categories, official) if config.num_categories else None
        )
        self.subcategory_head = (
            ClsTokenHead(width, hidden, config.num_subcategories, official)
            if config.num_subcategories
            else None
        )
        self.decoder = build_decoder(config)
        # Set by the data layer / training and saved with the checkpoint (see save_pretrained).
        self.tokenizer: Any = None
        self.label_maps: Any = None
        self.init_weights()
        self.set_grad_checkpointing(config.grad_checkpointing)

    # ----------------------------------------------------------------------------------- setup
    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linears, embeddings and position embeddings; unit LayerNorms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.padding_idx is not None:
                    nn.init.zeros_(m.weight[m.padding_idx])
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)
            nn.init.trunc_normal_(stage.text_pos_embed, std=0.02)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enabled

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay: biases, norms, embeddings of positions."""
        positional = ("pos_embed", "position_embeddings", "token_type_embeddings")
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or any(k in n for k in positional)}

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; the tied word-embedding / MLM-decoder matrix is counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --------------------------------------------------------------------------------- encoder
    def forward_encoder(
        self,
        images: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Run the 4 stages over ``[image ; text]``; either modality may be ``None``.

        ``images``: ``B x 3 x H x W`` in [0, 1] (H, W divisible by 32); ``input_ids``: ``B x L``
        (L <= max_text_len); ``attention_mask``: ``B x L``, 1 for real tokens, 0 for [PAD].
        """
        if images is None and input_ids is None:
            raise ValueError("forward_encoder needs images, input_ids or both")
        if images is not None:
            images = self._standardise(images)
        text = self.text_embed(input_ids) if input_ids is not None else None
        if text is None:
            attention_mask = None
        visual = images
        visual_feats: list[torch.Tensor] = []
        text_feats: list[torch.Tensor] = []
        for stage in self.stages:
            visual, text = stage(visual, text, attention_mask)
            if visual is not None:
                visual_feats.append(visual)
            if text is not None:
                text_feats.append(text)
        return EncoderOutput(
            text=text_feats if input_ids is not None else None,
            visual=visual_feats if images is not None else None,
            attention_mask=attention_mask,
        )

    def forward_cls(
        self, images: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The last stage's [CLS] feature (``B x D_4``) and nothing else: what the ITM and
        recognition heads read. The last block computes the [CLS] query alone, which saves about
        a tenth of the encoder's work; ``forward_encoder(...).cls`` gives the same values."""
        if images is not None:
            images = self._standardise(images)
        visual, text = images, self.text_embed(input_ids)
        for stage in self.stages[:-1]:
            visual, text = stage(visual, text, attention_mask)
        return self.stages[-1].forward_cls(visual, text, attention_mask)

    def _standardise(self, images: torch.Tensor) -> torch.Tensor:
        """Check ``B x 3 x H x W`` [0, 1] pixels and apply the config's mean and std."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.config.stride or w % self.config.stride:
            raise ValueError(f"image size {h}x{w} is not divisible by {self.config.stride}")
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    # ----------------------------------------------------------------------------------- heads
    def forward_decoder(self, visual: list[torch.Tensor]) -> torch.Tensor:
        """MIR: the visual pyramid V^1..V^4 -> ``B x 3 x H x W`` reconstruction."""
        return self.decoder(visual)

    def itm_logits(self, features: EncoderOutput) -> torch.Tensor:
        """``B x 2`` image-text matching logits (index 1 = the text describes the image)."""
        return self.itm_head(features.cls)

    def mlm_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for the given last-stage text tokens (``N x D_4`` -> ``N x V``)."""
        return self.mlm_head(tokens, self.text_embed.word_embeddings.weight)

    def recognition_logits(self, cls: torch.Tensor) -> Recognition:
        """Both recognition heads on the [CLS] feature (``EncoderOutput.cls`` or ``forward_cls``)."""
        return Recognition(
            self.category_head(cls) if self.category_head is not None else None,
            self.subcategory_head(cls) if self.subcategory_head is not None else None,
        )

    # ---------------------------------------------------------------------------- inference API
    def match_score(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``B`` ITM log-odds ``logit[match] - logit[no match]``: the ITM path only, head in fp32.

        Ranks exactly like ``match_probability`` (its sigmoid) without the ties that probabilities
        create: they round to 1.0 once the margin passes ~17 in fp32, and a bf16 head collapses
        them to a handful of values. Retrieval ranks with this.
        """
        cls = self.forward_cls(images, input_ids, attention_mask)
        with torch.autocast(device_type=cls.device.type, enabled=False):
            logits = self.itm_head(cls.float())
        return logits[:, 1] - logits[:, 0]

    def match_probability(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``B`` probabilities that each text describes its image (softmax of the ITM logits)."""
        return torch.sigmoid(self.match_score(images, input_ids, attention_mask))

    def classify(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> Recognition:
        """Main- and sub-category logits (``B x C`` each) from the fine-tuned recognition heads."""
        if self.category_head is None and self.subcategory_head is None:
            raise ValueError("this model has no recognition heads (num_categories = num_subcategories = 0)")
        return self.recognition_logits(self.forward_cls(images, input_ids, attention_mask))

    def reconstruct(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked image generation: reconstruct (masked) ``images``, optionally guided by text."""
        return self.forward_decoder(self.forward_encoder(images, input_ids, attention_mask).visual)

    # ----------------------------------------------------------------------------------- losses
    def forward_loss(
        self,
        batch: Mapping[str, Any],
        weights: LossWeights | None = None,
        use_masked_images: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Named losses of one batch and their weighted ``total`` (eq. 8).

        ``batch`` keys: ``images`` (clean, the MIR target), ``masked_images`` (encoder input when
        ``use_masked_images``), ``input_ids``, ``attention_mask``, ``mlm_labels`` (-100 where no
        MLM label), ``itm_labels`` (1 = matching text), and optionally ``category_labels`` /
        ``subcategory_labels`` (-100 = unknown). An objective whose weight is 0 is not computed;
        the recognition losses need their labels and heads. Entries are unweighted losses.
        """
        w = weights or LossWeights()
        images = batch["images"]
        inputs = batch["masked_images"] if use_masked_images and "masked_images" in batch else images
        features = self.forward_encoder(inputs, batch["input_ids"], batch.get("attention_mask"))
        losses: dict[str, torch.Tensor] = {}
        if w.mir:
            recon = self.forward_decoder(features.visual)
            losses["mir"] = F.smooth_l1_loss(recon.float(), images.float(), beta=1.0)
        if w.itm:
            losses["itm"] = F.cross_entropy(self.itm_logits(features).float(), batch["itm_labels"])
        if w.mlm:
            labels = batch["mlm_labels"]
            selected = labels != IGNORE_INDEX
            logits = self.mlm_logits(features.text[-1][selected])
            losses["mlm"] = _mean_cross_entropy(logits, labels[selected])
        recognition = None
        for name, head in (("category", self.category_head), ("subcategory", self.subcategory_head)):
            key = f"{name}_labels"
            if getattr(w, name) and head is not None and key in batch:
                if recognition is None:
                    recognition = self.recognition_logits(features.cls)
                losses[name] = _mean_cross_entropy(getattr(recognition, name), batch[key])
        if not losses:
            raise ValueError("forward_loss: every objective is switched off or has no labels in the batch")
        losses["total"] = sum(getattr(w, name) * value for name, value in losses.items())
        return losses

    def forward(self, batch: Mapping[str, Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        return self.forward_loss(batch, **kwargs)

    # ------------------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ tokenizer and label maps when set)."""
        from .io import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> MVLT:
        """Load a directory written by ``save_pretrained``. Never unpickles anything."""
        from .io import load_pretrained

        return load_pretrained(directory, map_location=map_location)


def _mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled rows; an all-ignored batch gives a zero that keeps the graph."""
    valid = labels != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
