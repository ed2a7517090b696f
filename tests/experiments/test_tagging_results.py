"""The tagging figures of ``docs/RESULTS.md`` are the kept evaluations in
``docs/results/tagging-teachers/``, ``tagging-distilled/``, ``tagging-probe/`` and
``tagging-neighbours/``: each selection's test scores, image only and image + text, and the frozen
ImageNet probe, each against the majority class; each test-scored checkpoint (and neighbour
setting) is the best mean validation accuracy of those it was chosen among."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "docs" / "results" / "tagging-teachers"
DISTILLED = ROOT / "docs" / "results" / "tagging-distilled"
PROBE = ROOT / "docs" / "results" / "tagging-probe"
NEIGHBOURS = ROOT / "docs" / "results" / "tagging-neighbours"
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


def mean_val_accuracy(path: Path) -> float:
    m = json.loads(path.read_text())
    return sum(m[f"tag_{c}_acc_finetuned"] for c in COLUMNS) / len(COLUMNS)


def assert_selected(runs: list[Path], selected: Path) -> None:
    best = max(runs, key=mean_val_accuracy)
    checkpoint = best.stem.removeprefix("val-").replace("-step-", "/train/checkpoints/step-")
    assert checkpoint in json.loads(selected.read_text())["protocol"]["checkpoint"]


def test_the_selection_is_the_best_mean_validation_accuracy():
    runs = sorted(KEPT.glob("val-*-step-*.json"))
    assert len(runs) == 9
    assert_selected(runs, KEPT / "test-selected.json")


def test_the_distilled_selection_is_the_best_of_every_kept_validation_run():
    runs = sorted(DISTILLED.glob("val-*-step-*.json"))
    assert len(runs) == 11  # three runs: 3 + 3 + 5 checkpoints
    assert_selected([*runs, *KEPT.glob("val-*-step-*.json")], DISTILLED / "test-selected.json")


def test_results_md_quotes_the_distilled_selection():
    text = (ROOT / "docs" / "RESULTS.md").read_text().replace("**", "")
    test = json.loads((DISTILLED / "test-selected.json").read_text())
    for column in COLUMNS:
        sources = ("majority", "finetuned", "finetuned_image_text", "zeroshot")
        assert " | ".join(cell(test, column, s) for s in sources) in text, column


def test_the_repaired_probe_runs_did_not_displace_the_selection_and_are_quoted():
    runs = sorted(PROBE.glob("val-*-step-*.json"))
    assert len(runs) == 3  # one 3,000-step run
    every = [*runs, *DISTILLED.glob("val-*-step-*.json"), *KEPT.glob("val-*-step-*.json")]
    assert not (PROBE / "test-selected.json").exists()  # nothing new was better on validation
    assert_selected(every, DISTILLED / "test-selected.json")
    text = (ROOT / "docs" / "RESULTS.md").read_text().replace("**", "")
    before = mean_val_accuracy(DISTILLED / "val-aug-kdimg-kdtags-step-0003000.json")
    assert f"{100 * mean_val_accuracy(runs[-1]):.2f} against {100 * before:.2f}" in text
    probe = json.loads((PROBE / "test-frozen-imagenet-probe.json").read_text())["metrics"]
    assert " | ".join(cell(probe, column, "probe") for column in COLUMNS) in text


def test_the_neighbour_selection_is_the_best_setting_of_every_validation_sweep():
    sweeps = {p: json.loads(p.read_text()) for p in sorted(NEIGHBOURS.glob("sweep-val-step-*.json"))}
    assert len(sweeps) == 5  # one 5,000-step run, a sweep per checkpoint
    path = max(sweeps, key=lambda p: sweeps[p]["best"]["mean"])
    best = sweeps[path]["best"]
    for sweep in sweeps.values():  # each sweep's best is the best of its grid, and beats weight 0
        assert sweep["best"]["mean"] == max(s["mean"] for s in sweep["settings"])
        assert sweep["best"]["mean"] >= sweep["heads"]["mean"]
    earlier = [*KEPT.glob("val-*.json"), *DISTILLED.glob("val-*.json"), *PROBE.glob("val-*.json")]
    assert best["mean"] > max(mean_val_accuracy(p) for p in earlier)  # it displaced the last selection
    test = json.loads((NEIGHBOURS / "test-selected.json").read_text())
    assert test["protocol"]["checkpoint"].endswith(path.stem.removeprefix("sweep-val-"))
    votes = test["protocol"]["neighbours"]
    assert (votes["k"], votes["temperature"], votes["weight"]) == (
        best["k"],
        best["temperature"],
        best["weight"],
    )
    heads = json.loads(
        (NEIGHBOURS / f"val-kdtags-5k-{path.stem.removeprefix('sweep-val-')}.json").read_text()
    )
    for column in COLUMNS:  # the sweep's heads-alone scores are the command line's
        assert sweeps[path]["heads"]["accuracy"][column] == pytest.approx(
            heads[f"tag_{column}_acc_finetuned"], abs=1e-3
        )  # float32 mean, another batch size: within a row


def test_results_md_quotes_the_neighbour_selection_and_the_column_lookup():
    text = (ROOT / "docs" / "RESULTS.md").read_text().replace("**", "")
    test = json.loads((NEIGHBOURS / "test-selected.json").read_text())
    for column in COLUMNS:
        sources = (
            "majority",
            "finetuned",
            "neighbours",
            "finetunedneighbours",
            "finetunedneighbours_image_text",
        )
        assert " | ".join(cell(test, column, s) for s in sources) in text, column
    lookup = json.loads((NEIGHBOURS / "column_lookup_index_group.json").read_text())
    for row in lookup["lookups"]:
        assert f"{'+'.join(row['given'])}: {100 * row['accuracy']:.1f} %" in text
