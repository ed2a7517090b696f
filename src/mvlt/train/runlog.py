"""What a run leaves for people and plots (rank 0 only): ``train.log`` (every line the user saw,
down to the final "done", "interrupted" or error line), ``metrics.jsonl`` (one record per logging
window), TensorBoard scalars, and ``config.yaml`` (the resolved config, to repeat or resume)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from ..model.config import OBJECTIVES

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"
LOG_NAME = "train.log"


class RunLog:
    """The log files of one run in ``out``; every method is a no-op on ranks other than 0."""

    def __init__(self, out: Path, is_main: bool) -> None:
        self.out, self.is_main = out, is_main
        self._file: Any = None
        self._writer: Any = None

    def open(self, config_yaml: str, step: int, tensorboard: bool) -> None:
        """Write ``config.yaml``; keep the metrics logged up to ``step`` (the one resumed from)."""
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / CONFIG_NAME, config_yaml)
        metrics = self.out / METRICS_NAME
        if step and metrics.is_file():  # drop lines logged after the checkpoint we resume from
            lines = metrics.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))
        elif not step:
            metrics.unlink(missing_ok=True)
        self._file = (self.out / LOG_NAME).open("a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=step + 1 if step else None)

    def info(self, message: str, echo: bool = True) -> None:
        """A line for the user: stderr (without breaking the progress bar, unless ``echo`` is off)
        and ``train.log``."""
        if not self.is_main:
            return
        if echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)
        if self._file is not None:
            self._file.write(message + "\n")
            self._file.flush()

    def metrics(self, record: Mapping[str, Any], step: int) -> None:
        """Append one record to ``metrics.jsonl`` and its numbers to TensorBoard."""
        if not self.is_main:
            return
        with (self.out / METRICS_NAME).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None


class Window:
    """Running sums of the step metrics between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps, self.samples, self.seconds = 0, 0, 0.0

    def add(self, metrics: Mapping[str, float], samples: int, seconds: float) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.samples += samples
        self.seconds += seconds

    def means(self) -> dict[str, float]:
        return {k: v / self.steps for k, v in self.sums.items()} if self.steps else {}

    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def record(self, step: int, epoch: float, lr: float) -> dict[str, Any]:
        """This window's ``metrics.jsonl`` record, logged at ``step`` (losses as ``loss/<name>``)."""
        means = {k: v for k, v in self.means().items() if k != "lr"}
        return {
            "step": step,
            "epoch": epoch,
            "lr": lr,
            **{f"loss/{k}" if k in (*OBJECTIVES, "total") else k: v for k, v in means.items()},
            "samples_per_s": round(self.samples_per_second(), 3),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def postfix(self, lr: float) -> str:
        means = self.means()
        parts = " ".join(f"{k} {means[k]:.3f}" for k in (*OBJECTIVES, "total") if k in means)
        return f"{parts} lr {lr:.2e} {self.samples_per_second():.1f} samples/s"


def progress_bar(total: int, initial: int, desc: str, unit: str = "step") -> Any:
    """A tqdm bar of optimizer steps (or other ``unit``) on stderr."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()  # in a log file, a line every 30 s is plenty
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5 if interactive else 30.0)  # fmt: skip
