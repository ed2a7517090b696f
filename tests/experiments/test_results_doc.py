"""``docs/results.json`` is exactly what ``experiments/hm/collect.py`` makes of the kept run logs,
and every run's headline figure in ``docs/RESULTS.md`` matches it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_collect():
    spec = importlib.util.spec_from_file_location("collect", ROOT / "experiments" / "hm" / "collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_json_is_rebuilt_from_the_logs(hm_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the JSON records the folder as given on the command line
    collect = load_collect()
    rebuilt = collect.collect(Path("docs/results/hm-gpu"), hm_dir / "metadata.csv")
    kept = json.loads((ROOT / "docs" / "results.json").read_text())
    kept.pop("pretrained_knowledge")  # experiments/pretrained/collect.py's section (test_pretrained_results)
    assert json.loads(json.dumps(rebuilt)) == kept
    assert [r["name"] for r in kept["runs"]] == list(collect.RUNS)


def test_results_md_quotes_the_json() -> None:
    kept = json.loads((ROOT / "docs" / "results.json").read_text())
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    main = next(r for r in kept["runs"] if r["name"] == "main")["metrics"]
    for key in ("tir_r1_1p100_subcat", "tir_r5_1p100_subcat", "itr_r10_1p100_subcat"):
        assert f"{100 * main[key]:.1f} %" in text, key
    assert f"{100 * main['mcr_acc']:.1f} %" in text and f"{100 * main['scr_acc']:.1f} %" in text
    assert f"{main['mig_psnr_random_grid']:.2f} dB" in text
    for run in kept["runs"][1:]:
        m = run["metrics"]
        tir = " / ".join(f"{100 * m[f'tir_r{k}_1p100_subcat']:.1f}" for k in (1, 5, 10))
        assert tir in text, run["name"]
