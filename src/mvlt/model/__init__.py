"""The MVLT model: config, variants, encoder, heads, decoders, checkpoints and importers."""

from .config import LossWeights, MVLTConfig
from .encoder import EncoderOutput
from .importers import BackboneReport, from_official_checkpoint, load_pvt_backbone
from .io import CheckpointError
from .mvlt import MVLT, Recognition
from .registry import create_model, get_config, list_models, register_model

__all__ = [
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
]
