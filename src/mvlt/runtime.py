"""Where and in which arithmetic training and evaluation run: the device, and fp32, bf16
autocast, or fp16 autocast with a gradient scaler.

``auto`` picks bf16 only where it is fast: on CUDA devices that support it, and on CPUs with
native bf16 instructions (AVX512-BF16 or AMX). Elsewhere bf16 matmuls are emulated: measured on
an AVX2 EPYC, 1-18 GFLOP/s against ~150 in fp32, i.e. bf16 autocast ~10× slower. So ``auto`` is
fp32 there; an explicit ``bf16`` still works everywhere.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}
"""glibc allocator settings for CPU runs: serve large tensors from the heap and keep freed memory
instead of returning it to the OS, so the next step reuses it without page faults. Measured on the
2-core AVX2 machine (``benchmarks/README.md``): retrieval scoring ~1.5x faster, a ``mvlt_tiny``
training step ~1.25x, system time down ~7x; peak RSS a little higher."""


def wants_malloc_tuning(environ: dict[str, str] | None = None) -> bool:
    """True on glibc Linux unless tuned already or switched off with ``MVLT_MALLOC_TUNING=0``."""
    import platform

    env = os.environ if environ is None else environ
    if env.get("MVLT_MALLOC_TUNING", "1") == "0" or any(k in env for k in MALLOC_TUNING):
        return False
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


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


def resolve_precision(requested: str, device: torch.device, cpuinfo: Path = CPUINFO) -> Precision:
    """Turn ``--precision`` into a :class:`Precision` for ``device``, with the reason."""
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
    flag = cpu_has_native_bf16(cpuinfo)
    if kind == "cpu" and flag:
        return Precision("bf16", f"auto: the CPU has native bf16 ({flag})", kind)
    return Precision(
        "fp32", "auto: this CPU has no native bf16 (no avx512_bf16/amx_bf16), where bf16 is ~10x slower", kind
    )
