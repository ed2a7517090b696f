"""How every ``mvlt`` command ends: one exit-code convention, one error line, flag-value checks.

- ``0``: done (also when ``--max-minutes`` ran out: the run saved a checkpoint and can resume);
- ``1``: the command line is fine but what it points at is not: a missing or bad file, catalogue
  row, image or checkpoint, or a run that failed (a non-finite loss);
- ``2``: the command line is wrong: an unknown flag or a value of the wrong type (argparse), a value
  out of range, settings that contradict each other or the state of ``--out`` (a :class:`UsageError`);
- ``130`` / ``143``: stopped by SIGINT / SIGTERM after saving a checkpoint; ``--resume`` continues.

Every error is one line on stderr, ``mvlt COMMAND: error: ...``, naming the file, row or flag.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

OK, FAILED, USAGE = 0, 1, 2
INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}


class UsageError(ValueError):
    """The command line is wrong (a flag value, conflicting settings, the state of ``--out``): exit 2."""


class RunFailed(RuntimeError):
    """A run that stopped on its own (e.g. a non-finite loss): exit 1, with the reason."""


ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RunFailed)
"""What a command turns into an error line (``DataError``, ``ConfigError`` and ``CheckpointError``
are ``ValueError``s); anything else is a bug and keeps its traceback."""


def exit_code(err: BaseException) -> int:
    return USAGE if isinstance(err, UsageError) else FAILED


def fail(command: str, err: BaseException) -> int:
    """Print ``mvlt COMMAND: error: ...`` (prefixed by the rank under torchrun) and return its code."""
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank not in (None, "0") else ""
    print(f"{prefix}mvlt {command}: error: {err}", file=sys.stderr)
    return exit_code(err)


# ------------------------------------------------------------------------------------ flag values
def count_arg(text: str) -> int:
    """argparse ``type`` for a whole number >= 1 (argparse turns the error into exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def whole_arg(text: str) -> int:
    """argparse ``type`` for a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def port_arg(text: str) -> int:
    """argparse ``type`` for a TCP port, 0 (any free one) to 65535: checked before anything loads."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {value}")
    return value


def at_most_arg(limit: int) -> Callable[[str], int]:
    """argparse ``type`` for a whole number from 0 to ``limit`` (e.g. a re-ranking depth, whose cost
    grows with it: one cross-encoder pass per candidate)."""

    def check(text: str) -> int:
        value = int(text)
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 0 and {limit}, got {value}")
        return value

    check.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return check


def positive_float_arg(text: str) -> float:
    """argparse ``type`` for a positive finite number (``float`` alone accepts ``nan`` and ``-5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


RULES = {
    "positive": (lambda v: v > 0, "a positive finite number"),
    "non_negative": (lambda v: v >= 0, "a finite number >= 0"),
    "fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "open_fraction": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "count": (lambda v: v >= 1, "a whole number >= 1"),
    "whole": (lambda v: v >= 0, "a whole number >= 0"),
    "image_size": (lambda v: v >= 32 and v % 32 == 0, "a positive multiple of 32"),
}
"""Named checks of numeric flags; each needs a finite value (argparse's ``float`` accepts ``nan``)."""


def check_number(flag: str, value: float | None, rule: str) -> None:
    """Raise ``UsageError("--lr nan: must be a positive finite number")`` when ``value`` breaks ``rule``."""
    if value is None:
        return
    test, words = RULES[rule]
    if not (math.isfinite(value) and test(value)):
        raise UsageError(f"{flag} {value:g}: must be {words}")
