"""Masked image generation (MIG): mask, reconstruct, and measure PSNR and SSIM.

Definitions (images in [0, 1]; reconstructions are clamped to [0, 1] before measuring, as they are
for display; the whole reconstruction is compared, nothing is pasted back from the original):

- **PSNR** = 10 log10(1 / MSE), peak 1.0, MSE over all pixels and channels of one image (the
  released code used peak 255 on [0, 1] data, 48 dB too high). MSE is floored at 1e-10 (100 dB).
  *Masked PSNR*: the MSE over the masked pixels only.
- **SSIM** (Wang et al. 2004): Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 1,
  computed per RGB channel over the 'valid' window positions (no padding), the SSIM map averaged
  over positions and channels. *Masked SSIM*: the mean of the SSIM map over the windows whose
  centre pixel is masked (windows near the mask border also see unmasked pixels).
- Every figure is the mean over images of the per-image value. Masks are seeded per (seed,
  strategy, catalogue row), so a run re-draws the same masks whatever the batch size.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..masking import IMAGE_MASK_STRATEGIES, apply_image_mask, image_mask
from . import names
from .context import EvalContext

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MSE_FLOOR = 1e-10


def psnr(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, peak: float = 1.0
) -> torch.Tensor:
    """Per-image PSNR (dB) of ``B x C x H x W`` images; ``mask`` (``B x H x W``, True = counted)
    restricts the MSE to those pixels (NaN for an image whose mask is empty)."""
    err = (x.double() - y.double()) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        weight = mask.to(err.dtype).unsqueeze(1).expand_as(err)
        count = weight.flatten(1).sum(1)
        mse = (err * weight).flatten(1).sum(1) / count
    return 10.0 * torch.log10(peak**2 / mse.clamp_min(MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian; the 2-D window is its outer product (applied separably)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The SSIM map ``B x C x (H - 10) x (W - 10)``: one value per valid 11 x 11 window."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two B x C x H x W tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels")
    x, y = x.double(), y.double()
    channels = x.shape[1]
    g = gaussian_window().to(x.device)
    gh = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    gv = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=channels), gv, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM; with ``mask`` (``B x H x W``) the mean over windows centred on masked pixels."""
    smap = ssim_map(x, y).mean(1)  # over channels: B x H' x W'
    if mask is None:
        return smap.flatten(1).mean(1)
    r = SSIM_WINDOW // 2
    centres = mask[:, r : mask.shape[-2] - r, r : mask.shape[-1] - r].to(smap.dtype)
    return (smap * centres).flatten(1).sum(1) / centres.flatten(1).sum(1)


def mask_seed(seed: int, strategy: str, row: int) -> int:
    """A mask's seed from (seed, strategy name, catalogue row): independent of batching and order."""
    state = np.random.SeedSequence([seed, zlib.crc32(strategy.encode()), row]).generate_state(2)
    return (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)


@dataclass
class GenerationOutcome:
    """Per strategy: the per-image measures, and a few (original, masked, reconstruction) examples."""

    strategies: list[str]
    rows: list[int]
    values: dict[str, dict[str, list[float]]]
    examples: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    masked_fraction: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def run_generation(
    ctx: EvalContext,
    rows: Sequence[int],
    *,
    strategies: Sequence[str] = IMAGE_MASK_STRATEGIES,
    ratio: float = 0.5,
    unit: int = 16,
    seed: int = 0,
    examples: int = 4,
    use_text: bool = True,
) -> GenerationOutcome:
    """Mask ``rows``' images with each strategy, reconstruct (guided by the text), measure."""
    for s in strategies:
        if s not in IMAGE_MASK_STRATEGIES:
            raise ValueError(f"unknown mask strategy {s!r}; choose from {IMAGE_MASK_STRATEGIES}")
    rows = [int(r) for r in rows]
    size = ctx.image_size
    values: dict[str, dict[str, list[float]]] = {
        s: {k: [] for k in ("psnr", "ssim", "psnr_m", "ssim_m")} for s in strategies
    }
    kept: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {s: [] for s in strategies}
    fraction: dict[str, list[float]] = {s: [] for s in strategies}
    ctx.tokenize_rows(rows)
    steps = [(s, sl) for sl in ctx.batches(len(rows)) for s in strategies]
    images, ids, attn, current = None, None, None, None
    for strategy, sl in tqdm(steps, desc="masked image generation", disable=not ctx.progress, leave=False):
        batch_rows = rows[sl]
        if current != sl.start:
            images, ids, attn = ctx.batch(batch_rows, batch_rows)
            current = sl.start
        masks = torch.stack(
            [
                image_mask(size, size, strategy=strategy, ratio=ratio, unit=unit,
                           generator=torch.Generator().manual_seed(mask_seed(seed, strategy, r)))
                for r in batch_rows
            ]
        ).to(images.device)  # fmt: skip
        masked = apply_image_mask(images, masks)
        with ctx.autocast():
            recon = ctx.model.reconstruct(masked, ids if use_text else None, attn if use_text else None)
        recon = recon.float().clamp(0.0, 1.0)
        v = values[strategy]
        v["psnr"] += psnr(recon, images).tolist()
        v["ssim"] += ssim(recon, images).tolist()
        v["psnr_m"] += psnr(recon, images, masks).tolist()
        v["ssim_m"] += ssim(recon, images, masks).tolist()
        fraction[strategy] += masks.flatten(1).float().mean(1).tolist()
        for i in range(min(examples - len(kept[strategy]), len(batch_rows))):
            kept[strategy].append((images[i].cpu(), masked[i].cpu(), recon[i].cpu()))
    metrics: dict[str, float] = {names.MIG_IMAGES: len(rows)}
    for s in strategies:
        v = values[s]
        metrics[names.generation("psnr", s)] = float(np.nanmean(v["psnr"]))
        metrics[names.generation("ssim", s)] = float(np.nanmean(v["ssim"]))
        metrics[names.generation("psnr", s, masked=True)] = float(np.nanmean(v["psnr_m"]))
        metrics[names.generation("ssim", s, masked=True)] = float(np.nanmean(v["ssim_m"]))
    masked_fraction = {s: float(np.mean(fraction[s])) for s in strategies}
    return GenerationOutcome(list(strategies), rows, values, kept, masked_fraction, metrics)
