"""Image loading and preparation: any PIL-readable file -> RGB -> square float tensor in [0, 1].

Data stops at [0, 1] pixels; the model standardises them itself (``MVLTConfig.pixel_mean`` /
``pixel_std``), so MIR targets and saved pictures stay plain pixels. Two ways to make an image
square:

- ``"pad"`` (default): resize so the longer side is ``size`` (aspect ratio kept) and pad to a
  square with the median colour of the image's border, so the seam does not show on the usual
  white/grey product backgrounds. This is how the H&M stand-in was made.
- ``"crop_stretch"``: the released code's way: crop away the near-white background around the
  product, then stretch the crop to ``size x size`` (aspect ratio not kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("pad", "crop_stretch")
WHITE_THRESHOLD = 245
"""``crop_stretch``: a pixel whose three channels are all >= this is background."""

_RESAMPLE = Image.Resampling.BICUBIC


class ImageLoadError(ValueError):
    """An image file that is missing, truncated or not an image; the message names the file."""

    def __init__(self, path: str | Path, reason: str = "", detail: str | None = None) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(str(path) if detail is None else f"{path}: {detail}")  # message alone: re-raised

    def __reduce__(self) -> tuple[type[ImageLoadError], tuple[str, str, str | None]]:
        prefix = f"{self.path}: "
        message = str(self)
        return (type(self), (self.path, self.reason, message.removeprefix(prefix)))


def load_image(path: str | Path, *, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open, fully decode and convert an image file to RGB.

    Decoding happens here (not lazily later), so a truncated file fails now with its name.
    ``draft`` lets JPEG decode at reduced scale (used to verify files quickly); leave it None.
    Raises :class:`ImageLoadError` with ``reason`` ``"missing_file"`` or ``"bad_image"``.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft("RGB", draft)
            img.load()
            return to_rgb(img)
    except FileNotFoundError as err:
        raise ImageLoadError(path, "missing_file", "image file not found") from err
    except IsADirectoryError as err:
        raise ImageLoadError(path, "missing_file", "image path is a directory, not a file") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(path, "bad_image", "not an image file (PIL cannot identify it)") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageLoadError(path, "bad_image", f"truncated or corrupt image ({err})") from err


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale -> 8-bit L, scaling the value range (PIL would clip)."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float32) / 65535.0
    elif img.mode == "F":
        arr = arr.astype(np.float32)
        scaled = arr if arr.size and float(np.nanmax(arr)) <= 1.0 else arr / 255.0
    else:  # "I": 32-bit ints, usually holding 16-bit data (16-bit PNGs open as "I" in older PIL)
        arr = arr.astype(np.float64)
        scaled = arr / 65535.0 if arr.size and arr.max() > 255 else arr / 255.0
    out = np.clip(np.nan_to_num(scaled) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode -> RGB. Transparency is composited over white (the usual product background),
    16-bit and float grayscale are rescaled, EXIF orientation is applied, animations use frame 0."""
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return _high_bit_depth_to_l(img).convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:  # modes PIL cannot convert directly (e.g. LAB, HSV via RGBA)
        return img.convert("RGBA").convert("RGB")


def border_colour(img: Image.Image) -> tuple[int, int, int]:
    """Median colour of the outermost pixel ring: the padding colour that does not show a seam."""
    arr = np.asarray(img)
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]], axis=0)
    return tuple(int(v) for v in np.median(ring, axis=0))  # type: ignore[return-value]


def pad_to_square(img: Image.Image, size: int, fill: tuple[int, int, int] | None = None) -> Image.Image:
    """Resize so the longer side is ``size`` (aspect kept), then centre on a ``size``-square canvas."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    colour = fill if fill is not None else border_colour(img)
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _RESAMPLE, reducing_gap=3.0 if scale < 0.5 else None)
    if (new_w, new_h) == (size, size):
        return img
    canvas = Image.new("RGB", (size, size), colour)
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def crop_stretch(img: Image.Image, size: int, threshold: int = WHITE_THRESHOLD) -> Image.Image:
    """Crop the near-white background (all channels >= ``threshold``), then stretch to a square.

    The released code's preprocessing. An all-white image is stretched whole.
    """
    arr = np.asarray(img)
    content = (arr < threshold).any(axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size and cols.size:
        img = img.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    if img.size == (size, size):
        return img
    return img.resize((size, size), _RESAMPLE)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor ``3 x H x W`` in [0, 1]."""
    return pixels_to_tensor(np.asarray(img, dtype=np.uint8))


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` pixels -> float32 tensor ``3 x H x W`` in [0, 1]: the last step of
    :func:`prepare_image`, shared with the decoded-image cache so both give the same bits."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


def prepare_pixels(
    img: Image.Image,
    size: int = 256,
    resize: str = "pad",
    fill: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """A PIL image (any mode) -> uint8 array ``size x size x 3``: what :func:`prepare_image`
    makes before its float conversion, so it can be stored (the decoded-image cache) exactly."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; choose one of {RESIZE_MODES}")
    if size <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    img = to_rgb(img)
    img = pad_to_square(img, size, fill) if resize == "pad" else crop_stretch(img, size)
    return np.asarray(img, dtype=np.uint8)


def prepare_image(
    img: Image.Image,
    size: int = 256,
    resize: str = "pad",
    fill: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """A PIL image (any mode) -> float tensor ``3 x size x size`` in [0, 1].

    ``resize``: ``"pad"`` (keep aspect, pad with ``fill`` or the border colour) or
    ``"crop_stretch"`` (crop the white background, stretch; the released code's choice).
    """
    return pixels_to_tensor(prepare_pixels(img, size, resize, fill))
