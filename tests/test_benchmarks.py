"""The speed benchmark's whole-protocol worker runs end to end on a small model (the benchmark
itself is timed on a quiet machine, never in the test suite)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("variant", ["mvlt", "whole"])
def test_speed_protocol_worker_ranks_every_slot(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "speed", raising=False)
    import speed

    monkeypatch.setattr(speed, "lengths", lambda: [12, 20, 31])
    sizes = {"image_size": 64, "pool": 101, "queries": 2, "negatives": 100}
    args = argparse.Namespace(model="mvlt_nano", precision="fp32", variant=variant, **sizes)
    out = speed.protocol_worker(args)
    assert out["slots"] == 2 * 101 * 2  # queries x candidates x directions
    assert out["pairs_per_s"] == pytest.approx(out["slots"] / out["seconds"])
