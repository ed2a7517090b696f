"""An exponential moving average of the trained weights (``TrainConfig.ema_decay``).

The average of the last few hundred steps' weights sits nearer the middle of the basin the
optimizer wanders in than any single step's weights (Polyak averaging; timm's ``ModelEmaV2``,
MoCo's and ALBEF's momentum encoders keep the same average for another purpose). Training reads
the raw weights; the saved model is the average. Until ``1 / (1 - decay)`` steps have passed the
average is the plain mean of every step's weights so far (the decay is ``t / (t + 1)``), so the
initial random weights do not linger; the decay is a function of the step alone, so a resumed run
averages exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """The running average of ``model``'s floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in _averaged(model).items()}

    def decay_at(self, step: int) -> float:
        """The weight of the old average in the update after ``step`` optimizer steps."""
        return min(self.decay, step / (step + 1.0))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step number ``step`` (0-based)."""
        d = self.decay_at(step)
        current = _averaged(model)
        torch._foreach_lerp_(list(self.shadow.values()), [current[k] for k in self.shadow], 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite ``model``'s weights with the average."""
        current = _averaged(model)
        for key, value in self.shadow.items():
            current[key].copy_(value)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """``model`` holds the average inside the block and its own weights again after it."""
        current = _averaged(model)
        saved = {k: v.detach().clone() for k, v in current.items()}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for key, value in saved.items():
                    current[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(self.shadow.keys() - state.keys())
        unexpected = sorted(state.keys() - self.shadow.keys())
        if missing or unexpected:
            raise ValueError(f"weight average: missing {missing[:3]}, unexpected {unexpected[:3]}")
        for key, value in state.items():
            self.shadow[key].copy_(value)


def _averaged(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors the average keeps: every floating-point parameter and buffer, by name."""
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
