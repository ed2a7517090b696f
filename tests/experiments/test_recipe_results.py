"""The default recipe's figures in ``docs/RESULTS.md`` and the README are the kept measurements:
``docs/results/recipe/`` holds the evaluations' ``metrics.json`` and the ablation's ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "results" / "recipe"


def _recall(metrics: dict, scorer: str, direction: str, k: int) -> float:
    return 100 * metrics[f"{scorer}_{direction}_r{k}_1p100_subcat"]


def test_hm_rows_quote_the_kept_evaluation() -> None:
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    m = json.loads((KEPT / "hm-cpu" / "metrics.json").read_text())
    assert m["protocol"]["retrieval"]["score"] == "itc+itm" and m["retrieval_queries_1p100_subcat"] == 1000
    for scorer in ("itc_itm", "itc", "itm"):
        for d in ("tir", "itr"):
            r5, se = _recall(m, scorer, d, 5), 100 * m[f"{scorer}_{d}_r5_1p100_subcat_se"]
            assert f"{r5:.1f} ± {se:.1f} %" in text, (scorer, d)
            assert (
                f"{_recall(m, scorer, d, 1):.1f} %" in text and f"{_recall(m, scorer, d, 10):.1f} %" in text
            )
    assert f"{100 * m['mcr_acc']:.1f} %" in text and f"{100 * m['scr_acc']:.1f} %" in text


def test_demo_figures_quote_the_kept_evaluation() -> None:
    m = json.loads((KEPT / "demo-synthetic" / "metrics.json").read_text())
    readme, results = (ROOT / "README.md").read_text(), (ROOT / "docs" / "RESULTS.md").read_text()
    for scorer in ("itc_itm", "itc", "itm"):
        cell = f"{_recall(m, scorer, 'tir', 1):.1f} % / {_recall(m, scorer, 'itr', 1):.1f} %"
        assert cell in readme, scorer
    assert f"{100 * m['mcr_acc']:.1f} % / {100 * m['scr_acc']:.1f} %" in readme
    assert f"{_recall(m, 'itc_itm', 'tir', 5):.1f}" in results


def test_ablation_table_quotes_the_kept_results() -> None:
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    results = json.loads((KEPT / "ablation-synthetic" / "results.json").read_text())
    assert list(results) == ["itc", "itc+itm", "itc+itm+mlm", "itc+itm+mir", "all"]
    for name, run in results.items():
        for scorer in run["scorers"]:
            tag = scorer.replace("+", "_")
            m = run["metrics"]
            keys = [f"{tag}_{d}_r{k}_1p100_subcat" for d in ("tir", "itr") for k in (1, 5)]
            cells = [f"{100 * m[key]:.1f} ± {100 * m[key + '_se']:.1f}" for key in keys]
            assert f"| {name} | {scorer} | " + " | ".join(cells) + " |" in text, (name, scorer)


def seeds_table_rows() -> list[str]:
    """The three-seed ablation table of docs/RESULTS.md, rebuilt from the kept results."""
    runs = [
        json.loads((KEPT / "ablation-synthetic-seeds" / f"seed{s}" / "results.json").read_text())
        for s in range(3)
    ]
    rows = []
    for name in runs[0]:
        for scorer in ("itc+itm", "itc"):
            cells = []
            for d in ("tir", "itr"):
                values = [
                    100 * run[name]["metrics"][f"{scorer.replace('+', '_')}_{d}_r1_1p100_subcat"]
                    for run in runs
                ]
                cells += [" / ".join(f"{v:.1f}" for v in values), f"{sum(values) / len(values):.1f}"]
            rows.append(f"| {name} | {scorer} | " + " | ".join(cells) + " |")
    return rows


def test_three_seed_ablation_table_quotes_the_kept_results() -> None:
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    for row in seeds_table_rows():
        assert row in text, row
