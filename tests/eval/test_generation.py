"""PSNR (peak 1.0) and SSIM (Wang et al. 2004, Gaussian 11 / 1.5) on known image pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvlt.eval.generation import SSIM_K1, SSIM_K2, gaussian_window, mask_seed, psnr, ssim, ssim_map


def test_psnr_known_values() -> None:
    x = torch.zeros(2, 3, 16, 16)
    assert psnr(x, x + 0.1).tolist() == pytest.approx([20.0, 20.0])  # MSE 0.01
    assert psnr(x, x + 1.0).tolist() == pytest.approx([0.0, 0.0])
    assert psnr(x, x).tolist() == pytest.approx([100.0, 100.0])  # MSE floored at 1e-10
    y = x.clone()
    y[:, :, :, 8:] = 0.1  # right half off by 0.1
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, :, 8:] = True
    assert psnr(x, y).tolist() == pytest.approx([10 * math.log10(1 / 0.005)] * 2)
    assert psnr(x, y, mask).tolist() == pytest.approx([20.0, 20.0])
    assert psnr(x, y, ~mask).tolist() == pytest.approx([100.0, 100.0])


def test_ssim_of_identical_images_is_one() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    a, b = 0.2, 0.6
    x, y = (
        torch.full((1, 3, 20, 20), a, dtype=torch.float64),
        torch.full((1, 3, 20, 20), b, dtype=torch.float64),
    )
    c1 = (SSIM_K1 * 1.0) ** 2
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)


def reference_ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A direct per-window computation (2-D Gaussian weights, valid windows), one channel."""
    g = gaussian_window().numpy()
    w = np.outer(g, g)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    out = np.zeros((x.shape[0] - 10, x.shape[1] - 10))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            out[i, j] = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out


def test_ssim_matches_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 16, 18, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(1, 2, 16, 18, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = ssim_map(x, y)
    assert got.shape == (1, 2, 6, 8)
    for c in range(2):
        np.testing.assert_allclose(
            got[0, c].numpy(), reference_ssim_map(x[0, c].numpy(), y[0, c].numpy()), atol=1e-10
        )
    assert 0 < ssim(x, y).item() < 1
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item())


def test_masked_ssim_averages_windows_centred_on_masked_pixels() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 32, 32, generator=g)
    y = x.clone()
    y[..., 16:] = torch.rand(1, 3, 32, 16, generator=g)  # the right half is wrong
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[..., 16:] = True
    smap = ssim_map(y, x).mean(1)[0]  # windows centred at (5 + i, 5 + j)
    expected = smap[:, 16 - 5 :].mean().item()
    assert ssim(y, x, mask).item() == pytest.approx(expected)
    assert ssim(y, x, mask).item() < ssim(y, x).item() < ssim(y, x, ~mask).item()


def test_ssim_rejects_small_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))


def test_mask_seeds_depend_on_seed_strategy_and_row_only() -> None:
    assert mask_seed(0, "grid", 5) == mask_seed(0, "grid", 5)
    assert (
        len(
            {
                mask_seed(0, "grid", 5),
                mask_seed(1, "grid", 5),
                mask_seed(0, "stroke", 5),
                mask_seed(0, "grid", 6),
            }
        )
        == 4
    )
    assert 0 <= mask_seed(123, "center", 10**6) < 2**63
