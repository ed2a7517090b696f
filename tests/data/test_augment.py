"""Batch augmentation: label-preserving geometry only, a pure function of its seed."""

from __future__ import annotations

import pytest
import torch

from mvlt.data.augment import augment_images, check_augmentations, drop_sentences


def _images(n: int = 16, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_flip_mirrors_about_half_the_images_exactly():
    images = _images(64)
    out = augment_images(images, ["flip"], seed=3)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is either mirrored or untouched
    assert 16 <= sum(flipped) <= 48


def test_the_same_seed_draws_the_same_images_and_another_seed_does_not():
    images = _images()
    a, b = augment_images(images, ["flip", "crop"], 7), augment_images(images, ["flip", "crop"], 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_images(images, ["flip", "crop"], 8))


def test_crop_zooms_in_and_keeps_pixels_in_range():
    # A centred white square on black: a crop inside the image can only make it look larger.
    images = torch.zeros(32, 3, 32, 32)
    images[:, :, 8:24, 8:24] = 1.0
    out = augment_images(images, ["crop"], seed=1)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out.mean(dim=(1, 2, 3)) >= images.mean(dim=(1, 2, 3)) - 0.02).all()
    assert not torch.equal(out, images)
    assert (out[:, :, 16, 16] > 0.99).all()  # the square's centre stays inside every crop


def test_colour_is_never_changed_by_an_augmentation():
    flat = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(8, 3, 32, 32).contiguous()
    out = augment_images(flat, ["flip", "crop"], seed=5)
    assert torch.allclose(out, flat, atol=1e-6)


def test_unknown_or_repeated_names_are_refused():
    with pytest.raises(ValueError, match="'rotate'"):
        check_augmentations(["flip", "rotate"])
    with pytest.raises(ValueError, match="twice"):
        check_augmentations(["flip", "flip"])
    assert augment_images(_images(2), [], seed=0).equal(_images(2))


TEXT = "Oversized shirt. Long sleeves and a chest pocket. Buttons down the front. Colour: Black."


def _drops(text: str, prob: float, seed: int) -> str:
    return drop_sentences(text, prob, torch.Generator().manual_seed(seed))


def test_drop_sentences_keeps_the_first_and_a_subset_of_the_rest_in_order():
    sentences = TEXT.split(". ")
    lengths = []
    for seed in range(200):
        out = _drops(TEXT, 0.5, seed)
        assert out.startswith("Oversized shirt.")
        kept = [s.rstrip(".") for s in out.split(". ")]
        assert kept == [s.rstrip(".") for s in sentences if s.rstrip(".") in kept]  # a subsequence
        lengths.append(len(kept))
    # 3 later sentences, each kept with probability 1/2: 1 + 1.5 on average
    assert 2.2 < sum(lengths) / len(lengths) < 2.8 and min(lengths) == 1 and max(lengths) == 4


def test_drop_sentences_is_a_function_of_its_generator_and_off_at_zero():
    assert _drops(TEXT, 0.5, 3) == _drops(TEXT, 0.5, 3)
    assert len({_drops(TEXT, 0.5, s) for s in range(20)}) > 2
    assert _drops(TEXT, 0.0, 3) == TEXT
    assert _drops("One sentence only. ", 0.9, 3) == "One sentence only. "  # nothing to drop
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        _drops(TEXT, 1.0, 3)
