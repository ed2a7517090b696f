from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mvlt.data import ImageLoadError, load_image, prepare_image, to_rgb


def _check(tensor: torch.Tensor, size: int) -> None:
    assert tensor.shape == (3, size, size) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "I", "F", "1", "LA", "RGB"])
def test_every_mode_becomes_rgb_in_unit_range(mode: str) -> None:
    img = Image.new("RGB", (20, 12), (200, 100, 50)).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        img = Image.fromarray(np.full((12, 20), 40000, dtype=np.uint16))
        assert img.mode == "I;16"
    assert img is not None
    assert to_rgb(img).mode == "RGB"
    _check(prepare_image(img, 16), 16)


def test_sixteen_bit_is_rescaled_not_clipped() -> None:
    arr = np.array([[0, 32896, 65535, 65535]] * 4, dtype=np.uint16)
    row = prepare_image(Image.fromarray(arr), 4)[0, 0]  # already square: no resampling
    assert row[0] == 0.0 and abs(float(row[1]) - 0.5) < 0.01 and row[-1] == 1.0


def test_cmyk_and_palette_colours() -> None:
    red = torch.tensor([1.0, 0.0, 0.0])
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    assert torch.allclose(prepare_image(cmyk, 8)[:, 4, 4], red)
    pal = Image.new("RGB", (8, 8), (255, 0, 0)).convert("P")
    assert torch.allclose(prepare_image(pal, 8)[:, 4, 4], red)


def test_transparency_becomes_white() -> None:
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert torch.allclose(prepare_image(img, 8), torch.ones(3, 8, 8))
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([10, 20, 30] * 256)
    pal.info["transparency"] = 0
    assert torch.allclose(prepare_image(pal, 8), torch.ones(3, 8, 8))


def test_pad_keeps_aspect_with_border_colour() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))  # wide, black border ...
    img.paste((255, 0, 0), (1, 1, 39, 19))  # ... red inside
    out = prepare_image(img, 40, resize="pad")
    assert torch.allclose(out[:, 0, 20], torch.zeros(3))  # padding: the border colour (black)
    assert torch.allclose(out[:, 20, 20], torch.tensor([1.0, 0.0, 0.0]))  # content centred, not stretched
    assert torch.allclose(out[:, 5, 20], torch.zeros(3))  # rows 0-9 are padding
    fixed = prepare_image(img, 40, resize="pad", fill=(0, 0, 255))
    assert torch.allclose(fixed[:, 0, 20], torch.tensor([0.0, 0.0, 1.0]))


def test_crop_stretch_removes_white_background() -> None:
    img = Image.new("RGB", (100, 50), (255, 255, 255))
    img.paste((255, 0, 0), (40, 20, 60, 30))
    out = prepare_image(img, 16, resize="crop_stretch")
    assert torch.allclose(out, torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 16, 16))
    blank = prepare_image(Image.new("RGB", (30, 10), (255, 255, 255)), 16, resize="crop_stretch")
    assert torch.allclose(blank, torch.ones(3, 16, 16))


def test_unknown_resize_mode() -> None:
    with pytest.raises(ValueError, match="resize mode"):
        prepare_image(Image.new("RGB", (4, 4)), 4, resize="squash")


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found") as err:
        load_image(tmp_path / "missing.jpg")
    assert err.value.reason == "missing_file" and "missing.jpg" in str(err.value)

    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image") as err:
        load_image(text)
    assert err.value.reason == "bad_image" and "notes.jpg" in str(err.value)

    good = tmp_path / "good.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match="truncated") as err:
        load_image(truncated)
    assert err.value.reason == "bad_image" and "truncated.jpg" in str(err.value)
    assert load_image(good).mode == "RGB"
