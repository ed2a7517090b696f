"""benchmarks/serve_load.py runs end to end for a second against an in-process server (a smoke test:
the load benchmark itself is run on a quiet machine, never in the test suite)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mvlt.search import CatalogueIndex

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from mvlt.search.serve import Limits, background_server, create_app

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_serve_load_reports_throughput_latency_errors_and_memory(
    index: CatalogueIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "serve_load", raising=False)
    import serve_load

    key = "load-test-key-0123456789"
    app = create_app(index, limits=Limits(max_concurrent=1), api_key=key)
    out = tmp_path / "load.json"
    with background_server(app) as url:
        argv = [
            "--url",
            url,
            "--pid",
            str(os.getpid()),
            "--api-key",
            key,
            "--clients",
            "3",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
        ]
        report = serve_load.main([*argv, "--photos", "2", "--rerank", "0,2", "-k", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == report and report["photos"] == 2
    assert report["ok"] > 0 and report["throughput_per_s"] > 0
    assert report["requests"] == report["ok"] + sum(report["errors"].values())
    assert set(report["errors"]) <= {"503"}  # one search slot, three clients: some are shed
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    mixes = {f"{kind} rerank={r}" for kind in ("text", "photo") for r in (0, 2)}
    assert set(report["latency_ms_by_mix"]) <= mixes
    assert report["server_rss_mb"]["start"] > 0 and report["server_rss_mb"]["end"] > 0
    assert report["warmup_s"] == 0.5 and report["server_rss_mb"]["cold"] > 0


def test_percentiles_are_nearest_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from serve_load import percentiles

    got = percentiles([float(x) for x in range(1, 101)])
    assert got == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "mean": 50.5}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None, "mean": None}


def test_serve_load_updates_the_index_under_load(
    checkpoint: Path, catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "serve_load", raising=False)
    import serve_load

    out = tmp_path / "index"
    CatalogueIndex.build(checkpoint, catalogue, out, limit=20, precision="fp32")
    argv = ["--index", str(out), "--clients", "2", "--seconds", "3", "--rerank", "0", "--photos", "2"]
    report = serve_load.main([*argv, "--add-data", str(catalogue), "--add-after", "0.5"])
    update = report["update"]
    assert update["index_add_exit"] == 0 and update["reload_status"] == 200, update
    assert update["products_before"] == 20 and update["reload"]["products"] == 36
    assert update["findable"] == {"added_products": 16, "checked": 16, "found_in_top_10": 16}
    assert report["ok"] > 0 and not report["errors"], report["errors"]
