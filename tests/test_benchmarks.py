"""The speed benchmark's whole-protocol worker runs end to end on a small model (the benchmark
itself is timed on a quiet machine, never in the test suite)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

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


def test_matmul_seconds_counts_matrix_products_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import matmul_seconds

    a = torch.randn(128, 128)
    assert matmul_seconds(lambda: torch.relu(a).exp().sum(), iters=2) == 0
    assert matmul_seconds(lambda: (a @ a).relu(), iters=2) > 0


def test_speed_train_worker_reports_the_matmul_time_of_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "speed", raising=False)
    import speed

    monkeypatch.setattr(speed, "lengths", lambda: [12, 20, 31])
    args = argparse.Namespace(
        model="mvlt_nano", image_size=64, batch_size=2, micro_batch=2, precision="fp32", variant="mvlt",
        text_length=0, warmup=1, iters=2, profile=1, count_flops=0,
    )  # fmt: skip
    out = speed.train_worker(args)
    assert out["samples_per_s"] > 0 and out["matmul_seconds_per_step"] > 0


def test_objective_cost_times_a_step_with_only_the_named_objectives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import objective_cost
    from common import make_batch

    batches = [make_batch(4, 64, [10, 20], seed=0)]
    assert objective_cost.step_seconds({"itc": 1.0, "itm": 3.0}, batches, "fp32", steps=1) > 0
    assert objective_cost.step_seconds({"itc": 1.0}, batches, "fp32", steps=1, model_name="mvlt_micro") > 0
    assert objective_cost.step_seconds({"itc": 1.0}, batches, "fp32", steps=1, text_groups=1) > 0
    ragged = [make_batch(16, 64, [5, 40], seed=0)]
    assert objective_cost.padded_tokens(ragged, 1) == ragged[0]["input_ids"].shape[1]
    assert objective_cost.padded_tokens(ragged, 4) < objective_cost.padded_tokens(ragged, 1)
    bad_args = (["--model", "mvlt_huge"], ["--sets", "itc;itc + everything"], ["--text-groups", "1,x"],
                ["--text-groups", "0"])  # fmt: skip
    for bad in bad_args:
        with pytest.raises(SystemExit) as exit_info:
            objective_cost.main(bad)
        assert exit_info.value.code == 2, bad
    with pytest.raises(ValueError, match="switched off"):  # no objective: forward_loss refuses
        objective_cost.step_seconds({}, batches, "fp32", steps=1)


def test_compile_benchmark_reports_a_failure_as_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "torch_compile", raising=False)
    import torch_compile as compile_benchmark

    def broken(*how):
        raise RuntimeError("inductor: no compiler\nsecond line")

    row = compile_benchmark.measure(broken, "x", iters=1)
    assert row["error"] == "RuntimeError: inductor: no compiler" and "trace" in row
