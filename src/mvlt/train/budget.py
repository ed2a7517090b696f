"""A training length that fills a wall-clock budget (``fit_minutes``): a plan that holds.

A planner times a step before training; the real step also loads and augments images, mines ITM
negatives, logs and checkpoints, and shares the machine with whatever else runs. So the trainer
measures its own rate once it has run for a minute and, whenever the projected end of the run is
off the budget by more than :data:`TOLERANCE`, re-fits the number of remaining steps (and with it
the cosine horizon). Measured from the end of each invocation's first step: that step pays for
allocation and kernel selection and says nothing about the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCE = 0.10
"""Re-fit when the projected training time is off the budget by more than this fraction."""
FIRST_CHECK_S = 60.0
"""The first check, and the spacing of later ones: a minute of steps gives a rate that holds."""
CHECK_EVERY_STEPS = 10
"""Steps between the points where every rank agrees on a re-fit (one small collective)."""
MIN_TIMED_STEPS = 3


@dataclass
class BudgetFit:
    """Tracks the step rate of one invocation against ``budget_s`` of training time.

    ``trained_before_s`` is the training time of earlier invocations (a resumed run), so the
    budget spans the whole run, not each invocation (unlike ``max_minutes``)."""

    budget_s: float
    trained_before_s: float = 0.0
    _timed_from: tuple[int, float] | None = None  # (step, time) at the end of the first step
    _last_check: float | None = None

    def step_done(self, step: int, now: float) -> None:
        """Call after every optimizer step with the step count reached and the clock."""
        if self._timed_from is None:
            self._timed_from = (step, now)
            self._last_check = now

    def proposal(self, step: int, total: int, now: float, started: float) -> int | None:
        """A new total step count if the projection is off by more than :data:`TOLERANCE`, else
        None. ``started`` is this invocation's start on the same clock as ``now``."""
        if self._timed_from is None or self._last_check is None:
            return None
        first_step, first_time = self._timed_from
        timed = step - first_step
        if now - self._last_check < FIRST_CHECK_S or timed < MIN_TIMED_STEPS:
            return None
        self._last_check = now
        rate = (now - first_time) / timed
        spent = self.trained_before_s + (now - started)
        projected = spent + (total - step) * rate
        if abs(projected - self.budget_s) <= TOLERANCE * self.budget_s:
            return None
        return step + max(1, int((self.budget_s - spent) / rate))

    @staticmethod
    def describe(step: int, old: int, new: int, rate: float, spent_s: float, budget_s: float) -> str:
        """The log line of a re-fit."""
        return (
            f"re-fit to the {budget_s / 60:.1f} min budget at step {step} ({spent_s / 60:.1f} min trained, "
            f"{rate:.2f} s/step measured): {old} -> {new} steps, cosine horizon moved"
        )

    def rate(self, step: int, now: float) -> float:
        """Seconds per step measured so far (0 before two steps)."""
        if self._timed_from is None or step <= self._timed_from[0]:
            return 0.0
        return (now - self._timed_from[1]) / (step - self._timed_from[0])
