"""``MVLTConfig``: every architectural choice of an MVLT model, saved as ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DECODERS = ("unet", "aggregation")
RAW_PIXELS = {"pixel_mean": (0.0, 0.0, 0.0), "pixel_std": (1.0, 1.0, 1.0)}
"""The released code's input: [0, 1] pixels as they are."""
COMPAT_MODES = ("mvlt", "official")
MATCH_HEADS = ("fused", "cls")
PAPER_DESIGN = {"match_head": "cls", "contrastive_dim": 0, "fusion_stage": 1, "mlm_trains_embeddings": True,
                "mir_trains_early_stages": True}  # fmt: skip
"""The paper's design: image and text joined from stage 1, ITM on the [CLS] token alone and no ITC
projections (the authors' checkpoints, ``--recipe paper``, and every checkpoint saved before these
fields existed)."""


@dataclass
class MVLTConfig:
    """Architecture of an MVLT model. Defaults are ``mvlt_tiny``, the paper's Table 1.

    ``compat="official"`` reproduces the parameter layout of the authors' released checkpoints:
    BERT-style text input (512 positions and a token-type embedding), visual position embeddings
    stored on the 224-px grid (stage 4 with an extra slot that is dropped) and the extra output
    bias of the released classification heads. ``create_model(..., compat="official")`` also
    switches to the released aggregation decoder, turns the padding mask off and feeds raw pixels.
    """

    # Image side.
    image_size: int = 256
    """Size the visual position embeddings are learned at; any size divisible by 32 runs."""
    patch_size: int = 4
    """Stage-1 patch (conv kernel = stride); later stages down-sample by 2."""
    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[float, ...] = (8.0, 8.0, 4.0, 4.0)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    pixel_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    """Images arrive as [0, 1] pixels; the encoder standardises them with this mean and std
    (ImageNet's, which PVT weights expect). With raw pixels, a category probe on a fresh model's
    image features stays at chance for ~80 steps; standardised, it learns from the first steps
    (``benchmarks/image_probe.py``). Mean 0 and std 1 reproduce the released code."""
    # Text side.
    vocab_size: int = 30522
    max_text_len: int = 128
    word_embed_dim: int = 768
    """Width of the word embedding, and of the ITM/MLM/recognition head hidden layers (tied MLM)."""
    pad_token_id: int = 0
    # Regularisation.
    text_dropout: float = 0.1
    drop_path_rate: float = 0.1
    norm_eps: float = 1e-6
    """LayerNorm epsilon inside the transformer blocks (the released code's value)."""
    # Behaviour.
    mask_padding: bool = True
    """Apply the text padding mask as a key mask. False reproduces the released code."""
    decoder: str = "unet"
    """MIR decoder: ``unet`` (the paper's 4-level U-Net to full resolution) or ``aggregation``
    (the released 3-level decoder at 1/8 resolution, upsampled x8)."""
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    """U-Net widths at 1/16, 1/8, 1/4, 1/2 and full resolution (``aggregation`` uses the released 64)."""
    match_head: str = "fused"
    """ITM head: ``fused`` (ours) scores a scaled cosine between projections of the fused [CLS]
    and the mean fused visual token, plus a read-out of the [CLS]: an explicit text x image
    product, which learns from scratch where ``cls`` (the paper's [CLS] -> 2-way head) stays at
    ln 2 (docs/DESIGN.md)."""
    fusion_stage: int = 4
    """First stage (1-based) that runs over the joint sequence ``[visual ; text]``; earlier stages
    run each modality alone (with the same weights). 1 is the paper's single stream. The default,
    the last stage, aligns before fusing (ALBEF's unimodal-then-fusion layers, inside one pyramid):
    the joint stage starts from the features ITC aligns, and ITM can reuse the unimodal passes
    up to it, so it costs one stage per pair (docs/DESIGN.md measures both)."""
    contrastive_dim: int = 256
    """Width of the ITC embedding space shared by ``encode_images`` / ``encode_texts`` (ALBEF's
    256). 0: no ITC heads (the paper's model)."""
    pair_head: bool = False
    """A second pair of projections, as wide as ITC, on the same unimodal features: the ``kd_image``
    / ``kd_text`` losses teach it the teacher pair's embeddings (CLIP-KD's feature mimicry) while
    ITC stays purely contrastive, where without it the same losses pull on the ITC embeddings.
    Retrieval then scores both spaces (``pair_weight``); inference needs no teacher."""
    pair_weight: float = 0.5
    """Share of the pair head's cosine in a retrieval score: ``encode_images`` / ``encode_texts``
    return ``[sqrt(1 - w) itc ; sqrt(w) pair]``, unit length, so one dot product is
    ``(1 - w) cos_itc + w cos_pair`` (0: ITC alone, 1: the pair head alone)."""
    mlm_trains_embeddings: bool = False
    """Whether the tied MLM decoder's gradient reaches the word-embedding matrix (the paper: yes).
    Under Adam every vocabulary row then moves at full speed for MLM whatever its loss weight,
    and from scratch that undoes ITC's text side (measured: ITC R@1 8.5 % with it, 22.5 % without,
    docs/RESULTS.md). The logits still use the tied matrix."""
    mir_trains_early_stages: bool = False
    """Whether the MIR decoder's skip connections send gradient into stages 1..n-1 (the paper:
    yes). Their short path gives early stages MIR gradients far larger than ITC's, which Adam
    turns into MIR-driven updates at any loss weight (measured: ITC R@1 8.5-10 % at weights 0.1 and
    0.01). Off, MIR trains the decoder and reaches the encoder through the last stage."""
    num_categories: int = 0
    """Classes of the main-category recognition head (0 = no head)."""
    num_subcategories: int = 0
    """Classes of the sub-category recognition head (0 = no head)."""
    recognition_reads_itc: bool = False
    """Whether each recognition head's output layer also reads the pair's ITC embeddings (the
    image-only and text-only passes', detached), beside its hidden features of the joint [CLS].
    With the heads' fit on the teachers' probabilities it raised S-CR on our validation slice from
    79.0 to 82.3 % (docs/RESULTS.md); recognition then costs the two unimodal passes as well."""
    mimic_dims: tuple[int, int] = (0, 0)
    """Widths of training-time projections of the unimodal features (the image pass's mean visual
    token, the text pass's [CLS]) to the image and the text teacher's own pooled features, which
    ``kd_image_raw`` / ``kd_text_raw`` teach (FitNets' hint regressors; 0: no projection). Inference
    never reads them; ``mvlt.train`` sets them from the teachers asked for."""
    tag_classes: dict[str, int] = field(default_factory=dict)
    """One tag head per catalogue column (``{"colour": 19, "pattern": 12}``): each reads the
    image-only pass's pooled features, so it tags a photo that comes without a description
    (``MVLT.tag_logits``); each has a text twin on the text-only pass, the description's expert
    for image + text (``MVLT.text_tag_logits``). Empty: no tag heads."""
    grad_checkpointing: bool = False
    """Recompute each stage's blocks in the backward pass (less memory, ~30 % more compute)."""
    compat: str = "mvlt"

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "num_heads", "mlp_ratios", "sr_ratios", "decoder_channels",
                     "pixel_mean", "pixel_std", "mimic_dims"):  # fmt: skip
            setattr(self, name, tuple(getattr(self, name)))
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError(f"MVLTConfig: pixel_mean/pixel_std need 3 values, std > 0; got "
                             f"{self.pixel_mean} / {self.pixel_std}")  # fmt: skip
        n = len(self.embed_dims)
        for name in ("depths", "num_heads", "mlp_ratios", "sr_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"MVLTConfig.{name} needs one value per stage ({n}), got {getattr(self, name)}"
                )
        for dim, heads in zip(self.embed_dims, self.num_heads):
            if dim % heads:
                raise ValueError(f"MVLTConfig: stage width {dim} is not divisible by its {heads} heads")
        if self.image_size % self.stride:
            raise ValueError(f"MVLTConfig.image_size={self.image_size} must be divisible by {self.stride}")
        if self.decoder not in DECODERS:
            raise ValueError(f"MVLTConfig.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"MVLTConfig.compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if self.match_head not in MATCH_HEADS:
            raise ValueError(f"MVLTConfig.match_head must be one of {MATCH_HEADS}, got {self.match_head!r}")
        if not 1 <= self.fusion_stage <= n:
            raise ValueError(f"MVLTConfig.fusion_stage must be in 1..{n}, got {self.fusion_stage}")
        if self.contrastive_dim < 0:
            raise ValueError(f"MVLTConfig.contrastive_dim must be >= 0, got {self.contrastive_dim}")
        if self.pair_head and not self.contrastive_dim:
            raise ValueError("MVLTConfig.pair_head needs the ITC heads (contrastive_dim > 0)")
        if self.recognition_reads_itc and not self.contrastive_dim:
            raise ValueError("MVLTConfig.recognition_reads_itc needs the ITC heads (contrastive_dim > 0)")
        if len(self.mimic_dims) != 2 or min(self.mimic_dims) < 0:
            raise ValueError(f"MVLTConfig.mimic_dims needs 2 widths >= 0 (image, text): {self.mimic_dims}")
        if not 0.0 <= self.pair_weight <= 1.0:
            raise ValueError(f"MVLTConfig.pair_weight must be in [0, 1], got {self.pair_weight}")
        self.tag_classes = {str(k): int(v) for k, v in (self.tag_classes or {}).items()}
        for column, classes in self.tag_classes.items():
            if not column or "." in column or classes < 2:
                raise ValueError(f"MVLTConfig.tag_classes: {column!r} needs a name without '.' and at "
                                 f"least 2 classes, got {classes}")  # fmt: skip
        if self.decoder == "unet" and len(self.decoder_channels) != n + 1:
            raise ValueError(f"MVLTConfig.decoder_channels needs {n + 1} widths for the U-Net")

    @property
    def num_stages(self) -> int:
        return len(self.embed_dims)

    @property
    def strides(self) -> tuple[int, ...]:
        """Down-sampling factor R_k of each stage (4, 8, 16, 32 by default)."""
        return tuple(self.patch_size * 2**k for k in range(self.num_stages))

    @property
    def stride(self) -> int:
        """Image sizes must be divisible by this: the last stage's stride times its SR ratio."""
        return max(r * s for r, s in zip(self.strides, self.sr_ratios))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MVLTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MVLTConfig fields {unknown}; known fields: {sorted(known)}")
        # Configs saved before these fields existed: raw pixels, the paper's heads.
        return cls(**{**RAW_PIXELS, **PAPER_DESIGN, **values})

    def replace(self, **changes: Any) -> MVLTConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the pre-training (and recognition) objectives; 0 switches an objective off.

    Defaults are the paper's eq. (8): ``10 * MIR + 1 * ITM + 1 * MLM``, no ITC; the recognition
    losses (used when fine-tuning, and only when labels are given) weigh 1 each as in the released
    code. The ``kd_*`` terms learn from a frozen teacher pair's embeddings handed in with the batch
    (``mvlt.train.teachers`` makes them); the model itself knows no teacher. The project's default
    pre-training recipe is in ``mvlt.train.config.RECIPES``.
    """

    itc: float = 0.0
    mir: float = 10.0
    itm: float = 1.0
    mlm: float = 1.0
    category: float = 1.0
    subcategory: float = 1.0
    tags: float = 0.0
    """The tag heads' cross-entropies (one per column, each over its labelled rows), summed."""
    tags_text: float = 0.0
    """The same for the text tag heads, on the text-only pass (the description's expert)."""
    kd_image: float = 0.0
    """Feature distillation: the image pass's ITC embedding mimics a teacher's (``target_image_emb``)."""
    kd_text: float = 0.0
    """The same for the text pass (``target_text_emb``)."""
    kd_image_raw: float = 0.0
    """Feature distillation into the encoder: the image pass's mean visual token, through a
    training-only projection (``MVLTConfig.mimic_dims``), mimics the image teacher's own pooled
    feature, standardised (``target_image_raw``; mean ``1 - cos``)."""
    kd_text_raw: float = 0.0
    """The same for the text pass's [CLS] and the text teacher (``target_text_raw``)."""
    kd_cross: float = 0.0
    """Soft ITC targets: the teacher pair's image-text similarities, as distributions over the batch."""
    kd_tags: float = 0.0
    """The image tag heads learn a teacher's class probabilities per column (``target_tags``): KL
    divergence, summed over columns, on every row (labelled or not)."""

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


OBJECTIVES = tuple(f.name for f in dataclasses.fields(LossWeights))
