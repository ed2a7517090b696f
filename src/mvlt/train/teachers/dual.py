"""The teacher pair: both frozen teachers with two linear projections into one embedding space.

This is what a practitioner would build first (and the baseline every MVLT result is compared
with): teacher features, standardised, each projected to ``dim`` and normalised, the projections
and a temperature trained with the symmetric InfoNCE loss on a catalogue's training split (CLIP's
objective on frozen towers, i.e. LiT with both towers locked). The number of epochs is chosen on
a held-out tenth of the training split, then the projections are fitted again on all of it.

Its embeddings of the training rows are also the targets that MVLT's unimodal passes distil
(``--teachers``): they sit in MVLT's own ITC space when ``dim`` is the model's contrastive width.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ...fileio import atomic_write, atomic_write_text

DUAL_WEIGHTS, DUAL_CONFIG = "dual_encoder.safetensors", "dual_encoder.json"


@dataclass
class DualFit:
    """How the projections were fitted, and how the held-out tenth scored along the way."""

    dim: int
    epochs: int
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    held_out_r1: list[float] | None = None
    """Mean of image->text and text->image R@1 over the held-out tenth after each epoch."""


class DualEncoder(nn.Module):
    """Standardise each teacher's features, project them to ``dim`` and normalise."""

    def __init__(self, image_dim: int, text_dim: int, dim: int) -> None:
        super().__init__()
        for name, width in (("image", image_dim), ("text", text_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(width))
            self.register_buffer(f"{name}_std", torch.ones(width))
        self.image_proj = nn.Linear(image_dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def set_statistics(self, images: torch.Tensor, texts: torch.Tensor) -> None:
        for name, x in (("image", images), ("text", texts)):
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0).clamp_min(1e-6))

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj((features - self.image_mean) / self.image_std), dim=-1)

    def embed_texts(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj((features - self.text_mean) / self.text_std), dim=-1)

    @property
    def temperature(self) -> float:
        return float(1 / self.logit_scale.detach().exp())

    def save(self, directory: str | Path, fit: DualFit) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / DUAL_WEIGHTS, lambda tmp: save_file(state, str(tmp)))
        atomic_write_text(directory / DUAL_CONFIG, json.dumps(asdict(fit), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> tuple[DualEncoder, DualFit]:
        directory = Path(directory)
        fit = DualFit(**json.loads((directory / DUAL_CONFIG).read_text(encoding="utf-8")))
        state = load_file(str(directory / DUAL_WEIGHTS))
        model = cls(state["image_mean"].numel(), state["text_mean"].numel(), fit.dim)
        model.load_state_dict(state)
        return model.eval(), fit


def fit_dual_encoder(
    images: torch.Tensor,
    texts: torch.Tensor,
    groups: list[str],
    dim: int,
    *,
    max_epochs: int = 40,
    seed: int = 0,
) -> tuple[DualEncoder, DualFit]:
    """Fit the projections on row-aligned teacher features. ``groups`` (product or product-code per
    row) keeps every variant of one product on the same side of the held-out split."""
    fit = DualFit(dim=dim, epochs=0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    names = sorted(set(groups))
    held = {names[i] for i in torch.randperm(len(names), generator=g)[: max(1, len(names) // 10)].tolist()}
    is_held = torch.tensor([x in held for x in groups])
    train, val = torch.nonzero(~is_held).flatten(), torch.nonzero(is_held).flatten()
    probe = _train(images, texts, train, fit, max_epochs, val)
    fit.held_out_r1 = probe
    fit.epochs = 1 + max(range(len(probe)), key=lambda e: probe[e])
    model = _train(images, texts, torch.arange(len(groups)), fit, fit.epochs, None)
    return model, fit


def _train(
    images: torch.Tensor,
    texts: torch.Tensor,
    rows: torch.Tensor,
    fit: DualFit,
    epochs: int,
    val: torch.Tensor | None,
) -> list[float] | DualEncoder:
    """Train on ``rows``; with ``val``, return the held-out R@1 after each epoch, else the model."""
    torch.manual_seed(fit.seed)
    model = DualEncoder(images.shape[1], texts.shape[1], fit.dim)
    model.set_statistics(images[rows], texts[rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    g = torch.Generator().manual_seed(fit.seed)
    scores = []
    for _ in range(epochs):
        model.train()
        order = rows[torch.randperm(len(rows), generator=g)]
        for start in range(0, len(order) - fit.batch_size + 1, fit.batch_size):
            batch = order[start : start + fit.batch_size]
            loss = infonce(
                model.embed_images(images[batch]), model.embed_texts(texts[batch]), model.logit_scale
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
        if val is not None:
            scores.append(_recall_at_1(model, images[val], texts[val]))
    return scores if val is not None else model.eval()


def infonce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    logits = logit_scale.exp() * image @ text.t()
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


@torch.no_grad()
def _recall_at_1(model: DualEncoder, images: torch.Tensor, texts: torch.Tensor) -> float:
    model.eval()
    sim = model.embed_images(images) @ model.embed_texts(texts).t()
    target = torch.arange(len(sim))
    return float(((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()) / 2)
