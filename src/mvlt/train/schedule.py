"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (released code's shape);
and the teachers' annealing (:func:`annealed`).

The schedule is a pure function of the optimizer step, so a resumed run needs only the step to
be back on it; :func:`lr_scheduler` wraps it for ``torch.optim`` as a ``LambdaLR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WarmupCosine:
    """``lr(step)``: 0 → ``peak`` linearly over ``warmup`` steps, then cosine ``peak`` → ``floor``
    at ``total`` steps (and ``floor`` after). Step ``s`` is the lr used *for* update ``s`` (0-based),
    so the first update already has a non-zero lr (``peak / warmup``)."""

    peak: float
    total: int
    warmup: int = 0
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.warmup <= self.total:
            raise ValueError(
                f"need total >= 1 and 0 <= warmup <= total, got total={self.total}, warmup={self.warmup}"
            )

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        decay_steps = self.total - self.warmup
        if decay_steps <= 1:
            return self.peak
        progress = min(1.0, (step - self.warmup) / (decay_steps - 1))
        return self.floor + 0.5 * (self.peak - self.floor) * (1.0 + math.cos(math.pi * progress))


class _Factor:
    """``LambdaLR`` multiplier: ``schedule(step) / peak`` (a picklable object, not a lambda)."""

    def __init__(self, schedule: WarmupCosine) -> None:
        self.schedule = schedule

    def __call__(self, step: int) -> float:
        return self.schedule(step) / self.schedule.peak if self.schedule.peak else 0.0


def lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: WarmupCosine
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``schedule``; the optimizer's groups must start at ``schedule.peak``."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.peak
        group["initial_lr"] = schedule.peak
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Factor(schedule))


def warmup_steps(total: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    """Explicit steps win; otherwise ``round(ratio × total)``; never more than ``total``."""
    steps = warmup_steps if warmup_steps is not None else round(warmup_ratio * total)
    return max(0, min(int(steps), total))


def annealed(step: int, total: int, start: float) -> float:
    """The share of its weight a ``kd_*`` loss keeps at ``step`` of ``total``: 1 until the run is
    ``start`` of the way through, then linearly down to 0 at the end (``start`` 1: always 1)."""
    if start >= 1:
        return 1.0
    return min(1.0, max(0.0, (1.0 - step / max(total, 1)) / (1.0 - start)))
