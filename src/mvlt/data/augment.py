"""Label-preserving augmentation for training: images as a whole batch on its device, texts by
sentence in the dataset.

Images are decoded once into the image cache, so augmentation happens after loading, on the
``B x 3 x H x W`` batch of [0, 1] pixels: no per-item PIL work, and the same code on CPU and
CUDA. Each draw is a pure function of a seed (the trainer passes its per-step seed), so a resumed
run sees exactly the same augmented images.

Only geometry changes: colour is a label (``--labels colour``), so no colour jitter.

- ``flip``: mirror left-right with probability 1/2 (a garment's mirror image is the same garment).
- ``crop``: keep a random square of ``CROP_SCALE`` of the side (anywhere inside the image) and
  resize it back, so the model sees the product a little larger and off-centre.

Texts (:func:`drop_sentences`, ``TrainConfig.sentence_drop``): a catalogue description is a name
followed by sentences of detail; a shopper types a name or a few words. Dropping later sentences
at random shows the text pass short texts of the same product, so it cannot lean on one detail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("flip", "crop")
CROP_SCALE = (0.75, 1.0)
"""Side of the kept square as a fraction of the image's side, drawn uniformly."""
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
"""Where a text is cut into sentences: white space after a full stop, '!' or '?'."""


def check_augmentations(names: Sequence[str]) -> list[str]:
    """``names`` as a list; raises ``ValueError`` naming an unknown or repeated one."""
    names = list(names)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: {', '.join(AUGMENTATIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"an augmentation is named twice: {names}")
    return names


def augment_images(images: torch.Tensor, names: Sequence[str], seed: int) -> torch.Tensor:
    """``images`` (``B x C x H x W``) with the ``names`` augmentations drawn per image from ``seed``.

    One bilinear resampling whatever is asked (a flip alone is exact: an index flip)."""
    names = check_augmentations(names)
    if not names or images.numel() == 0:
        return images
    b = images.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    flips = torch.rand(b, generator=generator) < 0.5 if "flip" in names else torch.zeros(b, dtype=torch.bool)
    if "crop" not in names:
        flipped = flips.to(images.device).view(b, 1, 1, 1)
        return torch.where(flipped, images.flip(-1), images)
    low, high = CROP_SCALE
    scale = low + (high - low) * torch.rand(b, generator=generator)
    # The kept square's centre, in [-1, 1] grid units, so that the square stays inside the image.
    centre = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale).unsqueeze(1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(flips, -scale, scale)
    theta[:, 1, 1] = scale
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta.to(images.device, torch.float32), list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(images.dtype)


def drop_sentences(text: str, prob: float, generator: torch.Generator) -> str:
    """``text`` with each sentence after the first left out with probability ``prob``, drawn from
    ``generator``; the first sentence (a catalogue's product name) is always kept, and a text of
    one sentence comes back unchanged."""
    if not 0.0 <= prob < 1.0:
        raise ValueError(f"sentence drop probability must be in [0, 1), got {prob}")
    sentences = SENTENCE_END.split(text.strip())
    if prob == 0.0 or len(sentences) < 2:
        return text
    keep = torch.rand(len(sentences) - 1, generator=generator) >= prob
    return " ".join([sentences[0], *(s for s, k in zip(sentences[1:], keep.tolist()) if k)])
