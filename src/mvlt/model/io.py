"""Checkpoint directories: ``model.safetensors`` + ``config.json`` (+ tokenizer, label maps).

Loading never unpickles. A checkpoint that does not fit the model it describes fails with the
names of the missing, unexpected and mis-shaped tensors; the one exception is a module newer than
the checkpoint (:data:`ADDED_LATER`), which loads without it when the checkpoint has none of it.
This module does not import the model (:mod:`.mvlt` imports it to save and load itself): the model
class comes in as an argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..fileio import atomic_write, atomic_write_text, read_json
from .config import MVLTConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
LABELS_NAME = "labels.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
FORMAT_VERSION = 1
ADDED_LATER = ("text_tag_heads",)
"""``ModuleDict`` s of the model that checkpoints saved before them lack entirely: such a checkpoint
loads with the module empty (as if never built), never with fresh random weights that would
pass for trained ones. A checkpoint with only some of a module's tensors is still a mismatch."""

ModelT = TypeVar("ModelT", bound=torch.nn.Module)


class Checkpointable(Protocol):
    """What a checkpoint stores of a model (an :class:`~mvlt.model.mvlt.MVLT`)."""

    config: MVLTConfig
    tokenizer: Any
    label_maps: Any

    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


class CheckpointError(ValueError):
    """A checkpoint's tensors do not match the model they are loaded into."""


def describe_mismatch(
    expected: Mapping[str, torch.Size], found: Mapping[str, torch.Size], limit: int = 12
) -> str | None:
    """One message naming missing, unexpected and mis-shaped tensors, or None if they match."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = [
        f"{k} (checkpoint {tuple(found[k])}, model {tuple(expected[k])})"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k]) != tuple(expected[k])
    ]
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if names:
            shown = ", ".join(names[:limit]) + (
                f", ... ({len(names) - limit} more)" if len(names) > limit else ""
            )
            parts.append(f"{len(names)} {label}: {shown}")
    return "; ".join(parts) or None


def drop_absent_modules(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Empty each :data:`ADDED_LATER` module of ``model`` that ``state`` has no tensor of; the
    names of those emptied."""
    dropped = []
    for name in ADDED_LATER:
        module, prefix = getattr(model, name, None), name + "."
        if (
            isinstance(module, torch.nn.ModuleDict)
            and module
            and not any(k.startswith(prefix) for k in state)
        ):
            setattr(model, name, torch.nn.ModuleDict())
            dropped.append(name)
    return dropped


def load_state_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names every offending tensor; a module
    the checkpoint predates is emptied first (:func:`drop_absent_modules`)."""
    drop_absent_modules(model, state)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problem = describe_mismatch(expected, {k: v.shape for k, v in state.items()})
    if problem:
        raise CheckpointError(f"{source} does not match the model: {problem}")
    model.load_state_dict(state, strict=True)


def save_pretrained(model: Checkpointable, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    payload = {"architecture": "mvlt", "format_version": FORMAT_VERSION, "config": model.config.to_dict()}
    atomic_write_text(directory / CONFIG_NAME, json.dumps(payload, indent=2) + "\n")
    if model.tokenizer is not None:
        model.tokenizer.save(directory)
    if model.label_maps is not None:
        model.label_maps.save(directory / LABELS_NAME)
    return directory


def read_config(directory: str | Path) -> MVLTConfig:
    path = Path(directory) / CONFIG_NAME
    payload = read_json(path, missing=f"not an MVLT checkpoint: {path} is missing", error=CheckpointError)
    if payload.get("architecture") != "mvlt" or "config" not in payload:
        raise CheckpointError(f"{path} is not an MVLT config (no 'architecture': 'mvlt' / 'config')")
    return MVLTConfig.from_dict(payload["config"])


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or not a safetensors file: {err}") from err


def load_pretrained(
    model_class: Callable[[MVLTConfig], ModelT],
    directory: str | Path,
    map_location: str | torch.device = "cpu",
) -> ModelT:
    """``model_class(config)`` with the directory's weights, tokenizer and label maps."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    model = model_class(read_config(directory))
    load_state_checked(model, read_weights(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
    if (directory / TOKENIZER_CONFIG_NAME).is_file():
        from ..data.tokenizer import Tokenizer

        model.tokenizer = Tokenizer.load(directory)
    if (directory / LABELS_NAME).is_file():
        from ..data.labels import LabelMaps

        model.label_maps = LabelMaps.load(directory / LABELS_NAME)
    return model.to(map_location)
