"""Device and precision choice shared by training and evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from mvlt.runtime import (
    BF16_MIN_SPEEDUP,
    Precision,
    Workload,
    cache_dir,
    calibration_file,
    cpu_has_native_bf16,
    faster_precision,
    resolve_device,
    resolve_precision,
)


def _cpuinfo(tmp_path: Path, name: str, flags: str) -> Path:
    path = tmp_path / name
    path.write_text(f"model name\t: Test CPU {name}\nflags\t\t: {flags}\n")
    return path


def _workload(seconds: dict[str, float], calls: list[str], **shape: object) -> Workload:
    """A pass that takes ``seconds[precision]`` (a sleep: no bf16 arithmetic, fine on any CPU)."""

    def run(precision: Precision) -> None:
        calls.append(precision.name)
        time.sleep(seconds[precision.name])

    return Workload("training", {"batch": 8, **shape}, run)


def test_auto_precision_measures_only_where_bf16_is_native(tmp_path: Path) -> None:
    avx2 = _cpuinfo(tmp_path, "avx2", "fpu sse2 avx avx2 fma")
    amx = _cpuinfo(tmp_path, "amx", "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile")
    assert cpu_has_native_bf16(avx2) is None and cpu_has_native_bf16(amx) == "avx512_bf16"
    assert cpu_has_native_bf16(tmp_path / "missing") is None
    cpu = torch.device("cpu")
    calls: list[str] = []
    fast_bf16 = _workload({"fp32": 0.03, "bf16": 0.003}, calls)
    # Without native bf16, auto is fp32 and times nothing; with it, never by the flag alone.
    assert resolve_precision("auto", cpu, cpuinfo=avx2, workload=fast_bf16).name == "fp32" and not calls
    unmeasured = resolve_precision("auto", cpu, cpuinfo=amx)
    assert unmeasured.name == "fp32" and "no pass was timed" in unmeasured.reason
    assert resolve_precision("bf16", cpu, cpuinfo=avx2).dtype == torch.bfloat16
    assert resolve_precision("fp32", cpu).dtype is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_auto_keeps_the_faster_measured_precision_and_caches_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MVLT_CACHE_DIR", str(tmp_path / "cache"))
    amx = _cpuinfo(tmp_path, "amx", "avx2 avx512f avx512_bf16")
    cpu, calls = torch.device("cpu"), []
    fast = resolve_precision(
        "auto", cpu, cpuinfo=amx, workload=_workload({"fp32": 0.03, "bf16": 0.003}, calls)
    )
    assert fast.name == "bf16" and "measured now" in fast.reason and fast.reason.startswith("auto: bf16")
    assert calls == ["fp32", "bf16"] * 3  # one untimed pass each, then interleaved rounds
    # The same machine and shape: read back, nothing timed again.
    again = resolve_precision("auto", cpu, cpuinfo=amx, workload=_workload({"fp32": 0.0, "bf16": 0.0}, calls))
    assert again.name == "bf16" and "cached in" in again.reason and len(calls) == 6
    # Another shape is another measurement; a slower bf16 pass gives fp32, with the reason.
    slow = resolve_precision(
        "auto", cpu, cpuinfo=amx, workload=_workload({"fp32": 0.003, "bf16": 0.03}, calls, batch=16)
    )
    assert slow.name == "fp32" and "under the 1.1x" in slow.reason and len(calls) == 12
    entries = json.loads(calibration_file().read_text())
    assert len(entries) == 2 and {e["cpu"] for e in entries.values()} == {"Test CPU amx"}
    # Another CPU (model or flags) measures again; a damaged cache is measured over, not fatal.
    other = _cpuinfo(tmp_path, "other", "avx2 avx512f avx512_bf16 amx_bf16")
    resolve_precision("auto", cpu, cpuinfo=other, workload=_workload({"fp32": 0.03, "bf16": 0.003}, calls))
    assert len(calls) == 18
    calibration_file().write_text("{not json")
    assert (
        resolve_precision(
            "auto", cpu, cpuinfo=amx, workload=_workload({"fp32": 0.03, "bf16": 0.003}, calls)
        ).name
        == "bf16"
    )
    assert len(calls) == 24 and len(json.loads(calibration_file().read_text())) == 1
    # Explicit choices are never second-guessed.
    assert (
        resolve_precision("fp32", cpu, cpuinfo=amx, workload=_workload({"fp32": 1, "bf16": 0}, calls)).name
        == "fp32"
    )
    assert len(calls) == 24


def test_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    assert cache_dir({"MVLT_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "mvlt"
    assert cache_dir({}) == Path.home() / ".cache" / "mvlt"


def test_device_choice() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("toaster")


def test_malloc_tuning_is_opt_out_applied_once_and_keeps_the_users_values() -> None:
    import platform

    from mvlt.runtime import MALLOC_TUNING, malloc_tuning

    assert malloc_tuning({"MVLT_MALLOC_TUNING": "0"}) == {}
    assert malloc_tuning(dict(MALLOC_TUNING)) == {}  # already tuned: no second restart
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert malloc_tuning({}) == MALLOC_TUNING
        added = malloc_tuning({"MALLOC_ARENA_MAX": "8"})
        assert "MALLOC_ARENA_MAX" not in added and set(added) == set(MALLOC_TUNING) - {"MALLOC_ARENA_MAX"}
    else:
        assert malloc_tuning({}) == {}


def test_faster_precision_needs_bf16_to_earn_its_rounding() -> None:
    """The rule ``auto`` and the demo's planner share: bf16 only at >= 1.1x fp32's speed."""
    assert faster_precision({"fp32": 1.0, "bf16": 0.5}) == "bf16"
    assert faster_precision({"fp32": 1.0, "bf16": 1.0 / BF16_MIN_SPEEDUP}) == "bf16"
    assert faster_precision({"fp32": 1.0, "bf16": 0.95}) == "fp32"  # faster, but not by enough
    assert faster_precision({"fp32": 1.0, "bf16": 1.3}) == "fp32"
    assert faster_precision({"fp32": 1.0}) == "fp32"  # only one timed (no native bf16)
    assert faster_precision({"auto": 1.0}) == "auto"
