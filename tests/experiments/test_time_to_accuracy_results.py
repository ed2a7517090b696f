"""The time-to-accuracy figures in ``docs/RESULTS.md`` are the kept runs'
(``docs/results/time_to_accuracy``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "results" / "time_to_accuracy"
RUNS = sorted(KEPT.glob("*.json"))


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_each_run_is_quoted_with_its_best_point_and_its_time(path: Path) -> None:
    run = json.loads(path.read_text())
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    best = max(run["points"], key=lambda p: min(p["tir_r5"], p["itr_r5"]))
    assert f"{100 * best['tir_r5']:.1f} / {100 * best['itr_r5']:.1f} % ({best['minutes']:.1f})" in text
    reached = run["minutes_to_target"]
    assert (f"yes, {reached:.1f} min" if reached else f"no, {run['total_minutes']:.1f} min in all") in text
    assert all(p["minutes"] <= q["minutes"] for p, q in zip(run["points"], run["points"][1:]))


def test_the_ten_minute_demo_is_quoted_as_measured() -> None:
    metrics = json.loads((KEPT / "hm-demo-10min" / "metrics.json").read_text())
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    assert (
        f"**{metrics['train_minutes_actual']:.2f} min of the {metrics['train_minutes_planned']:g} planned**"
        in text
    )
    assert (
        f"evaluation {metrics['eval_minutes_actual']:.2f} min (planned {metrics['eval_minutes_planned']:.2f})"
        in text
    )


def test_the_synthetic_demo_is_quoted_as_measured() -> None:
    metrics = json.loads((KEPT / "demo-synthetic" / "metrics.json").read_text())
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    assert f"trained **{metrics['train_minutes_actual']:.2f} min of the 6.5 planned**" in text
    evaluation = metrics["eval_minutes_actual"], metrics["eval_minutes_planned"]
    assert f"evaluation {evaluation[0]:.2f} min (planned {evaluation[1]:.2f})" in text
    tir, itr = metrics["tir_r1_1p100_subcat"], metrics["itr_r1_1p100_subcat"]
    assert tir >= 0.3 and itr >= 0.3 and f"itc+itm {100 * tir:.1f} / {100 * itr:.1f} %" in text
