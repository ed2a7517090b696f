"""mvlt: the Masked Vision-Language Transformer (Ji et al., MIR 2023) for fashion e-commerce.

The model API is re-exported here lazily, so ``import mvlt.data`` (e.g. in a DataLoader worker)
does not import the model: the layers stay independent at run time, not only in the source.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODEL_API = (
    "MVLT",
    "BackboneReport",
    "CheckpointError",
    "EncoderOutput",
    "LossWeights",
    "MVLTConfig",
    "Recognition",
    "create_model",
    "from_official_checkpoint",
    "get_config",
    "list_models",
    "load_pvt_backbone",
    "register_model",
)

_SEARCH_API = ("CatalogueIndex",)

__all__ = [*_MODEL_API, *_SEARCH_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        return getattr(importlib.import_module(".model", __name__), name)
    if name in _SEARCH_API:
        return getattr(importlib.import_module(".search", __name__), name)
    raise AttributeError(f"module 'mvlt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
