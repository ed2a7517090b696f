"""mvlt: the Masked Vision-Language Transformer (Ji et al., MIR 2023) for fashion e-commerce."""

from .model import (
    MVLT,
    BackboneReport,
    CheckpointError,
    EncoderOutput,
    LossWeights,
    MVLTConfig,
    Recognition,
    create_model,
    from_official_checkpoint,
    get_config,
    list_models,
    load_pvt_backbone,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "MVLT",
    "BackboneReport",
    "CheckpointError",
    "EncoderOutput",
    "LossWeights",
    "MVLTConfig",
    "Recognition",
    "__version__",
    "create_model",
    "from_official_checkpoint",
    "get_config",
    "list_models",
    "load_pvt_backbone",
    "register_model",
]
