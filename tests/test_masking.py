"""Image masks hit their ratio exactly; MLM selection is 15 % with 80/10/10 and never special."""

from __future__ import annotations

import pytest
import torch

from mvlt.masking import (
    IGNORE_INDEX,
    IMAGE_MASK_STRATEGIES,
    MASK_FILL,
    STROKE_TOLERANCE,
    apply_image_mask,
    image_mask,
    mlm_mask,
    unit_mask,
)

SPECIALS = [0, 100, 101, 102, 103]


def corrupt(ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return mlm_mask(ids, mask_token_id=103, special_ids=SPECIALS, vocab_size=30522, generator=generator)


@pytest.mark.parametrize("strategy", ["random_grid", "grid", "center"])
@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_unit_strategies_mask_exactly_round_r_q_units(strategy: str, size: int, ratio: float) -> None:
    g = torch.Generator().manual_seed(1)
    mask = image_mask(size, size, strategy=strategy, ratio=ratio, unit=16, generator=g)
    q = (size // 16) ** 2
    units = mask.view(size // 16, 16, size // 16, 16)
    assert torch.all(units == units[:, :1, :, :1]), "masks must be made of whole 16-px units"
    assert int(units[:, 0, :, 0].sum()) == round(ratio * q)


@pytest.mark.parametrize("unit", [4, 8, 32, 64])
def test_mask_unit_size_alpha(unit: int) -> None:
    mask = image_mask(256, 256, ratio=0.5, unit=unit, generator=torch.Generator().manual_seed(0))
    assert mask.float().mean().item() == pytest.approx(round(0.5 * (256 // unit) ** 2) / (256 // unit) ** 2)


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_stroke_within_stated_tolerance(size: int, ratio: float) -> None:
    for seed in range(3):
        mask = image_mask(
            size, size, strategy="stroke", ratio=ratio, generator=torch.Generator().manual_seed(seed)
        )
        assert abs(mask.float().mean().item() - ratio) <= STROKE_TOLERANCE


@pytest.mark.parametrize("strategy", IMAGE_MASK_STRATEGIES)
def test_same_seed_same_mask(strategy: str) -> None:
    def draw(seed: int) -> torch.Tensor:
        return image_mask(128, 128, strategy=strategy, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    distinct = {tuple(draw(seed).flatten().tolist()) for seed in range(6)}
    if strategy == "center":  # deterministic by design
        assert len(distinct) == 1
    else:
        assert len(distinct) > 1


def test_grid_is_a_checkerboard_at_half() -> None:
    units = unit_mask(8, 8, strategy="grid", ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.all(units[:, 1:] != units[:, :-1]) and torch.all(units[1:] != units[:-1])


def test_center_is_one_central_block() -> None:
    units = unit_mask(16, 16, strategy="center", ratio=0.25)
    rows, cols = torch.nonzero(units, as_tuple=True)
    assert units.sum() == 64 and rows.min() >= 3 and rows.max() <= 12 and cols.min() >= 3 and cols.max() <= 12
    assert units[7:9, 7:9].all()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="not divisible by the mask unit"):
        image_mask(100, 100, unit=16)
    with pytest.raises(ValueError, match="unknown mask strategy"):
        image_mask(64, 64, strategy="blob")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_mask(64, 64, ratio=1.5)


def test_apply_image_mask_fills_with_zero_token() -> None:
    images = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    mask[:, :, :16] = True
    out = apply_image_mask(images, mask)
    assert torch.all(out[:, :, :16] == MASK_FILL) and torch.equal(out[:, :, 16:], images[:, :, 16:])


def test_mlm_selects_15_percent_never_special() -> None:
    ids = torch.tensor([101, *range(2000, 2040), 102, 0, 0])
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        corrupted, labels = mlm_mask(
            ids, mask_token_id=103, special_ids=SPECIALS, vocab_size=30522, generator=g
        )
        selected = labels != IGNORE_INDEX
        assert int(selected.sum()) == round(0.15 * 40)
        assert not torch.isin(ids[selected], torch.tensor(SPECIALS)).any()
        assert torch.equal(corrupted[~selected], ids[~selected])
        assert torch.equal(labels[selected], ids[selected])


def test_mlm_80_10_10() -> None:
    ids = torch.tensor([101, *range(2000, 3000), 102])
    g = torch.Generator().manual_seed(0)
    counts = {"mask": 0, "random": 0, "keep": 0}
    for _ in range(40):
        corrupted, labels = mlm_mask(
            ids, mask_token_id=103, special_ids=SPECIALS, vocab_size=30522, generator=g
        )
        sel = labels != IGNORE_INDEX
        counts["mask"] += int((corrupted[sel] == 103).sum())
        counts["keep"] += int((corrupted[sel] == ids[sel]).sum())
        counts["random"] += int(((corrupted[sel] != 103) & (corrupted[sel] != ids[sel])).sum())
        assert not torch.isin(corrupted[sel & (corrupted != 103)], torch.tensor(SPECIALS)).any()
    total = sum(counts.values())
    assert counts["mask"] / total == pytest.approx(0.8, abs=0.02)
    assert counts["random"] / total == pytest.approx(0.1, abs=0.02)
    assert counts["keep"] / total == pytest.approx(0.1, abs=0.02)


def test_mlm_short_text_still_gets_one_label() -> None:
    ids = torch.tensor([101, 2000, 2001, 102])
    _, labels = mlm_mask(ids, mask_token_id=103, special_ids=SPECIALS, vocab_size=30522)
    assert int((labels != IGNORE_INDEX).sum()) == 1
