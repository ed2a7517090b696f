"""``mvlt demo``: Ctrl-C leaves a resumable run, and ``--resume`` finishes it with the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--products", "80", "--image-size", "64", "--batch-size", "4", "--queries", "3", "--workers", "0",
        "--threads", "2"]  # fmt: skip


def demo(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mvlt.cli", "demo", "--out", str(out), *TINY, *extra]


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        demo(out, "--minutes", "0.3"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not list((out / "pretrain" / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # checkpoints every 100 steps: interrupt once the first one exists
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:]
    assert f"mvlt demo --out {out} --resume" in stdout
    plan = json.loads((out / "demo.json").read_text())
    assert not (out / "report.html").exists()

    done = subprocess.run(demo(out, "--resume"), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((out / "demo.json").read_text()) == plan  # the same plan, not a new one
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    state = json.loads(
        (
            out
            / "pretrain"
            / "checkpoints"
            / sorted(p.name for p in (out / "pretrain" / "checkpoints").iterdir())[-1]
            / "trainer_state.json"
        ).read_text()
    )
    assert state["step"] == plan["pretrain_steps"]


def test_refuses_to_mix_demos(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text("{}")
    result = subprocess.run(demo(out), capture_output=True, text=True)
    assert result.returncode == 2 and "--resume" in result.stderr
    empty = subprocess.run(demo(tmp_path / "none", "--resume"), capture_output=True, text=True)
    assert empty.returncode == 2 and "nothing to resume" in empty.stderr


def run_command(command: str, argv: list[str]) -> int:
    """``mvlt demo ...`` or ``mvlt pretrain ...`` in this process (a traceback fails the test)."""
    import argparse

    from mvlt import demo as demo_cli
    from mvlt.train import cli as train_cli

    parser = argparse.ArgumentParser(prog="mvlt")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_cli.register(sub)
    train_cli.register(sub)
    args = parser.parse_args([command, *argv])
    return int(args.run(args))


def test_demo_input_errors_are_the_one_line_pretrain_gives(tmp_path: Path, capsys) -> None:
    from PIL import Image

    manifest = tmp_path / "photos" / "metadata.csv"
    (tmp_path / "photos" / "images").mkdir(parents=True)
    rows = ["image,text,category,subcategory,product_id,split"]
    for i in range(4):
        split = "train" if i < 2 else "test"
        rows.append(f"images/{i}.png,a red dress number {i},Dresses,Midi,{i:04d},{split}")
        if i != 1:
            Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "photos" / "images" / f"{i}.png")
    manifest.write_text("\n".join(rows) + "\n")
    (tmp_path / "empty").mkdir()
    cases = {
        "missing image": (["--data", str(manifest)], 1),
        "no such --data": (["--data", str(tmp_path / "nope.csv")], 1),
        "empty folder": (["--data", str(tmp_path / "empty")], 1),
        "--image-size 30": (["--image-size", "30"], 2),
    }
    for case, (argv, code) in cases.items():
        assert run_command("demo", ["--out", str(tmp_path / "demo"), *argv]) == code, case
        demo_err = capsys.readouterr().err
        assert run_command("pretrain", ["--out", str(tmp_path / "pre"), *argv]) == code, case
        pretrain_err = capsys.readouterr().err
        assert demo_err.count("\n") == 1 and demo_err.startswith("mvlt demo: error: "), (case, demo_err)
        assert demo_err.removeprefix("mvlt demo") == pretrain_err.removeprefix("mvlt pretrain"), case
    assert run_command("demo", ["--out", str(tmp_path / "demo"), "--minutes", "nan"]) == 2
    assert capsys.readouterr().err == "mvlt demo: error: --minutes nan: must be a positive finite number\n"


@pytest.mark.slow
def test_demo_skips_bad_rows_and_records_what_it_left_out(tmp_path: Path, broken_manifest) -> None:
    """``--skip-bad-rows``: the demo finishes; metrics.json counts the rows each split left out,
    the duplicate product ids and the rows without a label."""
    manifest, broken = broken_manifest
    out = tmp_path / "demo"
    argv = ["--data", str(manifest), "--skip-bad-rows", "--minutes", "0.01", *TINY[2:]]
    done = subprocess.run(demo(out, *argv), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    protocol = json.loads((out / "metrics.json").read_text())["protocol"]
    test, training = protocol["data"], protocol["training_data"]
    assert training["skipped_rows"] == 1 and training["skipped_by_reason"] == {"bad_image": 1}
    assert training["skipped_first"] == [broken]
    assert test["duplicate_product_ids"] == 1 and test["unlabelled"] == {"category": 1, "subcategory": 0}
    assert "2 rows share product_id" in done.stdout + done.stderr
    assert "skipped 1 bad row" in (out / "pretrain" / "train.log").read_text()
    metrics = json.loads((out / "metrics.json").read_text())  # the plan's minutes and the run's
    assert metrics["train_minutes_planned"] == 0.01 and 0 < metrics["train_minutes_actual"] < 5
    assert "min of the 0.01 planned" in done.stdout


@pytest.fixture
def broken_manifest(tmp_path: Path) -> tuple[Path, str]:
    """A synthetic-photo manifest with one undecodable training image, a product id on two test rows
    and a test row without a category; returns it and the broken row's name."""
    import csv

    from .manifests import write_manifest
    from .train.helpers import synthetic_manifest

    manifest = synthetic_manifest(tmp_path / "photos", num_products=80)
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    train_rows = [i for i, r in enumerate(rows) if r["split"] == "train"]
    test_rows = [i for i, r in enumerate(rows) if r["split"] == "test"]
    (manifest.parent / rows[train_rows[2]]["image"]).write_bytes(b"not an image")
    rows[test_rows[1]]["product_id"] = rows[test_rows[0]]["product_id"]
    rows[test_rows[2]]["category"] = ""
    write_manifest(manifest, rows)
    return manifest, f"row {train_rows[2] + 1} (line {train_rows[2] + 2})"


def test_the_planner_times_a_random_batch_not_the_first_rows():
    from mvlt.demo import planning_rows

    rows = planning_rows(9307, 64, seed=0)
    assert rows == planning_rows(9307, 64, seed=0) and rows != planning_rows(9307, 64, seed=1)
    assert len(set(rows)) == 64 and max(rows) > 4000 and rows != list(range(64))
    assert planning_rows(10, 64, seed=0) == list(range(10))
