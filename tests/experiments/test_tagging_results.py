"""The tagging figures of ``docs/RESULTS.md`` are the kept evaluations in
``docs/results/tagging-teachers/``: the selected checkpoint's test scores, image only and image +
text, and the frozen ImageNet probe, each against the majority class."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "results" / "tagging-teachers"
COLUMNS = ("colour", "pattern", "garment_group", "index_group")


def cell(metrics: dict, column: str, source: str) -> str:
    acc, f1 = metrics[f"tag_{column}_acc_{source}"], metrics[f"tag_{column}_macro_f1_{source}"]
    return f"{100 * acc:.1f} % / {f1:.3f}"


def test_results_md_quotes_the_selected_checkpoint_and_the_probe():
    text = (ROOT / "docs" / "RESULTS.md").read_text().replace("**", "")
    test = json.loads((KEPT / "test-selected.json").read_text())
    probe = json.loads((KEPT / "test-frozen-imagenet-probe.json").read_text())["metrics"]
    for column in COLUMNS:
        sources = ("majority", "finetuned", "finetuned_image_text", "zeroshot")
        row = " | ".join([*(cell(test, column, s) for s in sources), cell(probe, column, "probe")])
        assert row in text, column


def test_the_selection_is_the_best_mean_validation_accuracy():
    def mean(path: Path) -> float:
        m = json.loads(path.read_text())
        return sum(m[f"tag_{c}_acc_finetuned"] for c in COLUMNS) / len(COLUMNS)

    runs = sorted(KEPT.glob("val-*-step-*.json"))
    assert len(runs) == 9
    best = max(runs, key=mean)
    selected = json.loads((KEPT / "test-selected.json").read_text())
    checkpoint = best.stem.removeprefix("val-").replace("-step-", "/train/checkpoints/step-")
    assert checkpoint in selected["protocol"]["checkpoint"]
