"""Continuing a run: which checkpoint, whether the command may, and what to say when it stops.

- ``--resume`` continues from the newest checkpoint that loads. One with a truncated or corrupt
  file (a full disk, an interrupted copy) is named and passed over, loudly, for the next older
  one. ``--resume step-0000002`` (or ``--resume 2``) picks one and never falls back.
- The architecture comes from the checkpoint, so a resume whose settings ask for another one
  (``--model``, ``--image-size``, ...) is refused, naming the fields. The run length, the schedule,
  the workers and the like may change.
- A bad catalogue row met mid-training stops the run like SIGTERM does: the finished steps are
  saved first, and the message names the row and the command that continues.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.errors import DataError
from ..data.labels import LabelMaps
from ..data.tokenizer import Tokenizer
from ..exits import UsageError
from ..model.io import LABELS_NAME, CheckpointError, load_state_checked, read_config
from ..model.mvlt import MVLT
from ..model.objectives import EmbeddingMemory
from . import checkpoint as ckpt
from .average import WeightAverage
from .config import TrainConfig, load_config
from .distributed import Runtime, barrier
from .runlog import CONFIG_NAME, LOG_NAME, METRICS_NAME

LATEST = "latest"
ARCHITECTURE = ("task", "recipe", "model", "model_overrides", "init", "image_size", "max_text_len",
                "tokenizer", "vocab_size", "labels")  # fmt: skip
"""Settings a resumed run takes from its checkpoint: changing them on resume is refused."""


class RunExistsError(FileExistsError, UsageError):
    """The output directory already holds another run's checkpoints."""


class NothingToResumeError(FileNotFoundError, UsageError):
    """``--resume`` on an output directory without a checkpoint."""


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, its model (weights loaded), and the warnings about
    newer checkpoints passed over."""

    state: ckpt.TrainingState
    model: MVLT
    notes: list[str] = field(default_factory=list)


def prepare_out(
    config: TrainConfig, runtime: Runtime, resume: bool | str, overwrite: bool
) -> ResumePoint | None:
    """For a resume, where it continues from; for a new run None, after refusing to mix it with
    another run (or deleting that one: ``overwrite``)."""
    out = Path(config.out)
    existing = ckpt.latest_checkpoint(out)
    if resume:
        if existing is None:
            raise NothingToResumeError(
                f"--resume: no checkpoint to resume under {out / ckpt.CHECKPOINTS} (run without "
                "--resume to start)"
            )
        check_architecture(out / CONFIG_NAME, config)
        return choose_checkpoint(out, LATEST if resume is True else str(resume))
    if existing is not None:
        if not overwrite:
            raise RunExistsError(
                f"--out {out} already holds a run (latest checkpoint {existing.name}); pass --resume "
                "to continue it, --overwrite to start over, or choose another --out"
            )
        barrier(runtime)
        if runtime.is_main:
            shutil.rmtree(out / ckpt.CHECKPOINTS, ignore_errors=True)
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
            for name in (METRICS_NAME, LOG_NAME):
                (out / name).unlink(missing_ok=True)
        barrier(runtime)
    return None


def check_architecture(saved_config: Path, config: TrainConfig) -> None:
    """Refuse a resume whose settings ask for another architecture than the run's saved config."""
    if not saved_config.is_file():
        return
    saved = load_config(saved_config)
    changed = []
    for key in ARCHITECTURE:
        before, after = getattr(saved, key), getattr(config, key)
        if before != after and not (key == "image_size" and after is None):
            changed.append(f"{key} {before!r} -> {after!r}")
    if changed:
        raise UsageError(
            f"--resume: {saved_config.parent} was trained with another architecture ({', '.join(changed)}); "
            "a resumed run takes these from its checkpoint. Drop these settings to continue it, or start "
            f"a new run in another --out (--init {saved_config.parent} starts from its weights)"
        )


def choose_checkpoint(out: Path, which: str) -> ResumePoint:
    """``which`` (a step directory's name, its step number or path), or the newest that loads."""
    found = ckpt.list_checkpoints(out)
    if which != LATEST:
        return load_resumable(_find(out, which, found))
    passed_over: list[str] = []
    for path in reversed(found):
        try:
            point = load_resumable(path)
        except (CheckpointError, OSError, ValueError) as err:
            passed_over.append(f"warning: cannot resume from {path.name}: {err}")
            continue
        if passed_over:
            passed_over.append(
                f"warning: resuming from {path.name}, the newest checkpoint that loads, instead of "
                f"{found[-1].name}; the steps after it are trained again"
            )
        point.notes = passed_over
        return point
    raise CheckpointError(
        f"--resume: no checkpoint under {out / ckpt.CHECKPOINTS} loads: "
        + "; ".join(p.removeprefix("warning: cannot resume from ") for p in passed_over)
    )


def _find(out: Path, which: str, found: list[Path]) -> Path:
    for path in found:
        if which in (path.name, str(path)) or (which.isdigit() and int(which) == int(path.name[5:])):
            return path
    names = ", ".join(p.name for p in found)
    raise UsageError(f"--resume {which}: no such checkpoint under {out / ckpt.CHECKPOINTS} (there: {names})")


def load_resumable(path: Path) -> ResumePoint:
    """Read every file of a checkpoint (a damaged one raises, named) and rebuild its model."""
    state = ckpt.load_checkpoint(path)
    model = MVLT(read_config(path))
    load_state_checked(model, state.weights, str(path / ckpt.WEIGHTS_NAME))
    state.weights = {}
    model.tokenizer = Tokenizer.load(path)
    labels = path / LABELS_NAME
    model.label_maps = LabelMaps.load(labels) if labels.is_file() else None
    return ResumePoint(state, model)


def restore(
    state: ckpt.TrainingState, optimizer: torch.optim.Optimizer, scaler: Any, runtime: Runtime, seed: int,
    expected: dict[str, int], memory: EmbeddingMemory | None = None, average: WeightAverage | None = None,
) -> None:  # fmt: skip
    """Put the optimizer, gradient scaler, RNG, ITC-memory and weight-average states of ``state``
    back; ``expected`` (the global batch and steps per epoch) must match, or the data position would
    mean another item."""
    for key, value in expected.items():
        if int(state.state[key]) != int(value):
            raise UsageError(
                f"--resume: {state.path} was trained with {key}={state.state[key]}, this run has {value}; "
                "resume with the same batch size and training data"
            )
    optimizer.load_state_dict(state.optimizer["optimizer"])
    if memory is not None:
        if "memory" not in state.optimizer:
            raise UsageError(
                f"--resume: {state.path} was trained without an ITC memory; resume with the run's itc_memory"
            )
        memory.load_state_dict(state.optimizer["memory"])
    if average is not None:
        if "average" not in state.optimizer:
            raise UsageError(
                f"--resume: {state.path} was trained without a weight average; resume with the run's "
                "ema_decay"
            )
        average.load_state_dict(state.optimizer["average"])
    if "scaler" in state.optimizer and scaler.is_enabled():
        scaler.load_state_dict(state.optimizer["scaler"])
    if len(state.rng) == runtime.world_size:
        ckpt.restore_rng(state.rng[runtime.rank])
    else:  # a different number of processes: the data order is the same, dropout is not
        ckpt.restore_rng(state.rng[0])
        torch.manual_seed(seed + 7919 * (state.step + 1) + runtime.rank)


def bad_row_message(err: DataError, task: str, out: Path, checkpoint: Path | None) -> str:
    """The row (a DataLoader worker's error carries a traceback: its last line), what was saved,
    and the command that continues."""
    row = str(err).strip().splitlines()[-1].split("DataError: ", 1)[-1]
    if checkpoint is None:
        return f"{row}; no checkpoint was saved: fix the image and run the command again"
    return (
        f"{row}; training is saved up to {checkpoint}. Fix or replace the image, then continue with: "
        f"mvlt {task} --out {out} --resume (or start over leaving bad rows out: --overwrite --skip-bad-rows)"
    )
