"""Resumable training checkpoints: ``<out>/checkpoints/step-XXXXXXX/``, written atomically.

Each step directory is a loadable model (``model.safetensors``, ``config.json``, tokenizer files,
``labels.json``; ``MVLT.from_pretrained`` reads it) plus what continues the run exactly:

- ``optimizer.pt``: optimizer (and fp16 gradient-scaler) state, read back with ``weights_only=True``
  (tensors and plain containers only: never unpickles code);
- ``rng.pt``: the torch / CUDA / numpy / python RNG states of every rank;
- ``trainer_state.json``: step, epoch, optimizer steps done in the epoch (the data position),
  samples seen and the last logged losses.

The directory is filled under a temporary name and renamed into place, so a crash or a kill
while saving leaves the previous checkpoint as the latest complete one. A file damaged later (a
full disk, an interrupted copy) fails to load with an error naming it; :mod:`.resume` then falls
back to an older checkpoint.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_directory, atomic_write_text, read_json
from ..model.io import CheckpointError, load_state_checked, read_weights

CHECKPOINTS = "checkpoints"
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
RNG_NAME = "rng.pt"
WEIGHTS_NAME = "model.safetensors"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainingState:
    """What a checkpoint holds besides the weights."""

    path: Path
    state: dict[str, Any]
    optimizer: dict[str, Any]
    rng: list[dict[str, Any]]
    weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def step(self) -> int:
        return int(self.state["step"])


def step_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step-{step:07d}"


def list_checkpoints(out: str | Path) -> list[Path]:
    """Complete step directories, oldest first (temporary ones from an interrupted save are not)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: str | Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


# ------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """This process's RNG states, as plain tensors / numbers (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------------- save / load
def save_checkpoint(
    out: str | Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng: list[dict[str, Any]],
    scaler: Any = None,
    keep: int = 3,
    memory: dict[str, torch.Tensor] | None = None,
    average: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``step-<state['step']>`` atomically, then delete all but the newest ``keep``.
    ``memory``: the ITC memory's state (``TrainConfig.itc_memory``), ``average`` the weights' moving
    average (``TrainConfig.ema_decay``), each kept beside the optimizer's. The step's own weights
    are the raw ones training continues from."""
    path = step_dir(out, int(state["step"]))
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        payload = {"optimizer": optimizer.state_dict()}
        if scaler is not None and scaler.is_enabled():
            payload["scaler"] = scaler.state_dict()
        if memory is not None:
            payload["memory"] = memory
        if average is not None:
            payload["average"] = average
        torch.save(payload, tmp / OPTIMIZER_NAME)
        torch.save(rng, tmp / RNG_NAME)
        atomic_write_text(tmp / STATE_NAME, json.dumps(state, indent=2) + "\n")
    prune_checkpoints(out, keep)
    return path


def prune_checkpoints(out: str | Path, keep: int) -> list[Path]:
    """Delete the oldest step directories beyond ``keep``; return what was deleted."""
    found = list_checkpoints(out)
    doomed = found[: max(0, len(found) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_stale_temporaries(out: str | Path) -> None:
    """Temporary directories left by a save that was killed half-way (never a complete checkpoint)."""
    root = Path(out) / CHECKPOINTS
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".step-") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> TrainingState:
    """Read every file of a step directory, so a damaged one fails here, named; with ``model``,
    also load the weights into it (strict, checked)."""
    path = Path(path)
    state_file = path / STATE_NAME
    state = read_json(
        state_file, missing=f"not a training checkpoint: {state_file} is missing", error=CheckpointError
    )
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{state_file} holds no training step")
    weights = read_weights(path / WEIGHTS_NAME)
    if model is not None:
        load_state_checked(model, weights, str(path / WEIGHTS_NAME))
    optimizer = read_tensors(path / OPTIMIZER_NAME)
    if not isinstance(optimizer, dict) or "optimizer" not in optimizer:
        raise CheckpointError(f"{path / OPTIMIZER_NAME} holds no optimizer state")
    rng = read_tensors(path / RNG_NAME)
    if not isinstance(rng, list) or not rng:
        raise CheckpointError(f"{path / RNG_NAME} holds no random-number states")
    return TrainingState(path=path, state=state, optimizer=optimizer, rng=rng, weights=weights)


def read_tensors(path: Path) -> Any:
    """``torch.load(weights_only=True)``; a missing, truncated or corrupt file raises naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated: RuntimeError (zip), garbage: UnpicklingError, empty: EOFError
        detail = (str(err).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(err).__name__}{': ' if detail else ''}{detail})"
        ) from err
