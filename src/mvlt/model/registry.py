"""Model variants registered by name, one function each, and the ``create_model`` factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import PAPER_DESIGN, RAW_PIXELS, MVLTConfig
from .mvlt import MVLT

_VARIANTS: dict[str, Callable[..., MVLTConfig]] = {}


def register_model(fn: Callable[..., MVLTConfig]) -> Callable[..., MVLTConfig]:
    """Register a variant: a function that returns its ``MVLTConfig`` given overrides."""
    _VARIANTS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_VARIANTS)


def get_config(name: str, **overrides: Any) -> MVLTConfig:
    """The configuration of variant ``name`` with ``overrides`` applied.

    ``compat="official"`` also selects the released aggregation decoder, turns the padding mask
    off, feeds raw pixels and keeps the paper's heads (no ITC, [CLS] ITM head), unless those
    fields are given explicitly.
    """
    if name not in _VARIANTS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    if overrides.get("compat") == "official":
        overrides = {
            "decoder": "aggregation",
            "mask_padding": False,
            **RAW_PIXELS,
            **PAPER_DESIGN,
            **overrides,
        }
    return _VARIANTS[name](**overrides)


def create_model(name: str, **overrides: Any) -> MVLT:
    """Build a randomly initialised MVLT variant, e.g. ``create_model("mvlt_tiny", image_size=128)``."""
    return MVLT(get_config(name, **overrides))


def _pvt(depths: tuple[int, ...], overrides: dict[str, Any]) -> MVLTConfig:
    """The PVT-v1 family: Table 1's widths, heads, MLP and SR ratios with the given depths."""
    return MVLTConfig(**{"depths": depths, **overrides})


@register_model
def mvlt_tiny(**overrides: Any) -> MVLTConfig:
    """The paper's model (Table 1): PVT-v1-Tiny depths (2, 2, 2, 2), 40.0 M parameters."""
    return _pvt((2, 2, 2, 2), overrides)


@register_model
def mvlt_small(**overrides: Any) -> MVLTConfig:
    """PVT-v1-Small depths (3, 4, 6, 3)."""
    return _pvt((3, 4, 6, 3), overrides)


@register_model
def mvlt_medium(**overrides: Any) -> MVLTConfig:
    """PVT-v1-Medium depths (3, 4, 18, 3)."""
    return _pvt((3, 4, 18, 3), overrides)


@register_model
def mvlt_large(**overrides: Any) -> MVLTConfig:
    """PVT-v1-Large depths (3, 8, 27, 3)."""
    return _pvt((3, 8, 27, 3), overrides)


@register_model
def mvlt_nano(**overrides: Any) -> MVLTConfig:
    """A small model for CPU tests and the demo: same structure, narrow and one block per stage.

    No text-embedding dropout: trained from scratch, the image's contribution to the text tokens
    starts tiny, and dropout noise on the text embedding hides it (measured: with dropout 0.1 a
    category head on [CLS] could not learn the garment colour from the image in 150 steps; with 0
    it did within 300).
    """
    defaults: dict[str, Any] = {
        "image_size": 128,
        "embed_dims": (32, 64, 96, 128),
        "depths": (1, 1, 1, 1),
        "num_heads": (1, 2, 2, 4),
        "mlp_ratios": (4.0, 4.0, 4.0, 4.0),
        "word_embed_dim": 128,
        "contrastive_dim": 128,
        "decoder_channels": (64, 32, 16, 16, 8),
        "drop_path_rate": 0.0,
        "text_dropout": 0.0,
    }
    return MVLTConfig(**{**defaults, **overrides})


@register_model
def mvlt_micro(**overrides: Any) -> MVLTConfig:
    """``mvlt_nano`` 1.5x as wide (48-dim heads throughout): room to mimic a teacher, at about 1.5x
    the nano's step time on CPU (``benchmarks/time_to_accuracy.py --model mvlt_micro``)."""
    widths = {"embed_dims": (48, 96, 144, 192), "num_heads": (1, 2, 3, 4)}
    return mvlt_nano(**{**widths, **overrides})


@register_model
def mvlt_mini(**overrides: Any) -> MVLTConfig:
    """``mvlt_nano`` twice as wide (64-dim heads throughout), 7.2 M parameters, 1.4x micro's step
    time on CPU: for budgets with more steps (on the validation slice, 16 CPU minutes were too few
    for it; docs/RESULTS.md, "Five more designs")."""
    widths = {"embed_dims": (64, 128, 192, 256), "num_heads": (1, 2, 3, 4)}
    return mvlt_nano(**{**widths, **overrides})
