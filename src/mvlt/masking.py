"""Masking for the pre-training objectives: image masks for MIR and token selection for MLM.

Everything here is a pure function of its arguments and an explicit ``torch.Generator``, so a
data loader that seeds one generator per sample gets the same masks whatever the number of
workers, and a resumed run re-draws exactly the masks it would have drawn.

Image masks are boolean ``H x W`` maps (True = masked). The unit-based strategies
(``random_grid``, ``grid``, ``center``) mask exactly ``round(ratio * Q)`` of the ``Q`` square units
of ``unit`` pixels (``unit = alpha * P``, 16 px by default); ``stroke`` paints free-form brush
strokes and stops within ``STROKE_TOLERANCE`` of the requested pixel fraction. This fixes the
released generator, whose slicing bug made the real ratio vary between 0.22 and 0.79.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

MASK_FILL = 1e-6
"""The paper's "[ZERO]": masked pixels are set to this value before patch embedding."""

IMAGE_MASK_STRATEGIES = ("random_grid", "grid", "stroke", "center")
STROKE_TOLERANCE = 0.01
"""Largest difference between the requested and the painted pixel fraction of a ``stroke`` mask."""

IGNORE_INDEX = -100
"""Label value of tokens that carry no MLM loss (PyTorch's cross-entropy default)."""


def num_masked_units(ratio: float, num_units: int) -> int:
    """How many of ``num_units`` units a mask of ``ratio`` covers: ``round(ratio * Q)``."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    return round(ratio * num_units)


def image_mask(
    height: int,
    width: int,
    *,
    strategy: str = "random_grid",
    ratio: float = 0.5,
    unit: int = 16,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one image mask (``height x width`` bool, True = masked) with the given strategy."""
    if strategy == "stroke":
        return _stroke_mask(height, width, ratio, generator)
    if strategy not in IMAGE_MASK_STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose one of {IMAGE_MASK_STRATEGIES}")
    if unit <= 0 or height % unit or width % unit:
        raise ValueError(f"image size {height}x{width} is not divisible by the mask unit {unit} px")
    units = unit_mask(height // unit, width // unit, strategy=strategy, ratio=ratio, generator=generator)
    return units.repeat_interleave(unit, 0).repeat_interleave(unit, 1)


def unit_mask(
    grid_h: int,
    grid_w: int,
    *,
    strategy: str = "random_grid",
    ratio: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A ``grid_h x grid_w`` bool map with exactly ``round(ratio * grid_h * grid_w)`` units set."""
    q = grid_h * grid_w
    k = num_masked_units(ratio, q)
    if strategy == "random_grid":
        order = torch.randperm(q, generator=generator)
    elif strategy == "grid":
        order = _dither_order(grid_h, grid_w, generator)
    elif strategy == "center":
        order = _center_order(grid_h, grid_w)
    else:
        raise ValueError(f"strategy {strategy!r} is not unit-based; choose random_grid, grid or center")
    flat = torch.zeros(q, dtype=torch.bool)
    flat[order[:k]] = True
    return flat.view(grid_h, grid_w)


def _bayer(n: int) -> np.ndarray:
    """Ordered-dithering index matrix of size ``n`` (a power of two): a regular, spread-out order."""
    m = np.zeros((1, 1), dtype=np.int64)
    while m.shape[0] < n:
        m = np.block([[4 * m, 4 * m + 2], [4 * m + 3, 4 * m + 1]])
    return m


def _dither_order(grid_h: int, grid_w: int, generator: torch.Generator | None) -> torch.Tensor:
    """Units in ordered-dithering order, so any prefix is a regular pattern (a checkerboard at 0.5).

    The pattern is shifted by a random offset so different samples do not mask the same units.
    """
    n = 1 << max(grid_h - 1, grid_w - 1, 1).bit_length()
    bayer = _bayer(n)
    dy, dx = (int(v) for v in torch.randint(0, n, (2,), generator=generator))
    bayer = np.roll(bayer, (dy, dx), axis=(0, 1))[:grid_h, :grid_w]
    return torch.from_numpy(np.argsort(bayer.reshape(-1), kind="stable"))


def _center_order(grid_h: int, grid_w: int) -> torch.Tensor:
    """Units ordered by distance from the image centre, so any prefix is one central block."""
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    dy, dx = np.abs(ys - (grid_h - 1) / 2), np.abs(xs - (grid_w - 1) / 2)
    chebyshev, euclid = np.maximum(dy, dx).reshape(-1), np.hypot(dy, dx).reshape(-1)
    return torch.from_numpy(np.lexsort((np.arange(grid_h * grid_w), euclid, chebyshev)))


def _stroke_mask(height: int, width: int, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    """Free-form brush strokes (the inpainting-style mask of the paper's ablation).

    Strokes are cut into short steps and painted in time order; each pixel remembers the first
    step that covered it. The mask is every pixel painted before the step at which the coverage
    reaches the target, so the painted fraction is within one step's area of ``ratio``.
    """
    target = num_masked_units(ratio, height * width)
    if target == 0:
        return torch.zeros(height, width, dtype=torch.bool)
    size = min(height, width)
    segments: list[tuple[float, float, float, float, int]] = []
    first_step = np.full(height * width, np.iinfo(np.int32).max, dtype=np.int64)
    while True:
        segments.extend(_random_stroke(height, width, size, generator))
        first_step = _paint(segments, height, width)
        counts = np.bincount(first_step[first_step < len(segments)], minlength=len(segments))
        if counts.sum() >= target:
            break
    coverage = np.cumsum(counts)
    step = int(np.searchsorted(coverage, target))  # first step at which coverage >= target
    below = coverage[step - 1] if step > 0 else 0
    last = step if coverage[step] - target <= target - below else step - 1
    mask = first_step <= last
    return torch.from_numpy(mask.reshape(height, width))


def _random_stroke(
    height: int, width: int, size: int, generator: torch.Generator | None
) -> list[tuple[float, float, float, float, int]]:
    """One random polyline stroke, cut into steps of about 2 px: ``(x0, y0, x1, y1, brush_width)``."""

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    brush = max(2, int(uniform(size / 24, size / 9)))
    x, y = uniform(0, width - 1), uniform(0, height - 1)
    steps: list[tuple[float, float, float, float, int]] = []
    for _ in range(int(uniform(3, 9))):
        angle = uniform(0, 2 * math.pi)
        length = uniform(size / 10, size / 3)
        nx = min(max(x + length * math.cos(angle), 0.0), width - 1.0)
        ny = min(max(y + length * math.sin(angle), 0.0), height - 1.0)
        n = max(1, int(math.hypot(nx - x, ny - y) / 2))
        for i in range(n):
            steps.append(
                (x + (nx - x) * i / n, y + (ny - y) * i / n, x + (nx - x) * (i + 1) / n,
                 y + (ny - y) * (i + 1) / n, brush)
            )  # fmt: skip
        x, y = nx, ny
    return steps


def _paint(segments: Sequence[tuple[float, float, float, float, int]], height: int, width: int) -> np.ndarray:
    """Paint steps latest-first, so each pixel ends up holding the earliest step that covers it."""
    canvas = Image.new("I", (width, height), color=np.iinfo(np.int32).max)
    draw = ImageDraw.Draw(canvas)
    for t in range(len(segments) - 1, -1, -1):
        x0, y0, x1, y1, brush = segments[t]
        r = brush / 2
        draw.line((x0, y0, x1, y1), fill=t, width=brush)
        draw.ellipse((x1 - r, y1 - r, x1 + r, y1 + r), fill=t)
    return np.asarray(canvas, dtype=np.int64).reshape(-1)


def apply_image_mask(images: torch.Tensor, mask: torch.Tensor, fill: float = MASK_FILL) -> torch.Tensor:
    """Set masked pixels to ``fill``. ``images``: ``[B,] 3 x H x W``; ``mask``: ``[B,] [1,] H x W``."""
    if mask.dim() == images.dim() - 1:
        mask = mask.unsqueeze(-3)
    return images.masked_fill(mask.to(torch.bool), fill)


def mlm_mask(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    special_ids: Sequence[int],
    vocab_size: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style MLM corruption of one token sequence.

    Selects ``max(1, round(prob * n))`` of the ``n`` non-special tokens (never [CLS], [SEP], [PAD]
    or any other id in ``special_ids``); of those, 80 % become [MASK], 10 % a random non-special
    token and 10 % stay. Returns ``(corrupted_ids, labels)`` where ``labels`` holds the original id
    at selected positions and ``IGNORE_INDEX`` elsewhere.
    """
    if input_ids.dim() != 1:
        raise ValueError(f"mlm_mask takes one sequence (1-D), got shape {tuple(input_ids.shape)}")
    specials = torch.tensor(sorted(set(special_ids)), dtype=input_ids.dtype)
    eligible = torch.nonzero(~torch.isin(input_ids, specials)).squeeze(1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    if eligible.numel() == 0 or prob <= 0:
        return input_ids.clone(), labels
    k = max(1, round(prob * eligible.numel()))
    chosen = eligible[torch.randperm(eligible.numel(), generator=generator)[:k]]
    labels[chosen] = input_ids[chosen]
    corrupted = input_ids.clone()
    action = torch.rand(k, generator=generator)
    corrupted[chosen[action < 0.8]] = mask_token_id
    swap = chosen[(action >= 0.8) & (action < 0.9)]
    if swap.numel():
        # Uniform over non-special ids: draw in [0, V - |S|) and step over each special id in order.
        draw = torch.randint(0, vocab_size - specials.numel(), (swap.numel(),), generator=generator)
        for s in specials.tolist():
            draw += (draw >= s).to(draw.dtype)
        corrupted[swap] = draw.to(corrupted.dtype)
    return corrupted, labels
