"""Stopping a run early but cleanly: SIGTERM / SIGINT, and the ``max_minutes`` budget."""

from __future__ import annotations

import signal
from contextlib import suppress
from typing import Any

TIME_BUDGET = "time budget"
"""``TrainResult.interrupted`` when ``max_minutes`` ran out (not a signal: exit code 0)."""


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, saves and exits. A second SIGINT
    interrupts at once (the default behaviour)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
