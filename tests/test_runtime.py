"""Device and precision choice shared by training and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mvlt.runtime import cpu_has_native_bf16, resolve_device, resolve_precision


def test_auto_precision_is_bf16_only_where_bf16_is_native(tmp_path: Path) -> None:
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_has_native_bf16(avx2) is None and cpu_has_native_bf16(amx) == "avx512_bf16"
    assert cpu_has_native_bf16(tmp_path / "missing") is None
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, cpuinfo=avx2).name == "fp32"
    assert resolve_precision("auto", cpu, cpuinfo=amx).name == "bf16"
    assert resolve_precision("bf16", cpu, cpuinfo=avx2).dtype == torch.bfloat16
    assert resolve_precision("fp32", cpu).dtype is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_device_choice() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("toaster")


def test_malloc_tuning_is_opt_out_and_applied_once() -> None:
    from mvlt.runtime import MALLOC_TUNING, wants_malloc_tuning

    assert not wants_malloc_tuning({"MVLT_MALLOC_TUNING": "0"})
    assert not wants_malloc_tuning(dict(MALLOC_TUNING))  # already tuned: no second restart
    import platform

    assert wants_malloc_tuning({}) == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
