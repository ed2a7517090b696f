"""Where and in which arithmetic training and evaluation run: the device, and fp32, bf16
autocast, or fp16 autocast with a gradient scaler.

``auto`` picks bf16 only where it is faster. On CUDA: wherever the device supports bf16. On a CPU
without native bf16 instructions (AVX512-BF16 or AMX) bf16 matmuls are emulated (measured on an
AVX2 EPYC: 1-18 GFLOP/s against ~150 in fp32, bf16 autocast ~10x slower), so ``auto`` is fp32
there, without measuring anything. On a CPU with native bf16 the flag alone says little: a bf16
matmul is 2-4x faster, but a whole step also runs kernels without a fast bf16 path and casts
between the two, and which wins depends on the model and the workload (measured on an AVX-512
BF16 EPYC: retrieval 3.4x faster in bf16, while training once ran at 0.56x). So ``auto`` times the
caller's actual pass (a :class:`Workload`) in both precisions and keeps the faster, once per
machine, torch version and workload shape (:func:`calibration_file`). An explicit ``bf16`` or
``fp32`` is never second-guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

MALLOC_TUNING = {
    "MALLOC_MMAP_THRESHOLD_": str(4 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 30),
    "MALLOC_ARENA_MAX": "2",
}
"""glibc allocator settings for CPU runs: serve large tensors from the heap and keep freed memory
instead of returning it to the OS, so the next step reuses it without page faults. Measured on the
2-core AVX2 machine (``benchmarks/README.md``): retrieval scoring ~1.5x faster, a ``mvlt_tiny``
training step ~1.25x, system time down ~7x; peak RSS a little higher. At most two heap arenas:
with the default (8 per core) every server thread that decodes an upload or runs a request gets
its own arena, and since freed memory is kept, each arena keeps its peak: ``mvlt serve`` under 32
clients grew from 724 to 809 MiB in a minute after warm-up; with two, 532 to 535 MiB, and answered
more requests (``benchmarks/README.md``, Serving under load). A value the user set is kept."""


def malloc_tuning(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``MALLOC_*`` settings to add to the environment (those the user has not set), or none
    off glibc Linux or with ``MVLT_MALLOC_TUNING=0``; the ``mvlt`` program restarts once with them."""
    import platform

    env = os.environ if environ is None else environ
    if env.get("MVLT_MALLOC_TUNING", "1") == "0":
        return {}
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {}
    return {key: value for key, value in MALLOC_TUNING.items() if key not in env}


@dataclass(frozen=True)
class Precision:
    name: str
    """``fp32``, ``bf16`` or ``fp16``."""
    reason: str
    """Why this precision was chosen (logged at the start of a run)."""
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


CPUINFO = Path("/proc/cpuinfo")


@lru_cache(maxsize=4)
def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> str | None:
    """The first native-bf16 flag in ``cpuinfo`` (None when absent or unreadable)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return next((f for f in CPU_BF16_FLAGS if f in flags), None)
    return None


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``, with clear errors."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: CUDA is not available on this machine")
    try:
        return torch.device(requested)
    except RuntimeError as err:
        raise ValueError(f"--device {requested!r} is not a device ({err})") from err


def resolve_precision(
    requested: str, device: torch.device, cpuinfo: Path = CPUINFO, workload: Workload | None = None
) -> Precision:
    """Turn ``--precision`` into a :class:`Precision` for ``device``, with the reason.

    ``auto`` on a CPU with native bf16 times ``workload`` in both precisions (or reads that
    measurement from the cache) and keeps the faster; without a workload it stays fp32.
    """
    kind = device.type
    if requested == "fp32":
        return Precision("fp32", "requested", kind)
    if requested == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bf16")
        return Precision("bf16", "requested", kind)
    if requested == "fp16":
        if kind != "cuda":
            raise ValueError(
                "--precision fp16 needs a CUDA device (it uses a gradient scaler); use bf16 or fp32"
            )
        return Precision("fp16", "requested (with a gradient scaler)", kind)
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; choose auto, fp32, bf16 or fp16")
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "auto: the CUDA device supports bf16", kind)
        return Precision(
            "fp32", "auto: the CUDA device has no bf16 (pass --precision fp16 for mixed precision)", kind
        )
    flag = cpu_has_native_bf16(cpuinfo) if kind == "cpu" else None
    if not flag:
        reason = "auto: this CPU has no native bf16 (no avx512_bf16/amx_bf16), where bf16 is ~10x slower"
        return Precision("fp32", reason, kind)
    if workload is None:
        return Precision("fp32", f"auto: the CPU has native bf16 ({flag}) but no pass was timed", kind)
    return measured_precision(workload, kind, cpuinfo)


# ------------------------------------------------------------------------- measured choice
CACHE_ENV = "MVLT_CACHE_DIR"
BF16_MIN_SPEEDUP = 1.1
"""``auto`` takes bf16 only when its pass is at least this much faster than fp32's: a smaller
gain is within what a busy machine makes of the timings, and fp32 rounds less."""
CALIBRATION_ROUNDS = 2


@dataclass(frozen=True)
class Workload:
    """A pass that ``auto`` times in fp32 and in bf16 on a CPU with native bf16.

    ``run(precision)`` does one pass as the caller will (a training micro-batch's forward and
    backward, a batch of evaluation scoring) under ``precision.autocast()``, and leaves no trace
    (weights, buffers, gradients and random streams as they were). ``kind`` (``training``,
    ``evaluation``) and ``shape`` (what the pass's speed depends on: model, image size, batch,
    objectives) name it in the cache and in the reason printed.
    """

    kind: str
    shape: dict[str, object]
    run: Callable[[Precision], object]


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """``$MVLT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mvlt``, else ``~/.cache/mvlt``."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mvlt"


def calibration_file() -> Path:
    """Where measured ``auto`` choices are kept (delete it to measure again)."""
    return cache_dir() / "precision.json"


def machine_key(cpuinfo: Path = CPUINFO) -> dict[str, object]:
    """What a measured choice holds for besides the workload: CPU model and flags, torch, threads."""
    model, flags = "unknown", ""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    flags_hash = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return {"cpu": model, "flags": flags_hash, "torch": torch.__version__, "threads": torch.get_num_threads()}


def time_precisions(
    workload: Workload, device_type: str, rounds: int = CALIBRATION_ROUNDS
) -> dict[str, float]:
    """Best seconds of ``workload`` in fp32 and in bf16: one untimed pass each (kernel set-up),
    then ``rounds`` of fp32, bf16 interleaved, so that a load that comes and goes hits both."""
    precisions = [Precision(name, "calibration", device_type) for name in ("fp32", "bf16")]
    for precision in precisions:
        workload.run(precision)
    best = {p.name: float("inf") for p in precisions}
    for _ in range(rounds):
        for precision in precisions:
            start = time.perf_counter()
            workload.run(precision)
            best[precision.name] = min(best[precision.name], time.perf_counter() - start)
    return best


def measured_precision(workload: Workload, device_type: str, cpuinfo: Path = CPUINFO) -> Precision:
    """The faster of fp32 and bf16 for ``workload``, from the cache or timed now (and cached)."""
    parts = {**machine_key(cpuinfo), "device": device_type, "kind": workload.kind, **workload.shape}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = calibration_file()
    entries = _read_calibrations(path)
    entry: Any = entries.get(key)
    where = f"cached in {path}"
    if not _is_measurement(entry):
        seconds = time_precisions(workload, device_type)
        entry = {"fp32_s": seconds["fp32"], "bf16_s": seconds["bf16"], **parts}
        entry["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
        entries[key] = entry
        where = _write_calibrations(path, entries)
    speedup = float(entry["fp32_s"]) / float(entry["bf16_s"])
    timing = (
        f"{workload.kind} pass {float(entry['fp32_s']):.3g} s in fp32, {float(entry['bf16_s']):.3g} s in bf16"
    )
    if faster_precision({"fp32": float(entry["fp32_s"]), "bf16": float(entry["bf16_s"])}) == "bf16":
        return Precision(
            "bf16", f"auto: bf16 measured {speedup:.2f}x as fast as fp32; {timing}; {where}", device_type
        )
    reason = f"auto: bf16 measured {speedup:.2f}x as fast as fp32, under the {BF16_MIN_SPEEDUP}x it needs"
    return Precision("fp32", f"{reason}; {timing}; {where}", device_type)


def faster_precision(seconds: Mapping[str, float]) -> str:
    """The arithmetic to run in from timings of the same work (``{"fp32": s, "bf16": s}``):
    bf16 only when at least ``BF16_MIN_SPEEDUP`` times as fast, else fp32 (or the only one timed)."""
    if "bf16" in seconds and "fp32" in seconds:
        return "bf16" if seconds["fp32"] >= BF16_MIN_SPEEDUP * seconds["bf16"] else "fp32"
    return next(iter(seconds))


def _is_measurement(entry: object) -> bool:
    seconds = [entry.get(k) for k in ("fp32_s", "bf16_s")] if isinstance(entry, dict) else [None]
    return all(isinstance(t, (int, float)) and t > 0 for t in seconds)


def _read_calibrations(path: Path) -> dict[str, object]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: measure again
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_calibrations(path: Path, entries: dict[str, object]) -> str:
    from .fileio import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except OSError as err:
        return f"measured now, not cached: {err}"
    return f"measured now, cached in {path}"
