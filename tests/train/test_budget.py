"""``fit_minutes``: the trainer re-fits its length to the rate it measures, and keeps that length."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvlt.cli import main
from mvlt.train import train
from mvlt.train.budget import FIRST_CHECK_S, BudgetFit

from .helpers import tiny_config


def _run(fit: BudgetFit, steps: int, total: int, seconds_per_step: float, start: float = 0.0) -> list[int]:
    """Proposals a run at a steady rate meets, checked after every step."""
    proposals = []
    for step in range(1, steps + 1):
        now = start + step * seconds_per_step
        fit.step_done(step, now)
        new = fit.proposal(step, total, now, start)
        if new is not None:
            proposals.append(new)
            total = new
    return proposals


def test_a_plan_within_ten_percent_is_left_alone() -> None:
    # 600 s budget, 100 steps planned at 6 s; they run at 6.5 s (8 % long): no re-fit.
    assert _run(BudgetFit(600.0), steps=60, total=100, seconds_per_step=6.5) == []


def test_a_slow_plan_is_shortened_and_a_fast_one_lengthened_to_the_budget() -> None:
    # 100 steps planned for 600 s at 6 s; they take 9 s: after a minute, the rest is re-fitted.
    slow = _run(BudgetFit(600.0), steps=20, total=100, seconds_per_step=9.0)
    assert len(slow) == 1 and slow[0] == pytest.approx(600 / 9, abs=1)
    fast = _run(BudgetFit(600.0), steps=30, total=100, seconds_per_step=3.0)
    assert len(fast) == 1 and fast[0] == pytest.approx(200, abs=1)


def test_the_first_check_waits_a_minute_and_ignores_the_first_step() -> None:
    fit = BudgetFit(600.0)
    fit.step_done(1, 30.0)  # a slow first step (allocation): not part of the rate
    assert fit.proposal(1, 100, 30.0, 0.0) is None
    fit.step_done(10, 30.0 + FIRST_CHECK_S)  # 9 steps in a minute: 6.67 s/step
    assert fit.rate(10, 30.0 + FIRST_CHECK_S) == pytest.approx(FIRST_CHECK_S / 9)
    assert fit.proposal(10, 100, 30.0 + FIRST_CHECK_S, 0.0) == 10 + int((600 - 90) / (FIRST_CHECK_S / 9))


def test_earlier_invocations_count_against_the_budget() -> None:
    # Resumed after 300 s of a 600 s budget: the 300 s left fit 50 steps at 6 s, not 100.
    fit = BudgetFit(600.0, trained_before_s=300.0)
    expected = pytest.approx(15 + (300 - 90) // 6, abs=1)
    assert _run(fit, steps=15, total=200, seconds_per_step=6.0) == [expected]


def test_the_trainer_refits_its_length_and_a_resumed_run_keeps_it(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch
) -> None:
    """Steps that run far slower than planned: the run ends near its budget with the cosine
    horizon moved to the new end, says so in its log, and ``--resume`` keeps the fitted length."""
    import mvlt.train.engine as engine

    clock = iter(range(0, 10_000_000, 5))  # every perf_counter call advances 5 s
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(clock)))
    cfg = tiny_config(tmp_path / "run", tokenizer_dir, steps=200, fit_minutes=2.0, checkpoint_every=1000)
    result = train(cfg)
    assert result.interrupted is None
    assert 10 <= result.steps == result.total_steps < 20
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"200 -> {result.total_steps} steps, cosine horizon moved" in log
    again = train(cfg, resume=True)
    assert again.steps == again.total_steps == result.total_steps


def test_fit_minutes_must_be_positive(tmp_path: Path, tokenizer_dir: Path, capsys) -> None:
    with pytest.raises(ValueError, match="fit_minutes"):
        tiny_config(tmp_path / "run", tokenizer_dir, fit_minutes=0.0).validate()
    assert main(["pretrain", "--fit-minutes", "-1", "--out", str(tmp_path / "o")]) == 2
    assert "mvlt pretrain: error: --fit-minutes -1: must be " in capsys.readouterr().err
