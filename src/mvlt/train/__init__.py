"""Training: one engine for pre-training and fine-tuning, from one CPU process to many GPUs.

``pretrain(config)`` / ``finetune(config)`` return the output directory, a loadable model
(``MVLT.from_pretrained(out)``); ``train(config)`` returns a :class:`TrainResult`. The command
line is ``mvlt pretrain`` / ``mvlt finetune`` (:mod:`mvlt.train.cli`).
"""

from ..runtime import resolve_precision
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from .config import ConfigError, TrainConfig, load_config
from .engine import NonFiniteLossError, RunExistsError, TrainResult, finetune, pretrain, train
from .schedule import WarmupCosine, lr_scheduler

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "RunExistsError",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "finetune",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "lr_scheduler",
    "pretrain",
    "resolve_precision",
    "train",
]
